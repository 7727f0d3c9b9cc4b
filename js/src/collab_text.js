// CollabText: a CodeMirror 6 editor bound to a Y.Text with y-codemirror.next.
//
// Each view owns a Y.Doc kept in sync with the kernel's pycrdt document through custom messages
// with binary buffers (no base64 between browser and kernel):
//   view -> kernel  {action:"sync"}   [stateVector]  on render: "send me what I lack"
//                   {action:"update"} [update]       every local edit (origin is not the kernel)
//                   {action:"cursor", anchor, head}  local selection as base64 relative positions
//   kernel -> view  {type:"sync"|"update"} [update]  applied with origin KERNEL (never echoed)
// y-codemirror.next turns Y.Text deltas into CodeMirror changes, so a remote edit never replaces
// the whole text: the caret and selection are mapped through it and keystrokes are not lost.
// Remote cursors come from the `cursors` trait through an awareness-like adapter.
import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, placeholder as placeholderExt } from "@codemirror/view";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import * as Y from "yjs";
import { userBadge } from "./lib/badge.js";
import { encodePosition, TraitAwareness } from "./lib/collab_awareness.js";
import { userColor } from "./lib/color.js";
import { h, setAttr, setText } from "./lib/dom.js";
import { list, num, str } from "./lib/traits.js";
import { renderWidget } from "./lib/widget.js";

/** Origin tag of updates that came from the kernel (they are not sent back). */
export const KERNEL = Symbol("rtwidgets-kernel");
/** The root type shared with Python (`CollabDoc` uses the same name). */
export const TEXT_NAME = "text";
/** Local cursor moves are sent at most this often (latest position wins). */
export const CURSOR_THROTTLE_MS = 50;

const CSS = `
.rtw-collab_text { display: flex; flex-direction: column; gap: 6px; }
.rtw-collab_text .rtw-ct-head { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.rtw-collab_text .rtw-ct-peer { font-size: 0.9em; }
.rtw-collab_text .rtw-ct-peer.rtw-me { outline: 2px solid var(--jp-ui-font-color1, #222); }
.rtw-collab_text .rtw-ct-status { margin-left: auto; font-size: 0.9em; }
.rtw-collab_text .rtw-ct-editor {
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; overflow: auto;
  background: var(--jp-layout-color1, #fff);
}
.rtw-collab_text .cm-editor { height: 100%; }
/* Keyboard users must see where they are: a visible outline while the editor has focus. */
.rtw-collab_text .cm-editor.cm-focused {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: -2px;
}
.rtw-collab_text .cm-content { font-family: var(--jp-code-font-family, monospace); }
`;

/** A Uint8Array view of a buffer as anywidget delivers it (DataView, ArrayBuffer or typed array). */
export function toBytes(buffer) {
  if (buffer instanceof Uint8Array) return buffer;
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  throw new TypeError(`expected binary data, got ${typeof buffer}`);
}

/**
 * Build the editor and its bindings inside `el`. Returns handles for tests and `dispose()`,
 * which removes every listener, timer and DOM node it created.
 */
export function createCollabEditor({ model, el }) {
  return renderWidget({ model, el }, { name: "collab_text", css: CSS }, build);
}

/** Screen-reader name of the editor. */
export function editorLabel(channel) {
  return channel ? `Shared document ${channel}` : "Shared document";
}

