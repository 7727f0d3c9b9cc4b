import { afterEach, describe, expect, it, vi } from "vitest";
import widget, { CHARTS, currentRows, errorRows, formatDuration, formatValue, mergeHistory, sparklinePath } from "../src/gateway_monitor.js";
import { installCanvas } from "./canvas_stub.js";
import { mount } from "./fake_model.js";

const HISTORY = {
  t: [1000, 1001, 1002, 1003],
  connections: [1, 2, 2, 4],
  channels: [1, 1, 1, 1],
  subscriptions: [1, 2, 2, 4],
  outbound_bytes: [0, 0, 0, 0],
  publish_rate: [null, 10, 20, 5],
  delivery_rate: [null, 20, 40, 10],
  error_rate: [null, 0, 1, 0],
  slow_close_rate: [null, 0, 0, 0],
};
const CURRENT = {
  connections: 4,
  channels: 1,
  subscriptions: 4,
  outbound_bytes: 0,
  publish_rate: 5,
  delivery_rate: 10,
  error_rate: 0,
  slow_close_rate: 0,
  connections_accepted: 6,
  messages_published: 35,
  messages_delivered: 70,
  errors: 1,
  slow_consumer_closes: 0,
  idle_closes: 0,
  auth_failures: 2,
  frames_dropped_closed: 0,
  uptime: 12.5,
  restarts: 1,
};
const STATE = {
  source: "http://127.0.0.1:8765/metrics",
  status: "ok",
  error: "",
  history: HISTORY,
  current: CURRENT,
  errors_by_code: { rate_limited: { total: 3, rate: 0.5 }, bad_json: { total: 1, rate: null } },
  restarts: 1,
  interval: 1,
  window: 3,
};

const root = (el) => el.querySelector(".rtw-widget.rtw-gateway_monitor");
const chart = (el, series) => el.querySelector(`.rtw-gm-chart[data-series="${series}"]`);

describe("sparklinePath", () => {
  it("spans the window with the newest point at the right edge, 0 at the bottom", () => {
    expect(sparklinePath([0, 1, 2], [0, 5, 10], 2, 100, 30)).toBe("M0.0 30.0 L50.0 15.0 L100.0 0.0");
  });

  it("breaks the line at unknown values and drops points older than the window", () => {
    expect(sparklinePath([0, 1, 2, 3], [4, null, 2, 4], 2, 100, 30)).toBe("M50.0 15.0 L100.0 0.0");
    expect(sparklinePath([0, 1, 2], [1, NaN, 1], 2, 10, 10)).toBe("M0.0 0.0 M10.0 0.0");
  });

  it("draws a flat zero line on the bottom and nothing without data", () => {
    expect(sparklinePath([0, 1], [0, 0], 1, 10, 10)).toBe("M0.0 10.0 L10.0 10.0");
    expect(sparklinePath([], [], 60)).toBe("");
    expect(sparklinePath(undefined, "junk", 60)).toBe("");
  });
});

describe("mergeHistory", () => {
  it("appends the tail points newer than the history, within the window", () => {
    const history = { t: [1, 2, 3], a: [10, 20, 30] };
    const tail = { t: [3, 4, 5], a: [30, 40, 50] }; // 3 was in both (a refresh raced a tail)
    expect(mergeHistory(history, tail, 100)).toEqual({ t: [1, 2, 3, 4, 5], a: [10, 20, 30, 40, 50] });
    // The history sent last may hold points older than the window now.
    expect(mergeHistory(history, tail, 2)).toEqual({ t: [3, 4, 5], a: [30, 40, 50] });
  });

  it("works with either part empty or junk", () => {
    expect(mergeHistory({ t: [1], a: [1] }, {}, 10)).toEqual({ t: [1], a: [1] });
    expect(mergeHistory(undefined, { t: [7], a: [null] }, 10)).toEqual({ t: [7], a: [null] });
    expect(mergeHistory("junk", [1], 10)).toEqual({ t: [] });
  });
});

