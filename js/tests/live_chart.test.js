import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { computeView, drawChart, formatTick, lowerBound } from "../src/live_chart.js";
import { mount } from "./fake_model.js";

/** Little-endian float64 bytes as ipywidgets delivers a `Bytes` trait: a DataView. */
function f64(values) {
  return new DataView(new Float64Array(values).buffer);
}

/** A CanvasRenderingContext2D stand-in that records path calls. */
function recordingContext() {
  const calls = [];
  const rec =
    (name) =>
    (...args) =>
      calls.push([name, ...args]);
  return {
    calls,
    clearRect: rec("clearRect"),
    beginPath: rec("beginPath"),
    moveTo: rec("moveTo"),
    lineTo: rec("lineTo"),
    stroke: rec("stroke"),
    fillText: rec("fillText"),
    rect: rec("rect"),
    clip: rec("clip"),
    save: rec("save"),
    restore: rec("restore"),
    setTransform: rec("setTransform"),
    count(name) {
      return calls.filter((c) => c[0] === name).length;
    },
  };
}

const BASE = {
  title: "latency",
  x: f64([1000, 2000, 3000, 4000]),
  y: f64([1, 3, 2, 5]),
  window_ms: 10000,
  pressure: "none",
  stats: { received: 10, delivered: 8, merged: 1, dropped: 1, rate_in: 12.5, rate_out: 10 },
  y_min: NaN,
  y_max: NaN,
};

describe("live_chart pure parts", () => {
  it("lowerBound", () => {
    const xs = new Float64Array([1, 2, 2, 5]);
    expect(lowerBound(xs, 0)).toBe(0);
    expect(lowerBound(xs, 2)).toBe(1);
    expect(lowerBound(xs, 3)).toBe(3);
    expect(lowerBound(xs, 9)).toBe(4);
  });

  it("formatTick", () => {
    expect(formatTick(1.2e-6, 2)).toBe("0"); // float noise around zero
    expect(formatTick(12.3456, 10)).toBe("12.35");
    expect(formatTick(1234.5, 10)).toBe("1235");
    expect(formatTick(2.5e7, 1e7)).toBe("2.5e+7");
  });

  it("computeView windows x and auto-scales y over the visible points", () => {
    const xs = new Float64Array([0, 1000, 2000, 3000]);
    const ys = new Float64Array([100, 1, 3, 2]);
    const v = computeView(xs, ys, 2000, NaN, NaN);
    expect(v).toMatchObject({ start: 1, n: 4, x0: 1000, x1: 3000, y0: 1, y1: 3 });
    expect(computeView(xs, ys, 0, 0, 10)).toMatchObject({ start: 0, x0: 0, y0: 0, y1: 10 });
    const flat = computeView(new Float64Array([5]), new Float64Array([7]), 0, NaN, NaN);
    expect(flat.y1).toBeGreaterThan(flat.y0);
    expect(computeView(new Float64Array(0), new Float64Array(0), 1000, NaN, NaN)).toBeNull();
  });

  it("drawChart draws every point when few and decimates to the pixel width when many", () => {
    const colors = { line: "blue", grid: "gray", text: "black" };
    const few = recordingContext();
    const xs = new Float64Array([0, 1, 2, 3, 4]);
    const ys = new Float64Array([0, 1, NaN, 3, 4]);
    drawChart(few, 400, 200, xs, ys, computeView(xs, ys, 0, NaN, NaN), colors);
    // 3 grid lines (moveTo+lineTo) + the series: a NaN breaks it into two runs.
    expect(few.count("moveTo")).toBe(3 + 2);
    expect(few.count("lineTo")).toBe(3 + 2);

    const n = 100_000;
    const bx = new Float64Array(n);
    const by = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      bx[i] = i;
      by[i] = Math.sin(i / 50);
    }
    const many = recordingContext();
    drawChart(many, 400, 200, bx, by, computeView(bx, by, 0, NaN, NaN), colors);
    const plotW = 400 - 48 - 10;
    expect(many.count("lineTo")).toBeLessThanOrEqual(3 + 2 * (plotW + 1));
    expect(many.count("lineTo")).toBeGreaterThan(plotW);
  });
});

