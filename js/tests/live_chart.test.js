import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { ChartSeries, computeView, lossText, lowerBound, PRESSURE_TEXT, statsText } from "../src/live_chart.js";
import { installCanvas } from "./canvas_stub.js";
import { mount } from "./fake_model.js";

/** Little-endian float64 bytes as ipywidgets delivers a `Bytes` trait: a DataView. */
function f64(values) {
  return new DataView(new Float64Array(values).buffer);
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

  // formatTick's cases (float noise near zero shows as 0) are the tick-label test of
  // uplot_chart.test.js now: uPlot draws the axes.
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
  // drawChart's cases (a NaN breaks the line; many points draw O(width) segments) are in
  // uplot_chart.test.js: uPlot draws the line.

  it("lossText says what was lost, why, what to change, and whether it is happening now", () => {
    expect(lossText({ received: 100, merged: 0, dropped: 0, invalid: 0 })).toBe("");
    const before = { received: 20000, dropped: 8000, merged: 0, invalid: 0 };
    const after = { received: 20100, dropped: 8589, merged: 0, invalid: 0 };
    expect(lossText(after, before)).toBe(
      "dropped 8589 of 20100, now (buffer full: raise max_buffer_size or lower the rate)",
    );
    expect(lossText(after, after)).toBe("dropped 8589 of 20100 (buffer full: raise max_buffer_size or lower the rate)");
    expect(lossText({ received: 5, merged: 2, invalid: 1 }, {})).toBe(
      "merged 2 (buffer full: a newer sample with the same key replaced one; raise max_buffer_size to keep all)" +
        " · invalid 1 (not a finite number)",
    );
  });

  it("statsText: received and the rates in and out of the buffer", () => {
    expect(statsText({ received: 10, rate_in: 12.5, rate_out: 10 })).toBe("received 10 · in 12.5/s · out 10/s");
    expect(statsText({})).toBe("received – · in –/s · out –/s");
    expect(PRESSURE_TEXT).toEqual({ none: "keeping up", moderate: "buffer filling", high: "buffer nearly full" });
  });
});

