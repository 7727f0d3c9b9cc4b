// TodoList: optimistic list. Rows are controlled by the `items` trait: a click sends an intent
// and the row only changes when Python's optimistic state arrives (so the view never lies).
// Intents: create {text}, toggle {id}, edit {id, text}, delete {id}.
// Rollbacks are one-off events, so they arrive as custom messages
// {type: "rollback", rollbacks: [{opId, itemId, kind, reason, ts}, ...]} (every rollback of a
// flush, none lost), not as a latest-wins trait.
import { setStateBadge, stateBadge } from "./lib/badge.js";
import { h, setAttr, setText } from "./lib/dom.js";
import { createKeyedList } from "./lib/keyed_list.js";
import { dict, list, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

/** How long a rolled-back row keeps its `rtw-rolled-back` flash. */
export const ROLLBACK_FLASH_MS = 2000;
/** At most this many rollback lines in the notice (newest last). */
export const ROLLBACK_LINES = 5;

/** The notice line for one rollback (plain text). */
export function rollbackText(rb) {
  const reason = str(rb.reason) || "refused by the server";
  return `Change rolled back: ${reason}`;
}

const CSS = `
.rtw-todo_list { display: flex; flex-direction: column; gap: 6px; }
.rtw-todo_list .rtw-todo-new { display: flex; gap: 6px; }
.rtw-todo_list .rtw-todo-input { flex: 1; }
.rtw-todo_list .rtw-todo-items { list-style: none; margin: 0; padding: 0; }
.rtw-todo_list .rtw-item {
  display: flex; align-items: center; gap: 6px; padding: 3px 4px; border-radius: 4px;
  transition: background-color 0.3s;
}
.rtw-todo_list .rtw-item-text { flex: 1; overflow-wrap: anywhere; }
.rtw-todo_list .rtw-item.rtw-done .rtw-item-text { text-decoration: line-through; color: var(--jp-ui-font-color2, #777); }
.rtw-todo_list .rtw-item.rtw-pending { opacity: 0.6; font-style: italic; }
.rtw-todo_list .rtw-spinner { display: none; }
.rtw-todo_list .rtw-item.rtw-pending .rtw-spinner { display: inline-block; animation: rtw-spin 1s linear infinite; }
.rtw-todo_list .rtw-item.rtw-rolled-back {
  background: color-mix(in srgb, var(--jp-error-color1, #d32f2f) 20%, transparent);
}
.rtw-todo_list .rtw-rollback {
  display: flex; gap: 8px; align-items: center; padding: 4px 8px; border-radius: 4px;
  border: 1px solid var(--jp-error-color1, #d32f2f); border-left-width: 4px;
}
.rtw-todo_list .rtw-rollback[hidden] { display: none; }
.rtw-todo_list .rtw-rollback-lines { list-style: none; margin: 0; padding: 0; flex: 1; }
.rtw-todo_list .rtw-todo-pending:empty { display: none; }
.rtw-todo_list .rtw-todo-empty { padding: 4px; }
@keyframes rtw-spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { .rtw-todo_list .rtw-item.rtw-pending .rtw-spinner { animation: none; } }
`;

function build({ model, scope }) {
  const badge = stateBadge();
  const channel = h("span", { class: "rtw-todo-channel" });
  const pendingCount = h("span", { class: "rtw-todo-pending rtw-muted", "aria-live": "polite" });
  const input = h("input", { type: "text", class: "rtw-todo-input", "aria-label": "New item", placeholder: "What needs doing?" });
  const add = h("button", { type: "button", class: "rtw-todo-add", text: "Add" });
  const noticeText = h("ul", { class: "rtw-rollback-text rtw-rollback-lines" });
  const dismiss = h("button", { type: "button", class: "rtw-rollback-dismiss", text: "Dismiss" });
  const notice = h("div", { class: "rtw-rollback", role: "status", "aria-live": "polite", hidden: true }, noticeText, dismiss);
  const itemsList = h("ul", { class: "rtw-todo-items", "aria-label": "Items" });
  const empty = h("div", { class: "rtw-todo-empty rtw-muted", text: "Nothing to do." });
  const root = h(
    "div",
    { class: "rtw-widget rtw-todo_list" },
    h("div", { class: "rtw-row" }, channel, badge, pendingCount),
    notice,
    h("div", { class: "rtw-todo-new" }, input, add),
    itemsList,
    empty,
  );

  /** id -> row parts; rows are reused so an edit in progress survives other updates. */
  const rows = createKeyedList(itemsList, {
    keyOf: (item) => str(item.id),
    create: (id) => buildRow(id),
    update: (parts, item) => updateRow(parts, item),
  });
  /** itemId -> flash timer for rows currently showing `rtw-rolled-back`. */
  const flashing = new Map();

  function buildRow(id) {
    const check = h("input", { type: "checkbox", class: "rtw-item-check" });
    const text = h("span", { class: "rtw-item-text" });
    const spinner = h("span", { class: "rtw-spinner", "aria-hidden": "true", text: "⟳" });
    const pendingLabel = h("span", { class: "rtw-sr-only" });
    const edit = h("button", { type: "button", class: "rtw-item-edit", text: "Edit" });
    const del = h("button", { type: "button", class: "rtw-item-delete", text: "Delete" });
    const row = h("li", { class: "rtw-item", dataset: { id } }, check, text, spinner, pendingLabel, edit, del);
    return { id, row, check, text, spinner, pendingLabel, edit, del, item: null, editor: null };
  }

  /** Row parts for an event inside the list (rows use delegation: no per-row listeners). */
  function partsFor(event) {
    const row = event.target instanceof Element ? event.target.closest("li.rtw-item") : null;
    return row ? rows.get(row.dataset.id) : undefined;
  }

  function startEdit(parts) {
    if (parts.editor) return;
    const editor = h("input", {
      type: "text",
      class: "rtw-item-editor",
      "aria-label": `Edit: ${str(parts.item?.text)}`,
    });
    editor.value = str(parts.item?.text);
    parts.editor = editor;
    const listeners = scope.controller();
    const finish = (commit, refocus) => {
      if (parts.editor !== editor) return; // already finished (blur fires during replaceWith)
      parts.editor = null;
      listeners.abort();
      const value = editor.value.trim();
      editor.replaceWith(parts.text);
      // Keyboard users finishing with Enter/Escape land back on the Edit button, not on <body>.
      if (refocus) parts.edit.focus();
      if (commit && value !== "" && value !== str(parts.item?.text)) {
        model.send({ action: "edit", id: parts.id, text: value });
      }
    };
    const opts = { signal: listeners.signal };
    scope.listen(
      editor,
      "keydown",
      (event) => {
        if (event.key === "Enter" && !event.isComposing) {
          event.preventDefault();
          finish(true, true);
        } else if (event.key === "Escape") {
          event.preventDefault();
          finish(false, true);
        }
      },
      opts,
    );
    scope.listen(editor, "blur", () => finish(true, false), opts);
    parts.text.replaceWith(editor);
    editor.focus();
  }

  scope.listen(itemsList, "change", (event) => {
    const parts = partsFor(event);
    if (!parts || event.target !== parts.check) return;
    // Controlled: restore the model's value; Python's optimistic update flips it.
    parts.check.checked = parts.item?.done === true;
    model.send({ action: "toggle", id: parts.id });
  });
  scope.listen(itemsList, "click", (event) => {
    const parts = partsFor(event);
    if (!parts) return;
    if (parts.del.contains(event.target)) model.send({ action: "delete", id: parts.id });
    else if (parts.edit.contains(event.target)) startEdit(parts);
  });
  scope.listen(itemsList, "dblclick", (event) => {
    const parts = partsFor(event);
    if (parts && parts.text.contains(event.target)) startEdit(parts);
  });

  function updateRow(parts, item) {
    parts.item = item;
    const done = item.done === true;
    const pending = item.pending === true;
    const text = str(item.text);
    parts.row.classList.toggle("rtw-done", done);
    parts.row.classList.toggle("rtw-pending", pending);
    parts.row.classList.toggle("rtw-rolled-back", flashing.has(parts.id));
    setAttr(parts.row, "aria-busy", pending ? "true" : null);
    parts.check.checked = done;
    setAttr(parts.check, "aria-label", `Done: ${text}`);
    setText(parts.text, text);
    setText(parts.pendingLabel, pending ? "(saving)" : "");
    setAttr(parts.edit, "aria-label", `Edit: ${text}`);
    setAttr(parts.del, "aria-label", `Delete: ${text}`);
  }

  function renderItems() {
    empty.hidden = rows.render(list(model.get("items"))) > 0;
  }

  function renderHeader() {
    const state = str(model.get("state"), "disconnected");
    root.dataset.state = state;
    setStateBadge(badge, state);
    const ch = str(model.get("channel"));
    setText(channel, ch ? `#${ch}` : "");
    const n = Math.max(0, Math.trunc(num(model.get("pending_count"))));
    setText(pendingCount, n > 0 ? `${n} pending` : "");
    root.dataset.pending = String(n);
  }

  function flash(itemId) {
    scope.clearTimeout(flashing.get(itemId));
    const timer = scope.timeout(() => {
      flashing.delete(itemId);
      rows.get(itemId)?.row.classList.remove("rtw-rolled-back");
    }, ROLLBACK_FLASH_MS);
    flashing.set(itemId, timer);
    rows.get(itemId)?.row.classList.add("rtw-rolled-back");
  }

  /** Show every rollback of one message: a notice line each (the newest ROLLBACK_LINES), a row flash each. */
  function onRollbacks(rollbacks) {
    const fresh = list(rollbacks).map(dict).filter((rb) => Object.keys(rb).length > 0);
    if (fresh.length === 0) return;
    const added = fresh.map((rb) => h("li", { class: "rtw-rollback-line" }, rollbackText(rb)));
    const lines = [...noticeText.children, ...added];
    noticeText.replaceChildren(...lines.slice(-ROLLBACK_LINES));
    notice.hidden = false;
    for (const rb of fresh) {
      const itemId = str(rb.itemId);
      if (itemId) flash(itemId);
    }
  }

  function create() {
    const text = input.value.trim();
    if (text === "") return;
    model.send({ action: "create", text });
    input.value = "";
  }

  scope.listen(add, "click", create);
  scope.listen(input, "keydown", (event) => {
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      create();
    }
  });
  scope.listen(dismiss, "click", () => {
    notice.hidden = true;
    noticeText.replaceChildren();
  });

  scope.onModel("change:items", renderItems);
  scope.onModel("msg:custom", (msg) => {
    if (msg && typeof msg === "object" && msg.type === "rollback") onRollbacks(msg.rollbacks);
  });
  for (const trait of ["state", "channel", "pending_count"]) scope.onModel(`change:${trait}`, renderHeader);

  renderHeader();
  renderItems();
  return root;
}

export default { render: widgetRender({ name: "todo_list", css: CSS }, build) };