describe("live_chart widget", () => {
  let ctx;
  let getContext;

  beforeEach(() => {
    vi.useFakeTimers();
    ctx = recordingContext();
    getContext = vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(() => ctx);
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it("renders title, pressure badge and stats line", () => {
    const { el, model } = mount(widget, BASE);
    const root = el.querySelector(".rtw-widget.rtw-live_chart");
    expect(root.querySelector(".rtw-lc-title").textContent).toBe("latency");
    expect(root.querySelector("canvas")).not.toBeNull();
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe(
      "received 10 · merged 1 · dropped 1 · in 12.5/s · out 10/s",
    );
    const badge = root.querySelector(".rtw-pressure");
    expect(badge.classList.contains("rtw-pressure-none")).toBe(true);
    model.set("pressure", "high");
    expect(badge.classList.contains("rtw-pressure-high")).toBe(true);
    expect(badge.classList.contains("rtw-pressure-none")).toBe(false);
    expect(root.dataset.state).toBe("high");
    model.set("stats", { received: 20, merged: 2, dropped: 3, rate_in: 150.4, rate_out: 99.95 });
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe(
      "received 20 · merged 2 · dropped 3 · in 150/s · out 100.0/s",
    );
  });

  it("decodes the Float64 DataViews and draws once per animation frame however many updates", () => {
    const { el, model } = mount(widget, BASE);
    const canvas = el.querySelector("canvas");
    expect(getContext).not.toHaveBeenCalled(); // nothing drawn synchronously
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(1);
    expect(canvas.closest(".rtw-live_chart").dataset.points).toBe("4");
    // The series: 1 moveTo + 3 lineTo after the 3 grid lines.
    expect(ctx.count("lineTo")).toBe(3 + 3);

    for (let i = 0; i < 50; i++) {
      model.update({ x: f64([1000, 2000, 3000, 4000, 5000 + i]), y: f64([1, 3, 2, 5, i]) });
    }
    model.set("window_ms", 2500);
    expect(getContext).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(1); // exactly one frame requested
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(2);
    expect(canvas.closest(".rtw-live_chart").dataset.points).toBe("5");
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(2); // no change, no draw
  });

  it("tolerates a missing 2D context", () => {
    getContext.mockImplementation(() => null);
    const { el } = mount(widget, BASE);
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("4");
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
  });

  it("reports a malformed buffer instead of drawing garbage", () => {
    const { el, model } = mount(widget, BASE);
    vi.advanceTimersToNextFrame();
    model.set("y", new DataView(new ArrayBuffer(12)));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("y: byte length 12 is not a multiple of 8 (float64)");
    model.set("y", f64([1, 2, 3, 4]));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
  });

  it("redraws on resize and disconnects its ResizeObserver on cleanup", () => {
    const observers = [];
    vi.stubGlobal(
      "ResizeObserver",
      class {
        constructor(cb) {
          this.cb = cb;
          this.targets = [];
          this.disconnected = false;
          observers.push(this);
        }
        observe(t) {
          this.targets.push(t);
        }
        disconnect() {
          this.disconnected = true;
        }
      },
    );
    try {
      const { el, cleanup } = mount(widget, BASE);
      vi.advanceTimersToNextFrame();
      expect(observers).toHaveLength(1);
      expect(observers[0].targets[0]).toBe(el.querySelector("canvas"));
      observers[0].cb([]);
      vi.advanceTimersToNextFrame();
      expect(getContext).toHaveBeenCalledTimes(2);
      cleanup();
      expect(observers[0].disconnected).toBe(true);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("cleanup cancels the pending frame and removes listeners and DOM", () => {
    const { el, model, cleanup } = mount(widget, BASE);
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(vi.getTimerCount()).toBe(0);
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    vi.advanceTimersToNextFrame();
    expect(getContext).not.toHaveBeenCalled();
  });
});
