import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { ROLLBACK_FLASH_MS, ROLLBACK_LINES } from "../src/todo_list.js";
import { mount } from "./fake_model.js";

const BASE = {
  channel: "todos",
  state: "connected",
  items: [
    { id: "a", text: "buy milk", done: false, pending: false },
    { id: "b", text: "write tests", done: true, pending: false },
  ],
  pending_count: 0,
};

/** The kernel's rollback message: every rollback of one flush. */
const rollback = (model, ...rollbacks) => model.emit("msg:custom", { type: "rollback", rollbacks }, []);

const row = (el, id) => el.querySelector(`.rtw-item[data-id="${id}"]`);

function press(target, key) {
  const event = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true });
  target.dispatchEvent(event);
  return event;
}

describe("todo_list", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("renders items from the initial traits", () => {
    const { el } = mount(widget, BASE);
    const root = el.querySelector(".rtw-widget.rtw-todo_list");
    expect(root.dataset.state).toBe("connected");
    expect([...root.querySelectorAll(".rtw-item")].map((r) => r.dataset.id)).toEqual(["a", "b"]);
    expect(row(el, "a").querySelector(".rtw-item-text").textContent).toBe("buy milk");
    expect(row(el, "a").querySelector(".rtw-item-check").checked).toBe(false);
    expect(row(el, "b").querySelector(".rtw-item-check").checked).toBe(true);
    expect(row(el, "b").classList.contains("rtw-done")).toBe(true);
    expect(row(el, "a").querySelector(".rtw-item-delete").getAttribute("aria-label")).toBe("Delete: buy milk");
    expect(root.querySelector(".rtw-todo-pending").textContent).toBe("");
    expect(root.querySelector(".rtw-rollback").hidden).toBe(true);
    expect(root.querySelector(".rtw-todo-empty").hidden).toBe(true);
  });

  it("sends create on Add and on Enter, ignoring blank text", () => {
    const { el, model } = mount(widget, BASE);
    const input = el.querySelector(".rtw-todo-input");
    input.value = "  call mum ";
    el.querySelector(".rtw-todo-add").click();
    expect(model.sent).toEqual([{ action: "create", text: "call mum" }]);
    expect(input.value).toBe("");
    input.value = "water plants";
    expect(press(input, "Enter").defaultPrevented).toBe(true);
    input.value = "   ";
    press(input, "Enter");
    expect(model.sent).toEqual([
      { action: "create", text: "call mum" },
      { action: "create", text: "water plants" },
    ]);
  });

  it("toggle and delete send intents; the checkbox stays controlled by the trait", () => {
    const { el, model } = mount(widget, BASE);
    const check = row(el, "a").querySelector(".rtw-item-check");
    check.click();
    expect(model.sent).toEqual([{ action: "toggle", id: "a" }]);
    expect(check.checked).toBe(false); // not yet: Python's optimistic state decides
    model.update({
      items: [{ ...BASE.items[0], done: true, pending: true }, BASE.items[1]],
      pending_count: 1,
    });
    expect(check.checked).toBe(true);
    row(el, "b").querySelector(".rtw-item-delete").click();
    expect(model.sent.at(-1)).toEqual({ action: "delete", id: "b" });
  });

  it("shows pending rows and the pending counter", () => {
    const { el, model } = mount(widget, BASE);
    const before = row(el, "a");
    model.update({
      items: [...BASE.items, { id: "tmp-1", text: "new", done: false, pending: true }],
      pending_count: 1,
    });
    const pending = row(el, "tmp-1");
    expect(pending.classList.contains("rtw-pending")).toBe(true);
    expect(pending.getAttribute("aria-busy")).toBe("true");
    expect(pending.querySelector(".rtw-spinner")).not.toBeNull();
    expect(row(el, "a").classList.contains("rtw-pending")).toBe(false);
    expect(row(el, "a")).toBe(before);
    expect(el.querySelector(".rtw-todo-pending").textContent).toBe("1 pending");
    model.update({ items: BASE.items, pending_count: 0 });
    expect(row(el, "tmp-1")).toBeNull();
    expect(el.querySelector(".rtw-todo-pending").textContent).toBe("");
  });

  it("edits inline: Enter sends edit, Escape cancels", () => {
    const { el, model } = mount(widget, BASE);
    row(el, "a").querySelector(".rtw-item-edit").click();
    let editor = row(el, "a").querySelector(".rtw-item-editor");
    expect(editor.value).toBe("buy milk");
    editor.value = "buy oat milk";
    press(editor, "Enter");
    expect(model.sent).toEqual([{ action: "edit", id: "a", text: "buy oat milk" }]);
    expect(row(el, "a").querySelector(".rtw-item-editor")).toBeNull();
    expect(row(el, "a").querySelector(".rtw-item-text").textContent).toBe("buy milk");
    expect(document.activeElement).toBe(row(el, "a").querySelector(".rtw-item-edit"));
    row(el, "a").querySelector(".rtw-item-text").dispatchEvent(new MouseEvent("dblclick", { bubbles: true }));
    editor = row(el, "a").querySelector(".rtw-item-editor");
    editor.value = "something else";
    press(editor, "Escape");
    expect(model.sent).toHaveLength(1);
    expect(row(el, "a").querySelector(".rtw-item-text")).not.toBeNull();
    // Leaving the editor (blur) commits, once.
    row(el, "b").querySelector(".rtw-item-edit").click();
    editor = row(el, "b").querySelector(".rtw-item-editor");
    editor.value = "write more tests";
    editor.dispatchEvent(new FocusEvent("blur"));
    editor.dispatchEvent(new FocusEvent("blur"));
    expect(model.sent.slice(1)).toEqual([{ action: "edit", id: "b", text: "write more tests" }]);
  });

  it("renders item text as text, never HTML", () => {
    const evil = '<img src=x onerror="window.__x=1">';
    const { el } = mount(widget, { ...BASE, items: [{ id: "e", text: evil, done: false, pending: false }] });
    expect(row(el, "e").querySelector(".rtw-item-text").textContent).toBe(evil);
    expect(el.querySelector("img")).toBeNull();
  });

  it("shows a rollback notice and flashes the row for each rollback message", () => {
    // A trait value present at render time is history, not news: rollbacks are messages now.
    const { el, model } = mount(widget, { ...BASE, last_rollback: { opId: "op0", itemId: "a", reason: "old", ts: 1 } });
    const notice = el.querySelector(".rtw-rollback");
    expect(notice.hidden).toBe(true);
    rollback(model, { opId: "op1", itemId: "a", reason: "item was deleted", ts: 2 });
    expect(notice.hidden).toBe(false);
    expect(notice.textContent).toContain("Change rolled back: item was deleted");
    expect(row(el, "a").classList.contains("rtw-rolled-back")).toBe(true);
    // The flash survives a re-render of the items in the meantime.
    model.set("items", [...BASE.items]);
    expect(row(el, "a").classList.contains("rtw-rolled-back")).toBe(true);
    vi.advanceTimersByTime(ROLLBACK_FLASH_MS);
    expect(row(el, "a").classList.contains("rtw-rolled-back")).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    el.querySelector(".rtw-rollback-dismiss").click();
    expect(notice.hidden).toBe(true);
    expect(notice.textContent).not.toContain("item was deleted"); // dismissed lines are gone
    // Other custom messages and empty rollback lists are not rollbacks.
    model.emit("msg:custom", { type: "intent_error", action: "x", message: "m" }, []);
    rollback(model);
    expect(notice.hidden).toBe(true);
  });

  it("two rollbacks in one message both show: two lines, two flashing rows", () => {
    const { el, model } = mount(widget, BASE);
    const notice = el.querySelector(".rtw-rollback");
    rollback(
      model,
      { opId: "op1", itemId: "a", kind: "update", reason: "forbidden", ts: 3 },
      { opId: "op2", itemId: "b", kind: "delete", reason: "timeout", ts: 3 },
    );
    const lines = [...notice.querySelectorAll(".rtw-rollback-line")].map((li) => li.textContent);
    expect(lines).toEqual(["Change rolled back: forbidden", "Change rolled back: timeout"]);
    expect(row(el, "a").classList.contains("rtw-rolled-back")).toBe(true);
    expect(row(el, "b").classList.contains("rtw-rolled-back")).toBe(true);
    // A later message adds to the lines shown (bounded), it does not replace them.
    rollback(model, { opId: "op3", itemId: "a", kind: "update", reason: "state_full", ts: 4 });
    expect(notice.querySelectorAll(".rtw-rollback-line").length).toBe(3);
    for (let i = 0; i < 10; i++) rollback(model, { opId: `x${i}`, itemId: "a", reason: `r${i}`, ts: 5 + i });
    const shown = [...notice.querySelectorAll(".rtw-rollback-line")].map((li) => li.textContent);
    expect(shown).toHaveLength(ROLLBACK_LINES);
    expect(shown.at(-1)).toBe("Change rolled back: r9");
  });

  it("cleanup removes listeners, timers and DOM", () => {
    const { el, model, cleanup } = mount(widget, BASE);
    const del = row(el, "a").querySelector(".rtw-item-delete");
    rollback(model, { opId: "op1", itemId: "a", reason: "x", ts: 5 });
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    del.click();
    expect(model.sent).toEqual([]);
  });
});