describe("formatting", () => {
  it("formats values with units and unknowns as a dash", () => {
    expect(formatValue(12.25, "/s")).toBe("12.3/s");
    expect(formatValue(1024, "B")).toBe("1024 B");
    expect(formatValue(3)).toBe("3");
    expect(formatValue(null, "/s")).toBe("–");
    expect(formatValue("7")).toBe("–");
  });

  it("formats an uptime as a duration with its two largest units", () => {
    expect(formatDuration(0)).toBe("0 s");
    expect(formatDuration(59.5)).toBe("59.5 s");
    expect(formatDuration(245.9)).toBe("4 min 05 s");
    expect(formatDuration(3 * 3600 + 7 * 60 + 59)).toBe("3 h 07 min");
    expect(formatDuration(2 * 86400 + 5 * 3600 + 120)).toBe("2 d 05 h");
    expect(formatDuration(-1)).toBe("–");
    expect(formatDuration(null)).toBe("–");
    expect(formatValue(90061, "duration")).toBe("1 d 01 h");
  });

  it("builds the current-values and error rows", () => {
    const rows = Object.fromEntries(currentRows(CURRENT).map(([k, , text]) => [k, text]));
    expect(rows.connections).toBe("4");
    expect(rows.publish_rate).toBe("5/s");
    expect(rows.uptime).toBe("12.5 s");
    expect(rows.restarts).toBe("1");
    expect(currentRows(undefined).every(([, , text]) => text === "–")).toBe(true);
    expect(errorRows(STATE.errors_by_code)).toEqual([
      ["bad_json", "1", "–"],
      ["rate_limited", "3", "0.5/s"],
    ]);
    expect(errorRows(null)).toEqual([]);
  });
});

describe("gateway monitor view", () => {
  afterEach(() => {
    document.body.replaceChildren();
  });

  it("renders a chart per series, the current values and errors by code", () => {
    const { el } = mount(widget, STATE);
    const r = root(el);
    expect(r.dataset.status).toBe("ok");
    expect(r.dataset.points).toBe("4");
    expect(r.querySelector(".rtw-gm-status").textContent).toBe("ok");
    expect(r.querySelector(".rtw-gm-status").classList.contains("rtw-tone-success")).toBe(true);
    expect(r.querySelector(".rtw-gm-source").textContent).toBe("http://127.0.0.1:8765/metrics");
    expect(r.querySelector(".rtw-gm-error").hidden).toBe(true);
    expect([...r.querySelectorAll(".rtw-gm-chart")].map((c) => c.dataset.series)).toEqual(CHARTS.map(([k]) => k));
    expect(chart(el, "publish_rate").querySelector(".rtw-gm-chart-value").textContent).toBe("5/s");
    // window 3 s over t 1000..1003: the first publish_rate point is null, the rest span the chart.
    expect(chart(el, "publish_rate").querySelector("path").getAttribute("d")).toBe("M33.3 15.0 L66.7 0.0 L100.0 22.5");
    expect(chart(el, "connections").querySelector("path").getAttribute("d")).toBe("M0.0 22.5 L33.3 15.0 L66.7 15.0 L100.0 0.0");
    expect(r.querySelector('.rtw-gm-current tr[data-key="auth_failures"] td').textContent).toBe("2");
    const codes = [...r.querySelectorAll(".rtw-gm-errors tbody tr")].map((tr) => [...tr.children].map((td) => td.textContent));
    expect(codes).toEqual([
      ["bad_json", "1", "–"],
      ["rate_limited", "3", "0.5/s"],
    ]);
    expect(r.querySelector(".rtw-gm-no-errors").hidden).toBe(true);
  });

  it("shows an unreachable gateway's error and clears it when it answers again", () => {
    const { el, model } = mount(widget, { ...STATE, errors_by_code: {} });
    expect(root(el).querySelector(".rtw-gm-errors").hidden).toBe(true);
    expect(root(el).querySelector(".rtw-gm-no-errors").hidden).toBe(false);
    model.update({ status: "error", error: "http://127.0.0.1:8765/metrics: unreachable (refused); retrying every 1 s" });
    const banner = root(el).querySelector(".rtw-gm-error");
    expect(banner.hidden).toBe(false);
    expect(banner.getAttribute("role")).toBe("alert");
    expect(banner.textContent).toContain("unreachable");
    expect(root(el).dataset.status).toBe("error");
    expect(root(el).querySelector(".rtw-gm-status").classList.contains("rtw-tone-error")).toBe(true);
    // The charts keep the history through the outage.
    expect(chart(el, "connections").querySelector("path").getAttribute("d")).not.toBe(null);
    model.update({ status: "ok", error: "" });
    expect(banner.hidden).toBe(true);
  });

  it("draws the tail after the history", () => {
    const { el, model } = mount(widget, { ...STATE, tail: { t: [1004], connections: [8] } });
    expect(root(el).dataset.points).toBe("4"); // window 3 s: 1001..1004
    expect(chart(el, "connections").querySelector("path").getAttribute("d")).toBe("M0.0 22.5 L33.3 22.5 L66.7 15.0 L100.0 0.0");
    model.update({ tail: { t: [1004, 1005], connections: [8, 4] } });
    expect(chart(el, "connections").querySelector("path").getAttribute("d")).toBe("M0.0 22.5 L33.3 15.0 L66.7 0.0 L100.0 15.0");
  });

  it("redraws on a new sample and tolerates junk traits", () => {
    const { el, model } = mount(widget, STATE);
    model.update({ history: { t: [5, 6], connections: [0, 3] }, current: { connections: 3 } });
    expect(root(el).dataset.points).toBe("2");
    expect(chart(el, "connections").querySelector("path").getAttribute("d")).toBe("M66.7 30.0 L100.0 0.0");
    expect(chart(el, "publish_rate").querySelector("path").hasAttribute("d")).toBe(false);
    expect(chart(el, "connections").querySelector(".rtw-gm-chart-value").textContent).toBe("3");
    model.update({ history: "junk", current: 7, errors_by_code: [1], status: 3 });
    expect(root(el).dataset.points).toBe("0");
    expect(root(el).querySelector(".rtw-gm-status").textContent).toBe("3");
  });

  it("starts empty and leaves no listeners behind", () => {
    const { el, model, cleanup } = mount(widget, {});
    expect(root(el).dataset.status).toBe("starting");
    expect(root(el).querySelector(".rtw-gm-status").classList.contains("rtw-tone-warn")).toBe(true);
    expect(root(el).querySelector(".rtw-gm-no-errors").hidden).toBe(true); // nothing known yet
    expect(model.listenerCount()).toBeGreaterThan(0);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".rtw-gateway_monitor")).toBe(null);
  });
});

