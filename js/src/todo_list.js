// TodoList: optimistic list. Rows are controlled by the `items` trait: a click sends an intent
// and the row only changes when Python's optimistic state arrives (so the view never lies).
// Intents: create {text}, toggle {id}, edit {id, text}, delete {id}.
import { h, setAttr, setText } from "./lib/dom.js";
import { showIntentErrors } from "./lib/intent_errors.js";
import { createScope } from "./lib/scope.js";
import { BASE_CSS, injectStyle, toneForState } from "./lib/style.js";
import { dict, list, num, str } from "./lib/traits.js";

/** How long a rolled-back row keeps its `rtw-rolled-back` flash. */
export const ROLLBACK_FLASH_MS = 2000;

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
  border: 1px solid var(--jp-error-color1, #d32f2f); color: var(--jp-error-color1, #d32f2f);
}
.rtw-todo_list .rtw-rollback[hidden] { display: none; }
.rtw-todo_list .rtw-todo-pending:empty { display: none; }
.rtw-todo_list .rtw-todo-empty { padding: 4px; }
@keyframes rtw-spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { .rtw-todo_list .rtw-item.rtw-pending .rtw-spinner { animation: none; } }
`;

function render({ model, el }) {
  injectStyle("base", BASE_CSS, el);
  injectStyle("todo_list", CSS, el);
  const scope = createScope(model);

  const badge = h("span", { class: "rtw-badge" });
  const channel = h("span", { class: "rtw-todo-channel" });
  const pendingCount = h("span", { class: "rtw-todo-pending rtw-muted", "aria-live": "polite" });
  const input = h("input", { type: "text", class: "rtw-todo-input", "aria-label": "New item", placeholder: "What needs doing?" });
  const add = h("button", { type: "button", class: "rtw-todo-add", text: "Add" });
  const noticeText = h("span", { class: "rtw-rollback-text" });
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
  const rows = new Map();
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
    const seen = new Set();
    const ordered = [];
    for (const item of list(model.get("items"))) {
      if (item === null || typeof item !== "object") continue;
      const id = str(item.id);
      if (seen.has(id)) continue;
      seen.add(id);
      let parts = rows.get(id);
      if (!parts) {
        parts = buildRow(id);
        rows.set(id, parts);
      }
      updateRow(parts, item);
      ordered.push(parts.row);
    }
    for (const id of rows.keys()) if (!seen.has(id)) rows.delete(id);
    const current = itemsList.children;
    let same = current.length === ordered.length;
    for (let i = 0; same && i < ordered.length; i++) same = current[i] === ordered[i];
    if (!same) itemsList.replaceChildren(...ordered);
    empty.hidden = ordered.length > 0;
  }

  function renderHeader() {
    const state = str(model.get("state"), "disconnected");
    root.dataset.state = state;
    setText(badge, state);
    for (const t of ["success", "warn", "error"]) badge.classList.toggle(`rtw-tone-${t}`, t === toneForState(state));
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

  // Only a rollback with a new ts is news; the value present at render time is history.
  let lastRollbackTs = num(dict(model.get("last_rollback")).ts, NaN);

  function onRollback() {
    const rb = dict(model.get("last_rollback"));
    const ts = num(rb.ts, NaN);
    if (!Number.isFinite(ts) || ts === lastRollbackTs) return;
    lastRollbackTs = ts;
    const reason = str(rb.reason) || "refused by the server";
    setText(noticeText, `Change rolled back: ${reason}`);
    notice.hidden = false;
    const itemId = str(rb.itemId);
    if (itemId) flash(itemId);
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
  });

  scope.onModel("change:items", renderItems);
  scope.onModel("change:last_rollback", onRollback);
  for (const trait of ["state", "channel", "pending_count"]) scope.onModel(`change:${trait}`, renderHeader);

  renderHeader();
  renderItems();
  showIntentErrors(scope, root); // refused intents: a transient notice, removed on dispose
  el.append(root);
  scope.add(() => root.remove());
  return () => scope.dispose();
}

export default { render };
