// The series a LiveChart view holds, rebuilt from the kernel's data messages, and the visible
// range of it (pure: no DOM, no uPlot; Node runs it as the oracle of tests/_support/js_chart.py).
//
// Rules of this module:
// * It imports nothing that needs a browser: tests/_support/chart_view.mjs loads it under Node
//   (through js/src/live_chart.js, which re-exports it).
// * A malformed message never changes the series: it is refused with a reason (`lastError`).
import { BufferError, toFloat64 } from "./buffers.js";

const finiteOrNaN = (v) => (typeof v === "number" ? v : NaN); // null (non-finite on the wire) -> NaN

/**
 * The series a view holds, rebuilt from the kernel's data messages (pure; exported for tests).
 * `apply(msg, buffers)` returns "window" | "append" (applied), "ignored" (an append before a
 * window, or an old seq), "gap" (a message was missed: ask for a window) or "error" (malformed:
 * ask for a window; `lastError` says why). `xs()`/`ys()` are the points to draw, tail included.
 */
export class ChartSeries {
  constructor() {
    this.seq = null; // seq of the last message applied; null until a window
    this.hasWindow = false;
    this.lastError = "";
    this._x = new Float64Array(16);
    this._y = new Float64Array(16);
    this._start = 0;
    this._len = 0; // kept points, tail excluded; the tail lives in the slot after them
    this._tail = false;
  }

  get length() {
    return this._len + (this._tail ? 1 : 0);
  }

  xs() {
    return this._x.subarray(this._start, this._start + this.length);
  }

  ys() {
    return this._y.subarray(this._start, this._start + this.length);
  }

  apply(msg, buffers) {
    const type = msg?.type;
    if (type !== "window" && type !== "append") return "ignored";
    if (!Number.isInteger(msg.seq)) return this._fail("no integer seq");
    if (type === "append") {
      if (!this.hasWindow) return "ignored";
      if (msg.seq <= this.seq) return "ignored"; // an old message (answered twice, or replayed)
      if (msg.seq !== this.seq + 1) {
        this.hasWindow = false; // appends no longer fit: wait for the window
        return "gap";
      }
    }
    let x;
    let y;
    try {
      const list = Array.isArray(buffers) ? buffers : [];
      if (list.length !== 2) throw new BufferError(`expected 2 buffers (x, y), got ${list.length}`);
      x = toFloat64(list[0], "x");
      y = toFloat64(list[1], "y");
    } catch (err) {
      if (!(err instanceof BufferError)) throw err;
      return this._fail(err.message);
    }
    if (x.length !== y.length) return this._fail(`x has ${x.length} points but y has ${y.length}`);
    const tail = msg.tail;
    if (tail !== null && tail !== undefined && !(Array.isArray(tail) && tail.length === 2)) {
      return this._fail("tail must be [x, y] or null");
    }
    if (type === "window") {
      this._start = 0;
      this._len = 0;
    } else {
      const drop = msg.drop;
      if (!Number.isInteger(drop) || drop < 0 || drop > this._len) {
        return this._fail(`drop ${drop} is not an integer in 0..${this._len}`);
      }
      this._start += drop;
      this._len -= drop;
    }
    this._push(x, y);
    this._tail = Array.isArray(tail);
    if (this._tail) {
      this._x[this._start + this._len] = finiteOrNaN(tail[0]);
      this._y[this._start + this._len] = finiteOrNaN(tail[1]);
    }
    this.seq = msg.seq;
    this.hasWindow = true;
    this.lastError = "";
    return type;
  }

  _push(x, y) {
    const need = this._len + x.length + 1; // + the tail slot
    if (this._start + need > this._x.length) {
      // Compact to the front, growing when more than half full: amortised O(1) per point.
      let cap = this._x.length;
      while (cap < 2 * need) cap *= 2;
      const nx = cap === this._x.length ? this._x : new Float64Array(cap);
      const ny = cap === this._y.length ? this._y : new Float64Array(cap);
      nx.set(this._x.subarray(this._start, this._start + this._len), 0);
      ny.set(this._y.subarray(this._start, this._start + this._len), 0);
      this._x = nx;
      this._y = ny;
      this._start = 0;
    }
    this._x.set(x, this._start + this._len);
    this._y.set(y, this._start + this._len);
    this._len += x.length;
  }

  _fail(message) {
    this.hasWindow = false;
    this.lastError = `bad chart data from the kernel: ${message}`;
    return "error";
  }
}

/** First index i with xs[i] >= x (xs ascending); xs.length if none. */
export function lowerBound(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The visible x range and y range for the data (pure; exported for tests).
 * x: [last - window, last] when window_ms > 0, else the data's extent.
 * y: y_min / y_max when finite, else the visible data's min / max (padded when flat).
 */
export function computeView(xs, ys, windowMs, yMinTrait, yMaxTrait) {
  const n = Math.min(xs.length, ys.length);
  if (n === 0) return null;
  const x1 = xs[n - 1];
  const x0 = windowMs > 0 ? x1 - windowMs : xs[0];
  const start = windowMs > 0 ? Math.min(lowerBound(xs.subarray(0, n), x0), n - 1) : 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = start; i < n; i++) {
    const v = ys[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let y0 = Number.isFinite(yMinTrait) ? yMinTrait : lo;
  let y1 = Number.isFinite(yMaxTrait) ? yMaxTrait : hi;
  if (!Number.isFinite(y0) || !Number.isFinite(y1)) return null; // only NaN values
  if (y1 <= y0) {
    const pad = Math.abs(y0) * 0.05 || 1;
    y0 -= pad;
    y1 += pad;
  }
  return { start, n, x0, x1: x1 > x0 ? x1 : x0 + 1, y0, y1 };
}