describe("gateway monitor on uPlot (where a canvas exists)", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    document.body.replaceChildren();
  });

  it("swaps each sparkline for a small uPlot chart, redraws on a sample and destroys them on cleanup", async () => {
    const { ctx } = installCanvas();
    const { el, model, cleanup } = mount(widget, STATE);
    const r = root(el);
    expect(r.dataset.charts).toBe("svg"); // drawn at once, before uPlot is loaded
    await vi.dynamicImportSettled();
    await vi.waitFor(() => expect(r.dataset.charts).toBe("uplot"));
    expect(r.querySelectorAll(".rtw-gm-chart .uplot")).toHaveLength(CHARTS.length);
    expect([...r.querySelectorAll(".rtw-gm-chart svg")].every((svg) => svg.style.display === "none")).toBe(true);
    const strokes = ctx.count("stroke");
    model.update({ history: { ...HISTORY, t: [1001, 1002, 1003, 1004], connections: [2, 2, 4, 5] } });
    await vi.waitFor(() => expect(ctx.count("stroke")).toBeGreaterThan(strokes)); // redrawn
    expect(chart(el, "connections").querySelector(".rtw-gm-chart-value").textContent).toBe("4");
    cleanup();
    expect(el.querySelector(".uplot")).toBe(null);
    expect(model.listenerCount()).toBe(0);
  });

  it("ranges y over 0 to a little above the largest value, with room for a line at 0", async () => {
    installCanvas(); // uPlot reads matchMedia when it is evaluated
    const { sparkRange } = await import("../src/lib/sparkline_uplot.js");
    expect(sparkRange(10)).toEqual([-0.8, 11]);
    expect(sparkRange(0)).toEqual([-0.08, 1.1]);
    expect(sparkRange(null)).toEqual([-0.08, 1.1]);
  });
});