function build({ model, scope }) {
  const ydoc = new Y.Doc();
  const ytext = ydoc.getText(TEXT_NAME);
  const awareness = new TraitAwareness(ydoc);
  awareness.setLocalState({ user: { name: str(model.get("user_name"), "me"), color: localColor() } });

  const peers = h("div", { class: "rtw-ct-peers rtw-row", "aria-label": "People editing" });
  const status = h("span", { class: "rtw-ct-status rtw-muted", "aria-live": "polite" });
  const head = h("div", { class: "rtw-ct-head" }, peers, status);
  const holder = h("div", { class: "rtw-ct-editor" });
  const root = h("div", { class: "rtw-widget rtw-collab_text" }, head, holder);

  const view = new EditorView({
    parent: holder,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
        lineNumbers(),
        EditorView.lineWrapping,
        // The editable element is what screen readers land on: it carries the name.
        EditorView.contentAttributes.of({ "aria-label": editorLabel(str(model.get("channel"))) }),
        placeholderExt(str(model.get("placeholder"))),
        yCollab(ytext, awareness), // with its own Y.UndoManager: undo only reverts our edits
      ],
    }),
  });

  function localColor() {
    return userColor(model.get("color"), model.get("user_name"));
  }

  // Local edits (typing, undo) -> kernel. Kernel-originated updates are never echoed back.
  const onUpdate = (update, origin) => {
    if (origin === KERNEL || scope.disposed) return;
    model.send({ action: "update" }, undefined, [update]);
  };
  ydoc.on("update", onUpdate);
  scope.add(() => ydoc.off("update", onUpdate));

  let lastError = "";
  // Kernel -> view. Bad buffers are reported on the status line, never thrown into the editor.
  scope.onModel("msg:custom", (msg, buffers) => {
    if (!msg || (msg.type !== "update" && msg.type !== "sync")) return;
    try {
      for (const buffer of list(buffers)) Y.applyUpdate(ydoc, toBytes(buffer), KERNEL);
      if (msg.type === "sync") root.dataset.synced = "true";
    } catch (err) {
      lastError = `could not apply an update from the kernel (${err.message})`;
      console.error("rtwidgets collab_text: bad update from the kernel", err);
    }
    renderStatus();
  });

  // Local cursor -> kernel (throttled; the latest position wins).
  let cursorTimer;
  let lastSent = "";
  const sendCursor = () => {
    cursorTimer = undefined;
    const cursor = awareness.getLocalState()?.cursor ?? null;
    const msg = cursor
      ? { action: "cursor", anchor: encodePosition(cursor.anchor), head: encodePosition(cursor.head) }
      : { action: "cursor", anchor: null, head: null };
    const key = JSON.stringify(msg);
    if (key === lastSent) return;
    lastSent = key;
    model.send(msg);
  };
  const onAwareness = (change, origin) => {
    if (origin !== "local" || cursorTimer !== undefined) return;
    cursorTimer = scope.timeout(sendCursor, CURSOR_THROTTLE_MS);
  };
  awareness.on("change", onAwareness);
  scope.add(() => awareness.off("change", onAwareness));

  function renderPeers() {
    const me = str(model.get("client_id"));
    const chips = list(model.get("peers"))
      .filter((p) => p && typeof p === "object")
      .map((p) =>
        userBadge(
          "span",
          {
            class: ["rtw-ct-peer", p.clientId === me && "rtw-me"],
            title: `${str(p.name)} (${str(p.userId)})${p.clientId === me ? " - you" : ""}`,
            color: p.color,
            userId: str(p.userId),
          },
          str(p.name) || str(p.userId) || "?",
        ),
      );
    peers.replaceChildren(...chips);
  }

  function renderStatus() {
    const state = str(model.get("status"), "connecting");
    const count = list(model.get("peers")).length;
    setText(status, `${state} · ${count} editing${lastError ? ` · ${lastError}` : ""}`);
    root.dataset.status = state;
  }

  function renderHeight() {
    const height = num(model.get("height"), 0);
    holder.style.height = height > 0 ? `${height}px` : "";
  }

  scope.onModel("change:cursors", () => awareness.setRemote(list(model.get("cursors"))));
  scope.onModel("change:peers", () => {
    renderPeers();
    renderStatus();
  });
  scope.onModel("change:status", renderStatus);
  scope.onModel("change:height", renderHeight);
  scope.onModel("change:user_name", () => awareness.setLocalStateField("user", { name: str(model.get("user_name")), color: localColor() }));
  scope.onModel("change:color", () => awareness.setLocalStateField("user", { name: str(model.get("user_name")), color: localColor() }));

  awareness.setRemote(list(model.get("cursors")));
  renderPeers();
  renderStatus();
  renderHeight();
  setAttr(root, "aria-label", editorLabel(str(model.get("channel"))));

  // Ask the kernel for everything this (empty) replica lacks.
  model.send({ action: "sync" }, undefined, [Y.encodeStateVector(ydoc)]);

  scope.add(() => {
    view.destroy();
    awareness.destroy();
    ydoc.destroy();
  });
  return { view, ydoc, ytext, awareness, root };
}

function render({ model, el }) {
  const editor = createCollabEditor({ model, el });
  return () => editor.dispose();
}

export default { render };
