// collab_text: the CodeMirror 6 + Yjs binding against a fake anywidget model. A second Y.Doc
// plays the kernel (pycrdt speaks the same Yjs encoding): its updates arrive as custom messages
// with binary buffers, and what the view sends is applied back to it.
import { afterEach, describe, expect, it, vi } from "vitest";
import * as Y from "yjs";
import { toBase64 } from "lib0/buffer";
import widget, { createCollabEditor, CURSOR_THROTTLE_MS, KERNEL, toBytes } from "../src/collab_text.js";
import { decodePosition, encodePosition, TraitAwareness } from "../src/lib/collab_awareness.js";
import { FakeModel } from "./fake_model.js";

/** FakeModel that also keeps the binary buffers of every `send`. */
class BufferModel extends FakeModel {
  constructor(state) {
    super(state);
    this.buffers = [];
  }

  send(content, callbacks, buffers) {
    super.send(content, callbacks, buffers);
    this.buffers.push(buffers ?? []);
  }

  /** The kernel sends a custom message; buffers arrive as DataViews, as in anywidget. */
  kernelSends(content, updates) {
    const views = updates.map((u) => new DataView(u.buffer, u.byteOffset, u.byteLength));
    this.emit("msg:custom", content, views);
  }

  sentWith(action) {
    return this.sent.map((c, i) => [c, this.buffers[i]]).filter(([c]) => c.action === action);
  }
}

const STATE = { channel: "doc:test", user_name: "alice", color: "#ff0000", client_id: "c-alice", peers: [], cursors: [], status: "live", height: 200, placeholder: "" };

function setup(state = {}) {
  const model = new BufferModel({ ...STATE, ...state });
  const el = document.createElement("div");
  document.body.append(el);
  const editor = createCollabEditor({ model, el });
  const kernel = new Y.Doc();
  const ktext = kernel.getText("text");
  return { model, el, editor, kernel, ktext };
}

/** Everything `kernel` has that the view lacks, delivered the way CollabText does. */
function kernelUpdate(model, kernel, view) {
  const diff = Y.encodeStateAsUpdate(kernel, Y.encodeStateVector(view.ydoc));
  model.kernelSends({ type: "update" }, [diff]);
}

