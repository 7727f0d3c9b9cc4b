import { afterEach, describe, expect, it } from "vitest";
import widget, { filterEvents, snapshotRows } from "../src/inspector.js";
import { mount } from "./fake_model.js";

const SNAPSHOT = {
  state: "connected",
  url: "ws://127.0.0.1:1/ws",
  client_id: "c-9",
  user_id: "alice",
  rtt_ms: 3.2,
  attempt: 0,
  queue_size: 2,
  pending_acks: 1,
  pressure: "none",
  pending_ops: 0,
  channels: [{ name: "room", subscribed: true, last_event_id: "17", epoch: "e1", members: 3, buffered: 0 }],
  counters: { sent: 5, received: 9, errors: 0, reconnects: 1 },
};

const ev = (ts, dir, type, summary) => ({ ts, dir, type, summary });
const EVENTS = [ev(1, "out", "subscribe", "room"), ev(2, "in", "subscribed", "room @17"), ev(3, "local", "state", "connected")];

const lines = (el) => [...el.querySelectorAll(".rtw-ev")].map((li) => li.querySelector(".rtw-ev-type").textContent);

describe("inspector", () => {
  afterEach(() => {
    document.body.replaceChildren();
  });

  it("renders the snapshot table and channels", () => {
    const { el } = mount(widget, { snapshot: SNAPSHOT, events: EVENTS });
    const root = el.querySelector(".rtw-widget.rtw-inspector");
    expect(root.dataset.state).toBe("connected");
    const cell = (key) => root.querySelector(`.rtw-insp-snapshot tr[data-key="${key}"] td`).textContent;
    expect(cell("user")).toBe("alice");
    expect(cell("rtt")).toBe("3 ms");
    expect(cell("queue")).toBe("2");
    expect(cell("counters")).toBe("sent 5 · received 9 · errors 0 · reconnects 1");
    const chan = root.querySelector('.rtw-insp-channels tr[data-channel="room"]');
    expect([...chan.children].map((td) => td.textContent)).toEqual(["room", "yes", "17", "e1", "3", "0"]);
  });

  it("updates on snapshot change and tolerates missing fields", () => {
    const { el, model } = mount(widget, { snapshot: SNAPSHOT, events: [] });
    model.set("snapshot", { state: "reconnecting" });
    const root = el.querySelector(".rtw-inspector");
    expect(root.dataset.state).toBe("reconnecting");
    expect(root.querySelector('tr[data-key="user"] td').textContent).toBe("–");
    expect(root.querySelector(".rtw-insp-channels").hidden).toBe(true);
    expect(snapshotRows(undefined)[0]).toEqual(["state", "–"]);
  });

  it("logs events oldest first with direction, as text", () => {
    const evil = ev(4, "in", "message", '<img src=x onerror="1">');
    const { el, model } = mount(widget, { snapshot: SNAPSHOT, events: EVENTS });
    expect(lines(el)).toEqual(["subscribe", "subscribed", "state"]);
    const first = el.querySelector(".rtw-ev");
    expect(first.classList.contains("rtw-dir-out")).toBe(true);
    expect(first.querySelector(".rtw-ev-dir").textContent).toBe("→");
    model.set("events", [...EVENTS, evil]);
    expect(lines(el)).toEqual(["subscribe", "subscribed", "state", "message"]);
    expect(el.querySelector(".rtw-ev:last-child .rtw-ev-summary").textContent).toBe('<img src=x onerror="1">');
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector(".rtw-insp-log").getAttribute("role")).toBe("log");
  });

  it("filters by type client-side", () => {
    const { el } = mount(widget, { snapshot: SNAPSHOT, events: EVENTS });
    const filter = el.querySelector(".rtw-insp-filter");
    filter.value = "SUBSCRIB";
    filter.dispatchEvent(new Event("input"));
    expect(lines(el)).toEqual(["subscribe", "subscribed"]);
    filter.value = "";
    filter.dispatchEvent(new Event("input"));
    expect(lines(el)).toHaveLength(3);
    expect(filterEvents([null, ev(1, "in", "A", "")], "a")).toHaveLength(1);
  });

  it("pause freezes the log view; resume shows the latest", () => {
    const { el, model } = mount(widget, { snapshot: SNAPSHOT, events: EVENTS });
    const pause = el.querySelector(".rtw-insp-pause");
    pause.click();
    expect(pause.getAttribute("aria-pressed")).toBe("true");
    expect(pause.textContent).toBe("Resume");
    model.set("events", [...EVENTS, ev(5, "in", "message", "hi")]);
    model.set("events", [...EVENTS, ev(5, "in", "message", "hi"), ev(6, "in", "message", "yo")]);
    expect(lines(el)).toEqual(["subscribe", "subscribed", "state"]);
    expect(el.querySelector(".rtw-insp-status").textContent).toBe("paused · 2 updates held");
    // Filtering works on the frozen view.
    const filter = el.querySelector(".rtw-insp-filter");
    filter.value = "state";
    filter.dispatchEvent(new Event("input"));
    expect(lines(el)).toEqual(["state"]);
    filter.value = "";
    filter.dispatchEvent(new Event("input"));
    expect(lines(el)).toEqual(["subscribe", "subscribed", "state"]);
    pause.click();
    expect(pause.getAttribute("aria-pressed")).toBe("false");
    expect(lines(el)).toEqual(["subscribe", "subscribed", "state", "message", "message"]);
    expect(el.querySelector(".rtw-insp-status").textContent).toBe("");
  });

  it("cleanup removes listeners and DOM", () => {
    const { el, model, cleanup } = mount(widget, { snapshot: SNAPSHOT, events: EVENTS });
    const pause = el.querySelector(".rtw-insp-pause");
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    pause.click();
    expect(pause.textContent).toBe("Pause");
  });
});
