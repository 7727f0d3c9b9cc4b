import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget from "../src/connection_status.js";
import { mount } from "./fake_model.js";

const BASE = {
  state: "connected",
  url: "ws://127.0.0.1:8765/ws",
  user_id: "alice",
  client_id: "c-1",
  attempt: 0,
  max_attempts: 10,
  retry_in_ms: 0,
  last_error: "",
  rtt_ms: 12.4,
};

describe("connection_status", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date("2026-01-01T00:00:00Z"));
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("renders initial traits", () => {
    const { el } = mount(widget, BASE);
    const root = el.querySelector(".rtw-widget.rtw-connection_status");
    expect(root.dataset.state).toBe("connected");
    const badge = root.querySelector(".rtw-badge");
    expect(badge.textContent).toBe("connected");
    expect(badge.classList.contains("rtw-tone-success")).toBe(true);
    expect(root.querySelector(".rtw-cs-user").textContent).toBe("alice");
    expect(root.querySelector(".rtw-cs-rtt").textContent).toBe("12 ms");
    expect(root.querySelector(".rtw-cs-reconnect").disabled).toBe(true);
    expect(root.querySelector(".rtw-cs-disconnect").disabled).toBe(false);
    expect(document.head.querySelectorAll('style[data-rtw="base"]').length).toBe(1);
  });

  it("updates on change events and colours the badge by state", () => {
    const { el, model } = mount(widget, BASE);
    model.update({ state: "failed", last_error: "auth refused", rtt_ms: -1 });
    const root = el.querySelector(".rtw-connection_status");
    expect(root.dataset.state).toBe("failed");
    expect(root.querySelector(".rtw-badge").classList.contains("rtw-tone-error")).toBe(true);
    expect(root.querySelector(".rtw-badge").classList.contains("rtw-tone-success")).toBe(false);
    expect(root.querySelector(".rtw-cs-error").textContent).toBe("auth refused");
    expect(root.querySelector(".rtw-cs-rtt").textContent).toBe("–");
    expect(root.querySelector(".rtw-cs-reconnect").disabled).toBe(false);
    expect(root.querySelector(".rtw-cs-disconnect").disabled).toBe(true);
    model.set("state", "connecting");
    expect(root.querySelector(".rtw-badge").classList.contains("rtw-tone-warn")).toBe(true);
  });

  it("sends reconnect and disconnect intents", () => {
    const { el, model } = mount(widget, BASE);
    el.querySelector(".rtw-cs-disconnect").click();
    expect(model.sent).toEqual([{ action: "disconnect" }]);
    model.set("state", "disconnected");
    el.querySelector(".rtw-cs-reconnect").click();
    expect(model.sent).toEqual([{ action: "disconnect" }, { action: "reconnect" }]);
  });

  it("counts down retry_in_ms, from its arrival, on the browser's clock", () => {
    const { el, model } = mount(widget, BASE);
    const retry = el.querySelector(".rtw-cs-retry");
    expect(retry.textContent).toBe("");
    // The kernel sends a delay, not an instant of its clock: what this browser's clock says
    // (here: a year later than the kernel's) does not matter.
    vi.setSystemTime(new Date("2027-01-01T00:00:00Z"));
    model.update({ state: "reconnecting", attempt: 2, retry_in_ms: 3000 });
    expect(retry.textContent).toBe("retry in 3 s");
    expect(el.querySelector(".rtw-cs-attempt").textContent).toBe("attempt 2/10");
    vi.advanceTimersByTime(1000);
    expect(retry.textContent).toBe("retry in 2 s");
    vi.advanceTimersByTime(1000);
    expect(retry.textContent).toBe("retry in 1 s");
    vi.advanceTimersByTime(1000);
    expect(retry.textContent).toBe("retrying…");
    expect(vi.getTimerCount()).toBe(0);
    // A new delay restarts the countdown; connecting stops it and leaves no timer.
    model.set("retry_in_ms", 1500);
    expect(retry.textContent).toBe("retry in 2 s");
    vi.advanceTimersByTime(500);
    expect(retry.textContent).toBe("retry in 1 s");
    model.set("state", "connected");
    expect(retry.textContent).toBe("");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("cleanup removes listeners, timers and DOM", () => {
    const { el, model, cleanup } = mount(widget, { ...BASE, state: "reconnecting", retry_in_ms: 5000 });
    expect(model.listenerCount()).toBeGreaterThan(0);
    expect(vi.getTimerCount()).toBe(1);
    const reconnect = el.querySelector(".rtw-cs-reconnect");
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    reconnect.click();
    expect(model.sent).toEqual([]);
  });
});
