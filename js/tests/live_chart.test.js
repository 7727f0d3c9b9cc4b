import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { ChartSeries, computeView, drawChart, formatTick, lowerBound } from "../src/live_chart.js";
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

const BASE = { title: "latency", window_ms: 10000, y_min: NaN, y_max: NaN };
const STATS = { received: 10, delivered: 8, merged: 1, dropped: 1, rate_in: 12.5, rate_out: 10 };

/** A kernel data message: [content, buffers] as anywidget's msg:custom delivers them. */
function window_(seq, xs, ys, extra = {}) {
  return [{ type: "window", seq, tail: null, pressure: "none", stats: STATS, ...extra }, [f64(xs), f64(ys)]];
}
function append(seq, drop, xs, ys, extra = {}) {
  return [{ type: "append", seq, drop, tail: null, pressure: "none", stats: STATS, ...extra }, [f64(xs), f64(ys)]];
}
const arr = (a) => Array.from(a);
/** What the view asked the kernel for, without its frame-rate reports (lib/frame_meter.js). */
const asked = (model) => model.sent.filter((m) => m.action !== "frames");
/** Timers the view's frame meter keeps while it lives: its counting frame and its report timer. */
const METER_TIMERS = 2;

/** Mount the widget and deliver the window the kernel answers its request with. */
function mountWithData(xs = [1000, 2000, 3000, 4000], ys = [1, 3, 2, 5]) {
  const mounted = mount(widget, BASE);
  mounted.model.emit("msg:custom", ...window_(1, xs, ys));
  return mounted;
}

