// The LiveChart's plot on uPlot (js/src/lib/uplot_chart.js), drawn into a recording canvas:
// tick labels, the line's path, the legend, zoom and resume. The real drawing is checked in a
// browser by tests/e2e/test_live_chart.py.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { installCanvas } from "./canvas_stub.js";

let canvas;
let mod;

beforeEach(async () => {
  canvas = installCanvas();
  mod = await import("../src/lib/uplot_chart.js"); // after the stubs: uPlot reads matchMedia when loaded
});
afterEach(() => {
  vi.unstubAllGlobals();
  document.body.replaceChildren();
  document.head.querySelectorAll("style").forEach((s) => s.remove());
});

const T0 = Date.UTC(2026, 11, 2, 7, 0, 0);
const COLORS = { line: "#1976d2", grid: "#ddd", text: "#777" };

/** A chart in a fresh container; `events` records onZoom / onResume calls. */
function makeChart({ yMin = NaN, yMax = NaN, colors = () => COLORS } = {}) {
  const el = document.createElement("div");
  document.body.append(el);
  const events = [];
  const chart = mod.createChart(el, {
    label: () => "temp",
    colors,
    bounds: () => ({ yMin, yMax }),
    height: 200,
    onZoom: () => events.push("zoom"),
    onResume: () => events.push("resume"),
  });
  return { el, chart, events };
}

const series = (xs, ys) => [new Float64Array(xs), new Float64Array(ys)];

describe("formatting and ranges (pure)", () => {
  it("formatValue shows the number without float noise; none or NaN as a dash", () => {
    expect(mod.formatValue(0.1 + 0.2)).toBe("0.3");
    expect(mod.formatValue(21.5)).toBe("21.5");
    expect(mod.formatValue(-1234567.125)).toBe("-1234567.125");
    expect(mod.formatValue(1.5e-9)).toBe("1.5e-9");
    expect(mod.formatValue(NaN)).toBe("—");
    expect(mod.formatValue(null)).toBe("—");
  });

  it("formatTime is the local time to the millisecond", () => {
    const t = new Date(2026, 0, 5, 9, 8, 7, 6).getTime();
    expect(mod.formatTime(t)).toBe("09:08:07.006");
    expect(mod.formatTime(null)).toBe("—");
  });

  it("timeTicks labels local times as precisely as the tick step needs", () => {
    const t = new Date(2026, 0, 5, 9, 8, 7, 250).getTime();
    expect(mod.timeTicks([t], 250)).toEqual(["09:08:07.25"]);
    expect(mod.timeTicks([t - 250, t + 250], 500)).toEqual(["09:08:07.0", "09:08:07.5"]);
    expect(mod.timeTicks([t], 20)).toEqual(["09:08:07.25"]);
    expect(mod.timeTicks([t], 5)).toEqual(["09:08:07.250"]);
    expect(mod.timeTicks([t - 250, t + 750], 1000)).toEqual(["09:08:07", "09:08:08"]);
    expect(mod.timeTicks([t], 300_000)).toEqual(["09:08"]);
    expect(mod.timeTicks([t], 86_400_000)).toEqual(["2026-01-05"]);
  });

  it("yRange keeps fixed bounds, rounds automatic ones outward, and never collapses", () => {
    expect(mod.yRange(3, 7, 0, 10)).toEqual([0, 10]);
    const [lo, hi] = mod.yRange(0.13, 9.71, NaN, NaN);
    expect(lo).toBeLessThanOrEqual(0.13);
    expect(hi).toBeGreaterThanOrEqual(9.71);
    expect(hi - lo).toBeLessThan(1.3 * (9.71 - 0.13)); // padded by a margin, not a decade
    expect(mod.yRange(3, 7, 0, NaN)[0]).toBe(0); // one fixed bound, the other automatic
    expect(mod.yRange(3, 7, 0, NaN)[1]).toBeGreaterThanOrEqual(7);
    const [flo, fhi] = mod.yRange(5, 5, NaN, NaN);
    expect(fhi).toBeGreaterThan(flo);
    expect(flo).toBeLessThan(5);
    expect(mod.yRange(NaN, NaN, NaN, NaN)).toEqual([0, 1]);
  });
});

