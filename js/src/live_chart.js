// LiveChart: a <canvas> line chart of a decimated float64 series, redrawn at most once per
// animation frame. The kernel sends the series as custom messages (see rtwidgets/widgets/
// live_chart.py): a "window" (the whole series) and then "append"s (drop k from the front, add
// the new points), each with a seq number, the newest sample as `tail`, pressure and stats.
// A view asks for a window when it renders and when it sees a seq gap. Messages only mark the
// chart dirty; the frame callback draws from zero-copy Float64Array views of the series.
import { BufferError, toFloat64 } from "./lib/buffers.js";
import { h, setText } from "./lib/dom.js";
import { startFrameMeter } from "./lib/frame_meter.js";
import { showIntentErrors } from "./lib/intent_errors.js";
import { createScope } from "./lib/scope.js";
import { BASE_CSS, injectStyle } from "./lib/style.js";
import { formatCount } from "./lib/time.js";
import { dict, num, str } from "./lib/traits.js";

const PRESSURE_LEVELS = ["none", "moderate", "high"];
const DEFAULT_HEIGHT = 220;
const PAD = { left: 48, right: 10, top: 8, bottom: 20 };
// A window request lost on the way (or its answer) is asked again after this long, at the next gap.
const REQUEST_RETRY_MS = 1000;

const CSS = `
.rtw-live_chart { display: flex; flex-direction: column; gap: 4px; }
.rtw-live_chart .rtw-lc-title { font-weight: 600; }
.rtw-live_chart canvas { width: 100%; height: ${DEFAULT_HEIGHT}px; display: block; }
.rtw-live_chart .rtw-lc-stats { font-family: var(--jp-code-font-family, monospace); font-size: 0.85em; }
/* Theme text on the theme surface (readable in light and dark themes); the level is the border. */
.rtw-live_chart .rtw-pressure {
  font-size: 0.85em; padding: 0 6px; border-radius: 999px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb);
}
.rtw-live_chart .rtw-pressure-moderate { border: 2px solid var(--jp-warn-color1, #f57c00); }
.rtw-live_chart .rtw-pressure-high { border: 2px solid var(--jp-error-color1, #d32f2f); }
.rtw-live_chart .rtw-lc-error:empty { display: none; }
`;

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

/** Axis label for `v` on an axis spanning `span` (rounding noise near zero shows as 0). */
export function formatTick(v, span) {
  const a = Math.abs(v) < Math.abs(span) * 1e-6 ? 0 : Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6 || a < 1e-3) return v.toExponential(1);
  return a >= 100 ? String(Math.round(v)) : String(Number(v.toFixed(2)));
}

/**
 * Draw the series into `ctx` (a CanvasRenderingContext2D or a compatible recorder), O(points).
 * When there are more points than pixel columns, each column draws its min and max only.
 */
export function drawChart(ctx, width, height, xs, ys, view, colors) {
  ctx.clearRect(0, 0, width, height);
  const plotW = Math.max(1, width - PAD.left - PAD.right);
  const plotH = Math.max(1, height - PAD.top - PAD.bottom);
  ctx.font = "10px sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = colors.grid;
  ctx.fillStyle = colors.text;
  // Three horizontal grid lines with labels; x labels at both ends (seconds before the newest).
  ctx.beginPath();
  for (let k = 0; k <= 2; k++) {
    const y = PAD.top + (plotH * k) / 2;
    ctx.moveTo(PAD.left, y);
    ctx.lineTo(PAD.left + plotW, y);
    ctx.fillText(formatTick(view.y1 - ((view.y1 - view.y0) * k) / 2, view.y1 - view.y0), 2, y + 3);
  }
  ctx.stroke();
  ctx.fillText(`-${formatTick((view.x1 - view.x0) / 1000, 1)} s`, PAD.left, height - 4);
  ctx.fillText("now", PAD.left + plotW - 18, height - 4);

  const sx = plotW / (view.x1 - view.x0);
  const sy = plotH / (view.y1 - view.y0);
  const px = (x) => PAD.left + (x - view.x0) * sx;
  const py = (y) => PAD.top + (view.y1 - y) * sy;
  ctx.save();
  ctx.beginPath();
  ctx.rect(PAD.left, PAD.top, plotW, plotH);
  ctx.clip();
  ctx.strokeStyle = colors.line;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  const count = view.n - view.start;
  if (count <= plotW * 2) {
    let moved = false;
    for (let i = view.start; i < view.n; i++) {
      const y = ys[i];
      if (Number.isNaN(y)) {
        moved = false; // a gap in the data breaks the line
        continue;
      }
      if (moved) ctx.lineTo(px(xs[i]), py(y));
      else {
        ctx.moveTo(px(xs[i]), py(y));
        moved = true;
      }
    }
  } else {
    // Min/max decimation per pixel column: the envelope is exact and the path is O(width).
    let col = -1;
    let lo = 0;
    let hi = 0;
    let moved = false;
    const flush = () => {
      if (col < 0) return;
      const x = PAD.left + col + 0.5;
      if (moved) ctx.lineTo(x, py(hi));
      else {
        ctx.moveTo(x, py(hi));
        moved = true;
      }
      ctx.lineTo(x, py(lo));
    };
    for (let i = view.start; i < view.n; i++) {
      const y = ys[i];
      if (Number.isNaN(y)) continue;
      const c = Math.floor((xs[i] - view.x0) * sx);
      if (c !== col) {
        flush();
        col = c;
        lo = y;
        hi = y;
      } else if (y < lo) lo = y;
      else if (y > hi) hi = y;
    }
    flush();
  }
  ctx.stroke();
  ctx.restore();
}