describe("collab_text", () => {
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("names the editable element and keeps a visible focus outline", () => {
    const { editor, el } = setup();
    expect(editor.view.contentDOM.getAttribute("aria-label")).toBe("Shared document doc:test");
    // The stylesheet gives the focused editor an outline (CodeMirror's own is not left at "none").
    const css = [...document.querySelectorAll('style[data-rtw="collab_text"]')].map((s) => s.textContent).join("");
    const focused = /\.cm-editor\.cm-focused\s*\{([^}]*)\}/.exec(css);
    expect(focused).not.toBeNull();
    expect(focused[1]).toMatch(/outline:\s*2px solid/);
    expect(focused[1]).not.toMatch(/outline:\s*none/);
    // Peers are user badges: the user's colour with readable text on it.
    editor.dispose();
    expect(el.childElementCount).toBe(0);
  });

  it("shows peers as user badges with readable text", () => {
    const { model, editor } = setup();
    model.set("peers", [{ clientId: "c-bob", userId: "bob", name: "Bob", color: "#ffff00" }]);
    const chip = editor.root.querySelector(".rtw-ct-peer");
    expect(chip.classList.contains("rtw-user-badge")).toBe(true);
    expect(chip.style.background).toBe("rgb(255, 255, 0)");
    expect(chip.style.color).toBe("rgb(0, 0, 0)");
    editor.dispose();
  });

  it("asks the kernel for the document with its state vector and shows the answer", () => {
    const { model, editor, kernel, ktext } = setup();
    const [[content, buffers]] = model.sentWith("sync");
    expect(content).toEqual({ action: "sync" });
    expect(buffers[0]).toBeInstanceOf(Uint8Array);
    ktext.insert(0, "hello from python");
    model.kernelSends({ type: "sync" }, [Y.encodeStateAsUpdate(kernel, buffers[0])]);
    expect(editor.view.state.doc.toString()).toBe("hello from python");
    expect(editor.root.dataset.synced).toBe("true");
    editor.dispose();
  });

  it("applies a remote edit as a delta: the caret keeps its place and nothing is re-rendered", () => {
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "abcdef");
    kernelUpdate(model, kernel, editor);
    const view = editor.view;
    const contentDom = view.contentDOM;
    view.dispatch({ selection: { anchor: 3, head: 5 } }); // "de" selected
    ktext.insert(0, "XYZ"); // someone types before the selection
    ktext.insert(ktext.length, "!"); // and after it
    kernelUpdate(model, kernel, editor);
    expect(view.state.doc.toString()).toBe("XYZabcdef!");
    const sel = view.state.selection.main;
    expect([sel.anchor, sel.head]).toEqual([6, 8]); // still "de"
    expect(view.state.sliceDoc(sel.from, sel.to)).toBe("de");
    expect(view.contentDOM).toBe(contentDom); // same editor, same DOM: no wholesale re-render
    // A kernel update is never echoed back to the kernel.
    expect(model.sentWith("update")).toHaveLength(0);
    editor.dispose();
  });

  it("keeps a keystroke typed while a remote edit arrives", () => {
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "hello");
    kernelUpdate(model, kernel, editor);
    const view = editor.view;
    view.dispatch({ changes: { from: 5, insert: "!" }, selection: { anchor: 6 }, userEvent: "input.type" });
    ktext.insert(0, ">> "); // concurrent remote edit, not yet aware of "!"
    kernelUpdate(model, kernel, editor);
    expect(view.state.doc.toString()).toBe(">> hello!");
    expect(view.state.selection.main.head).toBe(9);
    editor.dispose();
  });

  it("sends each local edit as an update message with a binary buffer the kernel can apply", () => {
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "base");
    kernelUpdate(model, kernel, editor);
    editor.view.dispatch({ changes: { from: 4, insert: " typed" }, userEvent: "input.type" });
    const sent = model.sentWith("update");
    expect(sent).toHaveLength(1);
    const [content, buffers] = sent[0];
    expect(content).toEqual({ action: "update" });
    expect(buffers).toHaveLength(1);
    expect(buffers[0]).toBeInstanceOf(Uint8Array);
    Y.applyUpdate(kernel, buffers[0]);
    expect(ktext.toString()).toBe("base typed");
    editor.dispose();
  });

  it("draws remote cursors in the user's colour and removes them when the user leaves", () => {
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "shared text");
    kernelUpdate(model, kernel, editor);
    const anchor = toBase64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(ktext, 0)));
    const head = toBase64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(ktext, 6)));
    model.set("cursors", [{ clientId: "c-bob", userId: "bob", name: "Bob", color: "#00aa00", anchorPos: anchor, headPos: head }]);
    const caret = editor.root.querySelector(".cm-ySelectionCaret");
    expect(caret).not.toBeNull();
    expect(caret.textContent).toContain("Bob");
    expect(caret.style.borderColor || caret.style.backgroundColor).toMatch(/rgb\(0, 170, 0\)|#00aa00/);
    expect(editor.root.querySelector(".cm-ySelection")?.textContent).toBe("shared");
    model.set("cursors", []);
    expect(editor.root.querySelector(".cm-ySelectionCaret")).toBeNull();
    editor.dispose();
  });

  it("relabels a remote caret when only the name changes (same colour)", () => {
    // y-codemirror.next reuses a caret whose colour is unchanged (its widget ignores the name);
    // "anonymous" and "bob" share a palette colour, so the stale label would stay forever.
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "shared text");
    kernelUpdate(model, kernel, editor);
    const pos = toBase64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(ktext, 3)));
    const bob = { clientId: "c-bob", userId: "bob", color: "#3cb44b", anchorPos: pos, headPos: pos };
    const label = () => [...editor.root.querySelectorAll(".cm-ySelectionCaret .cm-ySelectionInfo")].map((e) => e.textContent);
    model.set("cursors", [{ ...bob, name: "anonymous" }]);
    expect(label()).toEqual(["anonymous"]);
    model.set("cursors", [{ ...bob, name: "bob" }]);
    expect(label()).toEqual(["bob"]);
    model.set("cursors", [{ ...bob, name: "bob", color: "#e6194b" }]); // a colour change still redraws
    expect(label()).toEqual(["bob"]);
    expect(editor.root.querySelector(".cm-ySelectionCaret").style.backgroundColor).toMatch(/rgb\(230, 25, 75\)|#e6194b/);
    editor.dispose();
  });

  it("sends the local selection as relative positions, throttled, latest wins", () => {
    vi.useFakeTimers();
    const { model, editor, kernel, ktext } = setup();
    ktext.insert(0, "0123456789");
    kernelUpdate(model, kernel, editor);
    const local = () => editor.awareness.getLocalState();
    editor.awareness.setLocalStateField("cursor", {
      anchor: Y.createRelativePositionFromTypeIndex(editor.ytext, 1),
      head: Y.createRelativePositionFromTypeIndex(editor.ytext, 1),
    });
    editor.awareness.setLocalStateField("cursor", {
      anchor: Y.createRelativePositionFromTypeIndex(editor.ytext, 2),
      head: Y.createRelativePositionFromTypeIndex(editor.ytext, 4),
    });
    expect(model.sentWith("cursor")).toHaveLength(0);
    vi.advanceTimersByTime(CURSOR_THROTTLE_MS);
    const sent = model.sentWith("cursor");
    expect(sent).toHaveLength(1);
    const msg = sent[0][0];
    expect(Y.createAbsolutePositionFromRelativePosition(decodePosition(msg.anchor), kernel).index).toBe(2);
    expect(Y.createAbsolutePositionFromRelativePosition(decodePosition(msg.head), kernel).index).toBe(4);
    expect(local().user).toEqual({ name: "alice", color: "#ff0000" });
    editor.awareness.setLocalStateField("cursor", null);
    vi.advanceTimersByTime(CURSOR_THROTTLE_MS);
    expect(model.sentWith("cursor").at(-1)[0]).toEqual({ action: "cursor", anchor: null, head: null });
    editor.dispose();
  });

  it("reports a bad update from the kernel without breaking the editor", () => {
    const { model, editor, kernel, ktext } = setup();
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    model.kernelSends({ type: "update" }, [new Uint8Array([9, 9, 9])]);
    expect(error).toHaveBeenCalled();
    expect(editor.root.querySelector(".rtw-ct-status").textContent).toMatch(/live .* could not apply an update/);
    ktext.insert(0, "still works");
    kernelUpdate(model, kernel, editor);
    expect(editor.view.state.doc.toString()).toBe("still works");
    editor.dispose();
  });

  it("renders peers and status, and cleans up every listener, timer and node", () => {
    vi.useFakeTimers();
    const model = new BufferModel({
      ...STATE,
      peers: [
        { clientId: "c-alice", userId: "alice", name: "alice", color: "#ff0000" },
        { clientId: "c-bob", userId: "bob", name: "Bob", color: "#00aa00" },
      ],
    });
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el });
    const root = el.querySelector(".rtw-widget.rtw-collab_text");
    expect([...root.querySelectorAll(".rtw-ct-peer")].map((p) => p.textContent)).toEqual(["alice", "Bob"]);
    expect(root.querySelector(".rtw-ct-peer.rtw-me").textContent).toBe("alice");
    expect(root.querySelector(".rtw-ct-status").textContent).toBe("live · 2 editing");
    model.set("status", "reconnecting");
    expect(root.dataset.status).toBe("reconnecting");
    expect(root.querySelector(".cm-editor")).not.toBeNull();
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    const before = model.sent.length;
    model.kernelSends({ type: "update" }, [new Uint8Array([0, 0])]);
    vi.runAllTimers();
    expect(model.sent.length).toBe(before);
  });
});