describe("ChartSeries (the view's copy of the kernel series)", () => {
  it("a window replaces, appends drop from the front and add at the end", () => {
    const s = new ChartSeries();
    expect(s.apply(...window_(5, [1, 2, 3], [10, 20, 30]))).toBe("window");
    expect(arr(s.xs())).toEqual([1, 2, 3]);
    expect(s.apply(...append(6, 2, [4, 5], [40, 50]))).toBe("append");
    expect(arr(s.xs())).toEqual([3, 4, 5]);
    expect(arr(s.ys())).toEqual([30, 40, 50]);
    expect(s.apply(...append(7, 0, [], []))).toBe("append");
    expect(arr(s.xs())).toEqual([3, 4, 5]);
    expect(s.apply(...window_(8, [7], [70]))).toBe("window");
    expect(arr(s.ys())).toEqual([70]);
  });

  it("many appends with trims keep exactly the kernel's series (buffer compaction and growth)", () => {
    const s = new ChartSeries();
    s.apply(...window_(1, [], []));
    const expected = [];
    let next = 0;
    for (let seq = 2; seq < 400; seq++) {
      const add = [];
      for (let k = 0; k < (seq % 7) * 3; k++) add.push(next++);
      const drop = Math.max(0, expected.length + add.length - 50);
      expected.push(...add);
      expected.splice(0, drop);
      expect(s.apply(...append(seq, drop, add, add.map((v) => v * 2)))).toBe("append");
    }
    expect(arr(s.xs())).toEqual(expected);
    expect(arr(s.ys())).toEqual(expected.map((v) => v * 2));
  });

  it("the tail follows the kept points and is replaced by each message", () => {
    const s = new ChartSeries();
    s.apply(...window_(1, [0, 2], [0, 20], { tail: [3, 30] }));
    expect(arr(s.xs())).toEqual([0, 2, 3]);
    s.apply(...append(2, 1, [4], [40], { tail: [5, 50] }));
    expect(arr(s.xs())).toEqual([2, 4, 5]);
    expect(arr(s.ys())).toEqual([20, 40, 50]);
    s.apply(...append(3, 0, [6], [60])); // the newest sample is kept: no tail
    expect(arr(s.xs())).toEqual([2, 4, 6]);
    s.apply(...append(4, 0, [], [], { tail: [7, null] })); // a non-finite value arrives as null
    expect(arr(s.ys())).toEqual([20, 40, 60, NaN]);
  });

  it("appends before a window are ignored; a seq gap stops appends until the next window", () => {
    const s = new ChartSeries();
    expect(s.apply(...append(3, 0, [1], [1]))).toBe("ignored");
    expect(s.length).toBe(0);
    s.apply(...window_(4, [1, 2], [1, 2]));
    expect(s.apply(...append(4, 0, [9], [9]))).toBe("ignored"); // old seq
    expect(s.apply(...append(6, 0, [3], [3]))).toBe("gap"); // seq 5 was lost
    expect(s.apply(...append(7, 0, [4], [4]))).toBe("ignored");
    expect(arr(s.xs())).toEqual([1, 2]); // the stale series stays drawn meanwhile
    expect(s.apply(...window_(8, [1, 2, 3, 4], [1, 2, 3, 4]))).toBe("window");
    expect(s.apply(...append(9, 1, [5], [5]))).toBe("append");
    expect(arr(s.xs())).toEqual([2, 3, 4, 5]);
  });

  it("malformed messages are refused with a reason and leave the series as it was", () => {
    const s = new ChartSeries();
    s.apply(...window_(1, [1, 2], [1, 2]));
    const [content, buffers] = append(2, 5, [3], [3]);
    expect(s.apply(content, buffers)).toBe("error");
    expect(s.lastError).toMatch(/drop 5/);
    expect(arr(s.xs())).toEqual([1, 2]);
    s.apply(...window_(3, [1], [1]));
    expect(s.apply({ type: "append", seq: 4, drop: 0, tail: null }, [f64([1])])).toBe("error");
    expect(s.lastError).toMatch(/2 buffers/);
    s.apply(...window_(5, [1], [1]));
    expect(s.apply({ type: "append", seq: 6, drop: 0, tail: null }, [f64([1, 2]), f64([1])])).toBe("error");
    expect(s.lastError).toMatch(/x has 2 points but y has 1/);
    expect(s.apply({ type: "window", seq: 7 }, [new DataView(new ArrayBuffer(12)), f64([])])).toBe("error");
    expect(s.lastError).toMatch(/not a multiple of 8/);
  });
});

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

  it("asks for the window on render and draws only once it arrives", () => {
    const { el, model } = mount(widget, BASE);
    expect(asked(model)).toEqual([{ action: "window" }]);
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("0");
    model.emit("msg:custom", ...append(1, 0, [1], [1])); // before any window: ignored
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("0");
    model.emit("msg:custom", ...window_(2, [1, 2, 3], [1, 2, 3], { tail: [4, 4] }));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("4");
  });

  it("a seq gap asks for a new window (at most once a second) and ignores appends until it comes", () => {
    const { el, model } = mountWithData();
    vi.advanceTimersByTime(5000);
    model.sent.length = 0;
    model.emit("msg:custom", ...append(3, 0, [5000], [9])); // seq 2 lost
    model.emit("msg:custom", ...append(4, 0, [6000], [9]));
    expect(asked(model)).toEqual([{ action: "window" }]);
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("4");
    vi.advanceTimersByTime(1000);
    model.emit("msg:custom", ...append(5, 0, [7000], [9])); // the answer was lost too: ask again
    expect(asked(model)).toEqual([{ action: "window" }, { action: "window" }]);
    model.emit("msg:custom", ...window_(6, [1000, 7000], [1, 9]));
    model.emit("msg:custom", ...append(7, 0, [8000], [9]));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("3");
    expect(asked(model)).toHaveLength(2);
  });

  it("renders title, pressure badge and stats line", () => {
    const { el, model } = mountWithData();
    const root = el.querySelector(".rtw-widget.rtw-live_chart");
    expect(root.querySelector(".rtw-lc-title").textContent).toBe("latency");
    expect(root.querySelector("canvas")).not.toBeNull();
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe(
      "received 10 · merged 1 · dropped 1 · in 12.5/s · out 10/s",
    );
    const badge = root.querySelector(".rtw-pressure");
    expect(badge.classList.contains("rtw-pressure-none")).toBe(true);
    model.emit("msg:custom", ...append(2, 0, [], [], { pressure: "high" }));
    expect(badge.classList.contains("rtw-pressure-high")).toBe(true);
    expect(badge.classList.contains("rtw-pressure-none")).toBe(false);
    expect(root.dataset.state).toBe("high");
    const stats = { received: 20, merged: 2, dropped: 3, rate_in: 150.4, rate_out: 99.95 };
    model.emit("msg:custom", ...append(3, 0, [], [], { pressure: "high", stats }));
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe(
      "received 20 · merged 2 · dropped 3 · in 150/s · out 100.0/s",
    );
  });

  it("decodes the Float64 DataViews and draws once per animation frame however many updates", () => {
    const { el, model } = mountWithData();
    const canvas = el.querySelector("canvas");
    expect(getContext).not.toHaveBeenCalled(); // nothing drawn synchronously
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(1);
    expect(canvas.closest(".rtw-live_chart").dataset.points).toBe("4");
    // The series: 1 moveTo + 3 lineTo after the 3 grid lines.
    expect(ctx.count("lineTo")).toBe(3 + 3);

    for (let i = 0; i < 50; i++) {
      model.emit("msg:custom", ...append(2 + i, 0, [], [], { tail: [5000 + i, i] }));
    }
    model.set("window_ms", 2500);
    expect(getContext).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(1 + METER_TIMERS); // exactly one draw frame requested
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(2);
    expect(canvas.closest(".rtw-live_chart").dataset.points).toBe("5");
    expect(vi.getTimerCount()).toBe(METER_TIMERS); // no draw pending
    vi.advanceTimersToNextFrame();
    expect(getContext).toHaveBeenCalledTimes(2); // no change, no draw
  });

  it("tolerates a missing 2D context", () => {
    getContext.mockImplementation(() => null);
    const { el } = mountWithData();
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("4");
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
  });

  it("reports a malformed buffer instead of drawing garbage, and asks for a window", () => {
    const { el, model } = mountWithData();
    vi.advanceTimersToNextFrame();
    vi.advanceTimersByTime(5000);
    model.emit("msg:custom", { type: "append", seq: 2, drop: 0, tail: null }, [f64([5]), new DataView(new ArrayBuffer(12))]);
    expect(el.querySelector(".rtw-lc-error").textContent).toBe(
      "bad chart data from the kernel: y: byte length 12 is not a multiple of 8 (float64)",
    );
    expect(asked(model).at(-1)).toEqual({ action: "window" });
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("4"); // the last good series
    model.emit("msg:custom", ...window_(3, [1, 2], [1, 2]));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
    expect(el.querySelector(".rtw-live_chart").dataset.points).toBe("2");
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
      const { el, cleanup } = mountWithData();
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
    const { el, model, cleanup } = mountWithData();
    expect(vi.getTimerCount()).toBe(1 + METER_TIMERS);
    cleanup();
    expect(vi.getTimerCount()).toBe(0); // the frame meter stops with the view too
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    vi.advanceTimersToNextFrame();
    expect(getContext).not.toHaveBeenCalled();
  });
});