function render({ model, el }) {
  injectStyle("base", BASE_CSS, el);
  injectStyle("live_chart", CSS, el);
  const scope = createScope(model);

  const title = h("span", { class: "rtw-lc-title" });
  const pressure = h("span", { class: "rtw-pressure", role: "status", "aria-live": "polite" });
  const canvas = h("canvas", { role: "img", "aria-label": "Live chart" });
  const stats = h("div", { class: "rtw-lc-stats rtw-muted" });
  const error = h("div", { class: "rtw-lc-error rtw-error-text", role: "alert" });
  const root = h(
    "div",
    { class: "rtw-widget rtw-live_chart" },
    h("div", { class: "rtw-row" }, title, pressure),
    canvas,
    error,
    stats,
  );

  let frame = null;
  let colors = null;
  let colorsAt = -Infinity;

  function themeColors() {
    // Re-read the theme at most once a second: getComputedStyle is not free at 60 fps.
    const now = Date.now();
    if (colors && now - colorsAt < 1000) return colors;
    const css = getComputedStyle(root);
    const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    colors = {
      line: v("--jp-brand-color1", "#1976d2"),
      grid: v("--jp-border-color2", "rgba(128,128,128,0.3)"),
      text: v("--jp-ui-font-color2", "#777"),
    };
    colorsAt = now;
    return colors;
  }

  const series = new ChartSeries();
  let pressureLevel = "none";
  let statsValue = {};
  let requestedAt = -Infinity;

  /** Ask the kernel for the whole series (on render, and after a missed or bad message). */
  function requestWindow(force) {
    const now = Date.now();
    if (!force && now - requestedAt < REQUEST_RETRY_MS) return;
    requestedAt = now;
    model.send({ action: "window" });
  }

  function draw() {
    frame = null;
    const xs = series.xs();
    const ys = series.ys();
    root.dataset.points = String(Math.min(xs.length, ys.length));
    const ctx = canvas.getContext("2d");
    if (!ctx) return; // no 2D context (headless test DOM): decoding and text still work
    const dpr = globalThis.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 600;
    const cssH = canvas.clientHeight || DEFAULT_HEIGHT;
    const w = Math.round(cssW * dpr);
    const hgt = Math.round(cssH * dpr);
    if (canvas.width !== w || canvas.height !== hgt) {
      canvas.width = w;
      canvas.height = hgt;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const view = computeView(xs, ys, num(model.get("window_ms")), num(model.get("y_min"), NaN), num(model.get("y_max"), NaN));
    if (!view) {
      ctx.clearRect(0, 0, cssW, cssH);
      return;
    }
    drawChart(ctx, cssW, cssH, xs, ys, view, themeColors());
  }

  /** Ask for a draw on the next animation frame; many calls before it coalesce into one. */
  function schedule() {
    if (frame === null && !scope.disposed) frame = requestAnimationFrame(draw);
  }
  scope.add(() => {
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
  });

  function renderTitle() {
    const t = str(model.get("title"));
    setText(title, t);
    canvas.setAttribute("aria-label", t ? `Live chart: ${t}` : "Live chart");
  }

  function renderPressure() {
    const raw = str(pressureLevel, "none");
    const level = PRESSURE_LEVELS.includes(raw) ? raw : "none";
    for (const l of PRESSURE_LEVELS) pressure.classList.toggle(`rtw-pressure-${l}`, l === level);
    setText(pressure, `pressure: ${raw || "none"}`);
    root.dataset.state = level;
  }

  function renderStats() {
    const s = dict(statsValue);
    const f = (k) => formatCount(num(s[k], NaN));
    setText(
      stats,
      `received ${f("received")} · merged ${f("merged")} · dropped ${f("dropped")} · in ${f("rate_in")}/s · out ${f("rate_out")}/s`,
    );
  }

  for (const trait of ["window_ms", "y_min", "y_max"]) scope.onModel(`change:${trait}`, schedule);
  scope.onModel("change:title", renderTitle);
  scope.onModel("msg:custom", (msg, buffers) => {
    if (!msg || (msg.type !== "window" && msg.type !== "append")) return;
    // Pressure and stats are absolute values: shown from any data message, even one not applied.
    if (typeof msg.pressure === "string" && msg.pressure !== pressureLevel) {
      pressureLevel = msg.pressure;
      renderPressure();
    }
    if (msg.stats && typeof msg.stats === "object") {
      statsValue = msg.stats;
      renderStats();
    }
    const outcome = series.apply(msg, buffers);
    setText(error, series.lastError);
    if (outcome === "gap" || outcome === "error") requestWindow(false);
    else if (outcome === "ignored" && !series.hasWindow) requestWindow(false);
    else if (outcome === "window" || outcome === "append") schedule();
  });

  if (typeof ResizeObserver === "function") {
    const ro = new ResizeObserver(schedule);
    ro.observe(canvas);
    scope.add(() => ro.disconnect());
  }

  renderTitle();
  renderPressure();
  renderStats();
  showIntentErrors(scope, root); // refused intents: a transient notice, removed on dispose
  el.append(root);
  requestWindow(true);
  schedule();
  // How fast this view can draw: the kernel lowers the chart's update rate when no view keeps up.
  startFrameMeter(scope, (msg) => model.send(msg));
  scope.add(() => root.remove());
  return () => scope.dispose();
}

export default { render };