describe("createChart", () => {
  it("injects uPlot's stylesheet once, and draws round y ticks (0, not float noise) and time x ticks", () => {
    const { chart } = makeChart();
    makeChart();
    expect(document.head.querySelectorAll('style[data-rtw="uplot"]')).toHaveLength(1);
    // Crossing zero by a hair: the old hand-drawn axis labelled this "-8.9e-5".
    const [xs, ys] = series([T0, T0 + 2500, T0 + 5000], [-8.9e-5, 0.5, 1]);
    chart.show(xs, ys, [T0, T0 + 5000]);
    const labels = canvas.ctx.texts();
    expect(labels).toContain("0");
    expect(labels).toContain("0.5");
    expect(labels.some((l) => /e-/.test(l))).toBe(false);
    // A real time axis: several ticks, each a time of day, not "-5 s" / "now".
    const times = labels.filter((l) => /^\d\d:\d\d:\d\d/.test(l));
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(new Set(times).size).toBe(times.length);
    expect(labels).not.toContain("now");
  });

  it("draws every point when few (a NaN breaks the line) and O(width) segments when many", () => {
    const { chart } = makeChart();
    const [xs, ys] = series([T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4], [0, 1, NaN, 3, 4]);
    chart.show(xs, ys, [T0, T0 + 4]);
    const { stroke, clip } = chart.uplot.series[1]._paths;
    expect(stroke.count("lineTo")).toBe(4); // every finite point
    expect(clip.count("rect")).toBe(2); // the line shows in two runs: the NaN is a gap

    const n = 100_000;
    const bx = new Float64Array(n);
    const by = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      bx[i] = T0 + i;
      by[i] = Math.sin(i / 50);
    }
    canvas.paths.length = 0;
    chart.show(bx, by, [T0, T0 + n - 1]);
    const many = chart.uplot.series[1]._paths.stroke;
    const plotWidth = chart.uplot.bbox.width; // device pixels
    expect(many.count("lineTo")).toBeGreaterThan(plotWidth / 2); // the envelope is drawn
    expect(many.count("lineTo")).toBeLessThanOrEqual(4 * (plotWidth + 1)); // min/max per column
  });

  it("draws in the theme's colours, read at each redraw", () => {
    let colors = COLORS;
    const { chart } = makeChart({ colors: () => colors });
    const [xs, ys] = series([T0, T0 + 1000], [1, 2]);
    chart.show(xs, ys, [T0, T0 + 1000]);
    expect(chart.uplot.series[1]._stroke).toBe("#1976d2"); // what the line was drawn with
    expect(chart.uplot.axes[0].grid.stroke(chart.uplot, 0)).toBe("#ddd");
    colors = { line: "#90caf9", grid: "#424242", text: "#bdbdbd" }; // the dark theme
    chart.show(xs, ys, [T0, T0 + 1000]);
    expect(chart.uplot.series[1]._stroke).toBe("#90caf9");
    expect(chart.uplot.axes[1].stroke(chart.uplot, 1)).toBe("#bdbdbd");
  });

  it("the legend names the series and shows the newest values while the cursor is away", () => {
    const { el, chart } = makeChart();
    const [xs, ys] = series([T0, T0 + 1000, T0 + 2000], [1, 2, 21.5]);
    chart.show(xs, ys, [T0, T0 + 2000]);
    const legend = el.querySelector(".u-legend");
    const rows = [...legend.querySelectorAll(".u-series")];
    expect(rows[0].querySelector(".u-value").textContent).toBe(mod.formatTime(T0 + 2000));
    expect(rows[1].querySelector(".u-label").textContent).toBe("temp");
    expect(rows[1].querySelector(".u-value").textContent).toBe("21.5");
    // The shown points are copies: a later change of the caller's arrays does not leak in.
    ys[2] = 99;
    chart.uplot.setLegend({ idx: 2 });
    expect(rows[1].querySelector(".u-value").textContent).toBe("21.5");
    expect(rows[0].querySelector(".u-value").textContent).toBe(mod.formatTime(T0 + 2000));
    chart.setLabel("setpoint");
    expect(rows[1].querySelector(".u-label").textContent).toBe("setpoint");
  });

  it("a finished drag selection reports a zoom; a double-click asks to resume; destroy removes it", () => {
    const { el, chart, events } = makeChart();
    const [xs, ys] = series([T0, T0 + 1000, T0 + 2000], [1, 2, 3]);
    chart.show(xs, ys, [T0, T0 + 2000]);
    chart.uplot.setSelect({ left: 10, width: 0, top: 0, height: 0 }); // a click, not a drag
    expect(events).toEqual([]);
    chart.uplot.setSelect({ left: 10, width: 50, top: 0, height: 100 });
    expect(events).toEqual(["zoom"]);
    el.querySelector(".u-over").dispatchEvent(new MouseEvent("dblclick", { bubbles: true }));
    expect(events).toEqual(["zoom", "resume"]);
    chart.destroy();
    expect(el.querySelector(".uplot")).toBeNull();
  });
});