describe("live_chart widget", () => {
  let ctx;
  let getContext;

  beforeEach(() => {
    vi.useFakeTimers();
    ({ ctx, getContext } = installCanvas());
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
    document.body.replaceChildren();
  });

  const chartRoot = (el) => el.querySelector(".rtw-live_chart");
  const draws = (el) => Number(chartRoot(el).dataset.draws ?? 0);
  /** The first frame loads uPlot (a dynamic import); the next one draws. */
  async function firstDraw() {
    vi.advanceTimersToNextFrame();
    await vi.dynamicImportSettled();
    vi.advanceTimersToNextFrame();
  }
  const legendValues = (el) => [...el.querySelectorAll(".u-legend .u-series .u-value")].map((v) => v.textContent);

  it("asks for the window on render and draws only once it arrives", async () => {
    const { el, model } = mount(widget, BASE);
    expect(asked(model)).toEqual([{ action: "window" }]);
    await firstDraw();
    expect(chartRoot(el).dataset.points).toBe("0");
    expect(draws(el)).toBe(0);
    model.emit("msg:custom", ...append(1, 0, [1], [1])); // before any window: ignored
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("0");
    expect(draws(el)).toBe(0);
    model.emit("msg:custom", ...window_(2, [1, 2, 3], [1, 2, 3], { tail: [4, 4] }));
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("4");
    expect(draws(el)).toBe(1);
  });

  it("a seq gap asks for a new window (at most once a second) and ignores appends until it comes", () => {
    const { el, model } = mountWithData();
    vi.advanceTimersByTime(5000);
    model.sent.length = 0;
    model.emit("msg:custom", ...append(3, 0, [5000], [9])); // seq 2 lost
    model.emit("msg:custom", ...append(4, 0, [6000], [9]));
    expect(asked(model)).toEqual([{ action: "window" }]);
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("4");
    vi.advanceTimersByTime(1000);
    model.emit("msg:custom", ...append(5, 0, [7000], [9])); // the answer was lost too: ask again
    expect(asked(model)).toEqual([{ action: "window" }, { action: "window" }]);
    model.emit("msg:custom", ...window_(6, [1000, 7000], [1, 9]));
    model.emit("msg:custom", ...append(7, 0, [8000], [9]));
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("3");
    expect(asked(model)).toHaveLength(2);
  });

  it("renders title, the buffer's state now, the stats line and (only once something was lost) the loss line", () => {
    const { el, model } = mount(widget, BASE);
    const root = chartRoot(el);
    const loss = root.querySelector(".rtw-lc-loss");
    model.emit("msg:custom", ...window_(1, [1000], [1], { stats: { received: 10, merged: 0, dropped: 0, rate_in: 12.5, rate_out: 10 } }));
    expect(root.querySelector(".rtw-lc-title").textContent).toBe("latency");
    expect(root.querySelector(".rtw-lc-plot")).not.toBeNull();
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe("received 10 · in 12.5/s · out 10/s");
    expect(loss.textContent).toBe(""); // nothing lost: no loss line (hidden by :empty)
    expect(root.dataset.loss).toBe("none");
    const badge = root.querySelector(".rtw-pressure");
    expect(badge.textContent).toBe("keeping up");
    expect(badge.classList.contains("rtw-pressure-none")).toBe(true);
    model.emit("msg:custom", ...append(2, 0, [], [], { pressure: "high", stats: STATS }));
    expect(badge.classList.contains("rtw-pressure-high")).toBe(true);
    expect(badge.classList.contains("rtw-pressure-none")).toBe(false);
    expect(badge.textContent).toBe("buffer nearly full");
    expect(root.dataset.state).toBe("high");
    // Samples were merged and dropped since the last stats: it is happening now.
    expect(loss.textContent).toBe(
      "dropped 1 of 10, now (buffer full: raise max_buffer_size or lower the rate) · merged 1, now " +
        "(buffer full: a newer sample with the same key replaced one; raise max_buffer_size to keep all)",
    );
    expect(root.dataset.loss).toBe("now");
    const stats = { received: 20, merged: 2, dropped: 3, rate_in: 150.4, rate_out: 99.95 };
    model.emit("msg:custom", ...append(3, 0, [], [], { pressure: "none", stats }));
    expect(root.querySelector(".rtw-lc-stats").textContent).toBe("received 20 · in 150/s · out 100.0/s");
    expect(badge.textContent).toBe("keeping up");
    model.emit("msg:custom", ...append(4, 0, [], [], { stats }));
    // The buffer keeps up again and nothing more was lost: the counts stay, told as the past.
    expect(loss.textContent).toBe(
      "dropped 3 of 20 (buffer full: raise max_buffer_size or lower the rate) · merged 2 " +
        "(buffer full: a newer sample with the same key replaced one; raise max_buffer_size to keep all)",
    );
    expect(root.dataset.loss).toBe("earlier");
  });

  it("decodes the Float64 DataViews and draws once per animation frame however many updates", async () => {
    const { el, model } = mountWithData();
    expect(ctx.count("clearRect")).toBe(0); // nothing drawn synchronously
    await firstDraw();
    expect(draws(el)).toBe(1);
    expect(chartRoot(el).dataset.points).toBe("4");
    expect(legendValues(el)[1]).toBe("5"); // the newest of the decoded values
    const cleared = ctx.count("clearRect");
    expect(cleared).toBeGreaterThan(0);

    for (let i = 0; i < 50; i++) {
      model.emit("msg:custom", ...append(2 + i, 0, [], [], { tail: [5000 + i, i] }));
    }
    model.set("window_ms", 2500);
    expect(draws(el)).toBe(1);
    expect(vi.getTimerCount()).toBe(1 + METER_TIMERS); // exactly one draw frame requested
    vi.advanceTimersToNextFrame();
    expect(draws(el)).toBe(2);
    expect(ctx.count("clearRect")).toBe(cleared + 1); // one redraw of the canvas
    expect(chartRoot(el).dataset.points).toBe("5");
    expect(legendValues(el)[1]).toBe("49");
    expect(vi.getTimerCount()).toBe(METER_TIMERS); // no draw pending
    vi.advanceTimersToNextFrame();
    expect(draws(el)).toBe(2); // no change, no draw
  });

  it("the legend names the series after the title and follows it", async () => {
    const { el, model } = mountWithData();
    await firstDraw();
    expect(el.querySelector(".u-legend .u-series:nth-child(2) .u-label").textContent).toBe("latency");
    model.set("title", "temp");
    expect(el.querySelector(".u-legend .u-series:nth-child(2) .u-label").textContent).toBe("temp");
    expect(chartRoot(el).querySelector(".rtw-lc-plot").getAttribute("aria-label")).toBe("Live chart: temp");
    expect(document.head.querySelector('style[data-rtw="uplot"]')).not.toBeNull();
  });

  it("dragging over the plot zooms and pauses; Live (or a double-click) resumes with the newest data", async () => {
    const { el, model } = mountWithData();
    await firstDraw();
    const root = chartRoot(el);
    const live = root.querySelector(".rtw-lc-live");
    expect(root.dataset.live).toBe("true");
    expect(live.disabled).toBe(true);
    expect(live.getAttribute("aria-pressed")).toBe("true");
    const over = root.querySelector(".u-over");
    over.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, button: 0, clientX: 100, clientY: 50 }));
    over.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 300, clientY: 60 }));
    document.dispatchEvent(new MouseEvent("mouseup", { bubbles: true, button: 0, clientX: 300, clientY: 60 }));
    expect(root.dataset.live).toBe("false");
    expect(live.disabled).toBe(false);
    expect(live.getAttribute("aria-pressed")).toBe("false");
    expect(root.querySelector(".rtw-lc-paused").textContent).toMatch(/paused/);

    // Paused: the series follows the kernel, the plot keeps what it showed.
    over.dispatchEvent(new MouseEvent("mouseleave", { bubbles: false }));
    model.emit("msg:custom", ...append(2, 0, [5000], [7]));
    vi.advanceTimersToNextFrame();
    expect(root.dataset.points).toBe("5");
    expect(draws(el)).toBe(1);
    expect(legendValues(el)[1]).toBe("5");

    live.click();
    expect(root.dataset.live).toBe("true");
    expect(root.querySelector(".rtw-lc-paused").textContent).toBe("");
    vi.advanceTimersToNextFrame();
    expect(draws(el)).toBe(2);
    expect(legendValues(el)[1]).toBe("7");

    over.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, button: 0, clientX: 50, clientY: 50 }));
    over.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 200, clientY: 60 }));
    document.dispatchEvent(new MouseEvent("mouseup", { bubbles: true, button: 0, clientX: 200, clientY: 60 }));
    expect(root.dataset.live).toBe("false");
    over.dispatchEvent(new MouseEvent("dblclick", { bubbles: true, button: 0 }));
    expect(root.dataset.live).toBe("true");
  });

  it("tolerates a missing 2D context", () => {
    getContext.mockImplementation(() => null);
    const { el } = mountWithData();
    vi.advanceTimersToNextFrame();
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("4");
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
    expect(el.querySelector(".uplot")).toBeNull(); // no plot, the rest of the view works
  });

  it("reports a malformed buffer instead of drawing garbage, and asks for a window", async () => {
    const { el, model } = mountWithData();
    await firstDraw();
    vi.advanceTimersByTime(5000);
    model.emit("msg:custom", { type: "append", seq: 2, drop: 0, tail: null }, [f64([5]), new DataView(new ArrayBuffer(12))]);
    expect(el.querySelector(".rtw-lc-error").textContent).toBe(
      "bad chart data from the kernel: y: byte length 12 is not a multiple of 8 (float64)",
    );
    expect(asked(model).at(-1)).toEqual({ action: "window" });
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("4"); // the last good series
    model.emit("msg:custom", ...window_(3, [1, 2], [1, 2]));
    vi.advanceTimersToNextFrame();
    expect(el.querySelector(".rtw-lc-error").textContent).toBe("");
    expect(chartRoot(el).dataset.points).toBe("2");
  });

  it("redraws on resize and disconnects its ResizeObserver on cleanup", async () => {
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
    const { el, cleanup } = mountWithData();
    await firstDraw();
    expect(observers).toHaveLength(1);
    const plot = el.querySelector(".rtw-lc-plot");
    expect(observers[0].targets[0]).toBe(plot);
    observers[0].cb([{ target: plot, contentRect: { width: 800, height: 220 } }]);
    vi.advanceTimersToNextFrame();
    expect(draws(el)).toBe(2);
    expect(el.querySelector(".u-wrap").style.width).toBe("800px"); // the plot took the new width
    cleanup();
    expect(observers[0].disconnected).toBe(true);
  });

  it("a chart scrolled out of view does not draw, and catches up when it is back", async () => {
    const observers = [];
    vi.stubGlobal(
      "IntersectionObserver",
      class {
        constructor(cb) {
          this.cb = cb;
          this.disconnected = false;
          observers.push(this);
        }
        observe(t) {
          this.target = t;
        }
        disconnect() {
          this.disconnected = true;
        }
      },
    );
    const { el, model, cleanup } = mountWithData();
    await firstDraw();
    expect(draws(el)).toBe(1);
    expect(observers[0].target).toBe(chartRoot(el));
    observers[0].cb([{ isIntersecting: false }]);
    expect(chartRoot(el).dataset.visible).toBe("false");
    model.emit("msg:custom", ...append(2, 0, [5000], [7]));
    vi.advanceTimersToNextFrame();
    expect(chartRoot(el).dataset.points).toBe("5"); // the series follows the kernel ...
    expect(draws(el)).toBe(1); // ... but nothing is drawn out of view
    observers[0].cb([{ isIntersecting: true }]);
    vi.advanceTimersToNextFrame();
    expect(draws(el)).toBe(2);
    expect(legendValues(el)[1]).toBe("7");
    cleanup();
    expect(observers[0].disconnected).toBe(true);
  });

  it("cleanup cancels the pending frame and removes listeners and DOM", async () => {
    const { el, model, cleanup } = mountWithData();
    expect(vi.getTimerCount()).toBe(1 + METER_TIMERS);
    cleanup();
    expect(vi.getTimerCount()).toBe(0); // the frame meter stops with the view too
    expect(model.listenerCount()).toBe(0);
    expect(el.childElementCount).toBe(0);
    vi.advanceTimersToNextFrame();
    await vi.dynamicImportSettled();
    expect(getContext).not.toHaveBeenCalled();
  });

  it("cleanup after the plot was built destroys it", async () => {
    const { el, model, cleanup } = mountWithData();
    await firstDraw();
    expect(el.querySelector(".uplot")).not.toBeNull();
    const plot = el.querySelector(".uplot");
    cleanup();
    expect(plot.isConnected).toBe(false);
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
