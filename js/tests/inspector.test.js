import { afterEach, describe, expect, it, vi } from "vitest";
import widget, { CHARTS, filterEvents, formatChartValue, newestValue, snapshotRows } from "../src/inspector.js";
import { installCanvas } from "./canvas_stub.js";
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

// The chart columns as the kernel sends them (InspectorSeries.columns()): a rate is null until
// two points exist, an RTT until the first pong.
const HISTORY = {
  t: [1000, 1000.5, 1001],
  rtt_ms: [null, 2.4, 3.6],
  in_rate: [null, 8, 12],
  out_rate: [null, 2, 4],
  queue_size: [0, 0, 3],
};
const TAIL = { t: [1001, 1001.5], rtt_ms: [3.6, 5.2], in_rate: [12, 20], out_rate: [4, 6], queue_size: [3, 1] };
const chartOf = (el, key) => el.querySelector(`.rtw-insp-chart[data-series="${key}"]`);
const header = (el, key) => chartOf(el, key).querySelector(".rtw-insp-chart-value").textContent;

describe("inspector charts", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    document.body.replaceChildren();
  });

  it("formats values and finds the newest known one", () => {
    expect(formatChartValue(3.6, "ms")).toBe("4 ms");
    expect(formatChartValue(12.25, "/s")).toBe("12.3/s");
    expect(formatChartValue(3, "")).toBe("3");
    expect(formatChartValue(null, "/s")).toBe("–");
    expect(newestValue([1, 2, null])).toBe(2);
    expect(newestValue([null, NaN])).toBe(null);
    expect(newestValue("junk")).toBe(null);
  });

  it("draws a sparkline per series from history + tail, the newest value in each header", () => {
    const { el, model } = mount(widget, { snapshot: SNAPSHOT, events: [], history: HISTORY, tail: TAIL, chart_window: 60 });
    const root = el.querySelector(".rtw-inspector");
    expect([...root.querySelectorAll(".rtw-insp-chart")].map((c) => c.dataset.series)).toEqual(CHARTS.map(([k]) => k));
    expect(root.dataset.charts).toBe("svg"); // jsdom: no canvas, the SVG sparklines stay
    expect(root.dataset.points).toBe("4"); // 1001 is in both: merged once
    expect(header(el, "rtt_ms")).toBe("5 ms");
    expect(header(el, "in_rate")).toBe("20/s");
    expect(header(el, "out_rate")).toBe("6/s");
    expect(header(el, "queue_size")).toBe("1");
    const d = chartOf(el, "in_rate").querySelector("path").getAttribute("d");
    expect(d.startsWith("M")).toBe(true);
    expect(d.split("L")).toHaveLength(3); // null at the first point: 3 drawn points, one line
    // A tick's tail moves every chart.
    model.set("tail", { t: [1001, 1001.5, 1002], rtt_ms: [3.6, 5.2, 7.9], in_rate: [12, 20, 30], out_rate: [4, 6, 1], queue_size: [3, 1, 9] });
    expect(root.dataset.points).toBe("5");
    expect(header(el, "in_rate")).toBe("30/s");
    expect(header(el, "queue_size")).toBe("9");
    expect(chartOf(el, "in_rate").querySelector("path").getAttribute("d")).not.toBe(d);
  });

  it("shows dashes and no line before the first points, and tolerates junk", () => {
    const { el, model } = mount(widget, { snapshot: SNAPSHOT, events: [] });
    const root = el.querySelector(".rtw-inspector");
    expect(root.dataset.points).toBe("0");
    for (const [key] of CHARTS) {
      expect(header(el, key)).toBe("–");
      expect(chartOf(el, key).querySelector("path").hasAttribute("d")).toBe(false);
    }
    model.set("history", "junk");
    model.set("tail", { t: [5], rtt_ms: ["x"] });
    expect(root.dataset.points).toBe("1");
    expect(header(el, "rtt_ms")).toBe("–");
  });

  it("swaps the sparklines for small uPlot charts where a canvas exists and destroys them on cleanup", async () => {
    const { ctx } = installCanvas();
    const { el, model, cleanup } = mount(widget, { snapshot: SNAPSHOT, events: [], history: HISTORY, tail: TAIL, chart_window: 60 });
    const root = el.querySelector(".rtw-inspector");
    await vi.dynamicImportSettled();
    await vi.waitFor(() => expect(root.dataset.charts).toBe("uplot"));
    expect(root.querySelectorAll(".rtw-insp-chart .uplot")).toHaveLength(CHARTS.length);
    expect([...root.querySelectorAll(".rtw-insp-chart svg")].every((svg) => svg.style.display === "none")).toBe(true);
    const strokes = ctx.count("stroke");
    model.set("tail", { ...TAIL, t: [1001, 1002], in_rate: [12, 40] });
    await vi.waitFor(() => expect(ctx.count("stroke")).toBeGreaterThan(strokes)); // redrawn
    expect(header(el, "in_rate")).toBe("40/s");
    cleanup();
    expect(el.querySelector(".uplot")).toBe(null);
    expect(model.listenerCount()).toBe(0);
  });
});
