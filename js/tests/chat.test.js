import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { typingText } from "../src/chat.js";
import { mount } from "./fake_model.js";

const T0 = new Date("2026-01-01T12:34:00").getTime();

function msg(id, user, text, extra = {}) {
  return { id, user, text, ts: T0, pending: false, failed: false, color: "#336699", ...extra };
}

const BASE = {
  channel: "general",
  me: "alice",
  state: "connected",
  messages: [msg("m1", "bob", "hello"), msg("m2", "alice", "hi bob")],
  typing: [],
  placeholder: "Say something",
};

function type(input, value) {
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

function press(input, key, opts = {}) {
  const event = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...opts });
  input.dispatchEvent(event);
  return event;
}

describe("chat", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(T0);
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("renders messages with sender, colour, time and text", () => {
    const { el } = mount(widget, BASE);
    const root = el.querySelector(".rtw-widget.rtw-chat");
    expect(root.dataset.state).toBe("connected");
    const rows = root.querySelectorAll(".rtw-msg");
    expect([...rows].map((r) => r.dataset.id)).toEqual(["m1", "m2"]);
    expect(rows[0].querySelector(".rtw-msg-user").textContent).toBe("bob");
    // The sender is a badge in the user's colour, with text readable on it.
    const user = rows[0].querySelector(".rtw-msg-user");
    expect(user.classList.contains("rtw-user-badge")).toBe(true);
    expect(user.style.background).toBe("rgb(51, 102, 153)");
    expect(user.style.color).toBe("rgb(255, 255, 255)");
    expect(rows[0].querySelector(".rtw-msg-time").textContent).toBe("12:34");
    expect(rows[0].querySelector(".rtw-msg-text").textContent).toBe("hello");
    expect(rows[1].classList.contains("rtw-mine")).toBe(true);
    expect(root.querySelector(".rtw-chat-feed").getAttribute("aria-live")).toBe("polite");
    expect(root.querySelector(".rtw-chat-input").getAttribute("placeholder")).toBe("Say something");
  });

  it("renders user text as text, never HTML", () => {
    const evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
    const { el, model } = mount(widget, { ...BASE, messages: [msg("x", "<script>", evil, { color: "red;}" })] });
    const row = el.querySelector(".rtw-msg");
    expect(row.querySelector(".rtw-msg-text").textContent).toBe(evil);
    expect(row.querySelector("img")).toBeNull();
    expect(row.querySelector("b")).toBeNull();
    expect(row.querySelector(".rtw-msg-user").textContent).toBe("<script>");
    // An unsafe colour string falls back to the computed per-user colour.
    expect(row.querySelector(".rtw-msg-user").style.background).not.toContain("red");
    expect(row.querySelector(".rtw-msg-user").style.background).not.toBe("");
    model.set("typing", ['<img src=x onerror="1">']);
    expect(el.querySelector(".rtw-chat-typing img")).toBeNull();
    expect(el.querySelector("img")).toBeNull();
  });

  it("marks pending and failed messages and reuses rows on update", () => {
    const { el, model } = mount(widget, BASE);
    const first = el.querySelector('.rtw-msg[data-id="m1"]');
    model.set("messages", [...BASE.messages, msg("local-1", "alice", "on my way", { pending: true })]);
    const pending = el.querySelector('.rtw-msg[data-id="local-1"]');
    expect(pending.classList.contains("rtw-pending")).toBe(true);
    expect(pending.querySelector(".rtw-msg-mark").getAttribute("aria-label")).toBe("sending");
    expect(el.querySelector('.rtw-msg[data-id="m1"]')).toBe(first);
    model.set("messages", [...BASE.messages, msg("local-1", "alice", "on my way", { failed: true })]);
    const failed = el.querySelector('.rtw-msg[data-id="local-1"]');
    expect(failed).toBe(pending);
    expect(failed.classList.contains("rtw-failed")).toBe(true);
    expect(failed.classList.contains("rtw-pending")).toBe(false);
    expect(failed.querySelector(".rtw-msg-mark").textContent).toBe("⚠ not sent");
    model.set("messages", [msg("m2", "alice", "hi bob")]);
    expect([...el.querySelectorAll(".rtw-msg")].map((r) => r.dataset.id)).toEqual(["m2"]);
  });

  it("Enter sends the exact intent, Shift+Enter does not, blank is ignored", () => {
    const { el, model } = mount(widget, BASE);
    const input = el.querySelector(".rtw-chat-input");
    type(input, "line one");
    model.sent.length = 0;
    const shift = press(input, "Enter", { shiftKey: true });
    expect(shift.defaultPrevented).toBe(false);
    expect(model.sent).toEqual([]);
    const enter = press(input, "Enter");
    expect(enter.defaultPrevented).toBe(true);
    expect(model.sent).toHaveLength(2);
    // Sending ends the typing state first, then the message goes out.
    expect(model.sent[0]).toEqual({ action: "typing", typing: false });
    expect(model.sent[1]).toEqual({ action: "send", text: "line one", localId: expect.any(String) });
    expect(model.sent[1].localId.length).toBeGreaterThan(8);
    expect(input.value).toBe("");
    model.sent.length = 0;
    type(input, "   ");
    press(input, "Enter");
    expect(model.sent).toEqual([]);
  });

  it("Send button sends with a fresh localId each time", () => {
    const { el, model } = mount(widget, { ...BASE, state: "reconnecting" });
    const input = el.querySelector(".rtw-chat-input");
    // Offline: input stays enabled (messages queue), the state is shown.
    expect(input.disabled).toBe(false);
    expect(el.querySelector(".rtw-chat-offline").textContent).toContain("offline");
    input.value = "a";
    el.querySelector(".rtw-chat-send").click();
    input.value = "b";
    el.querySelector(".rtw-chat-send").click();
    const sends = model.sent.filter((m) => m.action === "send");
    expect(sends.map((m) => m.text)).toEqual(["a", "b"]);
    expect(sends[0].localId).not.toBe(sends[1].localId);
  });

  it("throttles typing:true and sends typing:false after 2 s idle", () => {
    const { el, model } = mount(widget, BASE);
    const input = el.querySelector(".rtw-chat-input");
    type(input, "h");
    expect(model.sent).toEqual([{ action: "typing", typing: true }]);
    vi.advanceTimersByTime(500);
    type(input, "he");
    vi.advanceTimersByTime(500);
    type(input, "hel");
    expect(model.sent).toHaveLength(1);
    vi.advanceTimersByTime(600); // 1.6 s since the first typing:true
    type(input, "hell");
    expect(model.sent).toEqual([
      { action: "typing", typing: true },
      { action: "typing", typing: true },
    ]);
    vi.advanceTimersByTime(1999);
    expect(model.sent).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(model.sent[2]).toEqual({ action: "typing", typing: false });
    expect(vi.getTimerCount()).toBe(0);
    // Clearing the box ends typing at once.
    type(input, "x");
    type(input, "");
    expect(model.sent.slice(-2)).toEqual([
      { action: "typing", typing: true },
      { action: "typing", typing: false },
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("shows who is typing, excluding me", () => {
    const { el, model } = mount(widget, BASE);
    const line = el.querySelector(".rtw-chat-typing");
    expect(line.textContent).toBe("");
    model.set("typing", ["bob"]);
    expect(line.textContent).toBe("bob is typing…");
    model.set("typing", ["bob", "alice", "carol"]);
    expect(line.textContent).toBe("bob and carol are typing…");
    expect(typingText(["a", "b", "c", "d"])).toBe("4 people are typing…");
  });

  it("cleanup removes listeners, timers and DOM and ends typing", () => {
    const { el, model, cleanup } = mount(widget, BASE);
    const input = el.querySelector(".rtw-chat-input");
    type(input, "hey");
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    expect(model.sent.at(-1)).toEqual({ action: "typing", typing: false });
    // DOM listeners are gone too: events on the detached input do nothing.
    const before = model.sent.length;
    input.value = "again";
    press(input, "Enter");
    input.dispatchEvent(new Event("input"));
    expect(model.sent.length).toBe(before);
  });
});
