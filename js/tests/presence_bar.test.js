import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { visibleRecent } from "../src/presence_bar.js";
import { colorFor } from "../src/lib/color.js";
import { mount } from "./fake_model.js";

const NOW = new Date("2026-01-01T10:00:00Z").getTime();

function member(userId, name, extra = {}) {
  return { userId, clientId: `${userId}-1`, name, color: "#aa3300", typing: false, joinedAt: NOW, data: {}, devices: 1, ...extra };
}

const BASE = {
  channel: "room",
  me: "alice",
  members: [member("alice", "Alice Smith"), member("bob", "bob", { devices: 2, typing: true, color: "" })],
  recent: [],
};

describe("presence_bar", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW);
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("renders avatars with initials, colour, me ring, typing dot and count", () => {
    const { el } = mount(widget, BASE);
    const root = el.querySelector(".rtw-widget.rtw-presence_bar");
    const avatars = root.querySelectorAll(".rtw-avatar");
    expect(avatars).toHaveLength(2);
    const [a, b] = avatars;
    expect(a.firstChild.textContent).toBe("AS");
    expect(a.classList.contains("rtw-me")).toBe(true);
    expect(a.style.background).toContain("rgb(170, 51, 0)");
    expect(a.title).toBe("Alice Smith (you) · 1 device");
    expect(a.querySelector(".rtw-typing-dot")).toBeNull();
    expect(b.firstChild.textContent).toBe("B");
    expect(b.classList.contains("rtw-me")).toBe(false);
    expect(b.title).toBe("bob · 2 devices");
    expect(b.querySelector(".rtw-typing-dot")).not.toBeNull();
    expect(b.querySelector(".rtw-devices").textContent).toBe("2");
    // Empty colour from Python: the stable hash fallback is used.
    const probe = document.createElement("span");
    probe.style.background = colorFor("bob");
    expect(b.style.background).toBe(probe.style.background);
    expect(root.querySelector(".rtw-pb-count").textContent).toBe("2 here");
  });

  it("updates on member changes and escapes names", () => {
    const { el, model } = mount(widget, BASE);
    model.set("members", [member("eve", '<img src=x onerror="alert(1)">')]);
    const avatars = el.querySelectorAll(".rtw-avatar");
    expect(avatars).toHaveLength(1);
    expect(el.querySelector("img")).toBeNull();
    expect(avatars[0].getAttribute("aria-label")).toBe('<img src=x onerror="alert(1)">');
    expect(el.querySelector(".rtw-pb-count").textContent).toBe("1 here");
  });

  it("shows join/leave lines newest first and fades them after 5 s without leftover timers", () => {
    const { el, model } = mount(widget, BASE);
    const recent = () => [...el.querySelectorAll(".rtw-recent")].map((li) => li.textContent);
    model.set("recent", [
      { kind: "join", userId: "carol", name: "Carol", ts: NOW - 4000 },
      { kind: "leave", userId: "dave", name: "Dave", ts: NOW - 1000 },
      { kind: "join", userId: "old", name: "Old", ts: NOW - 60000 },
    ]);
    expect(recent()).toEqual(["Dave left", "Carol joined"]);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1001);
    expect(recent()).toEqual(["Dave left"]);
    vi.advanceTimersByTime(3000);
    expect(recent()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("visibleRecent keeps at most three, newest first", () => {
    const events = [1, 2, 3, 4].map((i) => ({ kind: "join", userId: `u${i}`, name: `u${i}`, ts: NOW - i * 100 }));
    expect(visibleRecent(events, NOW).map((e) => e.userId)).toEqual(["u1", "u2", "u3"]);
    expect(visibleRecent(events, NOW + 10000)).toEqual([]);
    expect(visibleRecent(null, NOW)).toEqual([]);
  });

  it("cleanup removes listeners, timers and DOM", () => {
    const { el, model, cleanup } = mount(widget, {
      ...BASE,
      recent: [{ kind: "join", userId: "carol", name: "Carol", ts: NOW }],
    });
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
  });
});