describe("collab awareness adapter", () => {
  it("maps remote entries to awareness states and reports added/updated/removed", () => {
    const doc = new Y.Doc();
    const text = doc.getText("text");
    text.insert(0, "abc");
    const awareness = new TraitAwareness(doc);
    const changes = [];
    awareness.on("change", (change, origin) => changes.push([change, origin]));
    const pos = encodePosition(Y.createRelativePositionFromTypeIndex(text, 1));
    awareness.setRemote([{ clientId: "x", name: "X", color: "#123456", anchorPos: pos, headPos: pos }]);
    awareness.setRemote([{ clientId: "x", name: "X", color: "#123456", anchorPos: pos, headPos: pos }]);
    awareness.setRemote([{ clientId: "x", name: "X2", color: "#123456", anchorPos: "@@bad", headPos: pos }]);
    awareness.setRemote([]);
    awareness.setRemote([{ clientId: "x", name: "X2", color: "#123456", anchorPos: pos, headPos: pos }]);
    awareness.setRemote([{ clientId: "x", name: "X2", color: "#654321", anchorPos: "@@bad", headPos: pos }]);
    awareness.setRemote([]);
    expect(changes.map(([c]) => [c.added.length, c.updated.length, c.removed.length])).toEqual([
      [1, 0, 0],
      [0, 0, 1], // renamed: out, then back in (the caret is redrawn with the new label)
      [1, 0, 0],
      [0, 0, 1],
      [1, 0, 0], // a new connection after leaving
      [0, 1, 0], // same name, other cursor and colour: an update
      [0, 0, 1],
    ]);
    expect(awareness.getStates().size).toBe(0);
    expect(decodePosition("")).toBeNull();
  });

  it("toBytes accepts what anywidget may deliver and refuses the rest", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    expect([...toBytes(new DataView(bytes.buffer))]).toEqual([1, 2, 3]);
    expect([...toBytes(bytes.buffer)]).toEqual([1, 2, 3]);
    expect(toBytes(bytes)).toBe(bytes);
    expect(() => toBytes("nope")).toThrow(TypeError);
    expect(KERNEL).toBeTypeOf("symbol");
  });
});
