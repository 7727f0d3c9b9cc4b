// Sparkline helpers shared by GatewayMonitor and Inspector (pure): the SVG path drawn before
// (or instead of, without a 2D canvas) the uPlot chart of lib/sparkline_uplot.js, and the merge of
// a kernel's `history` (sent whole now and then) with its `tail` (the points since).
import { dict, list, num } from "./traits.js";

/**
 * The SVG path of a sparkline in a `width` x `height` box: x from the times `ts` (the newest at
 * the right edge, `window` seconds across), y from 0 (bottom) to the largest value (top).
 * A null / non-finite value breaks the line (a gap: the rate was not known). Pure.
 * @returns {string} "M x y L x y ..." or "" when there is nothing to draw
 */
export function sparklinePath(ts, values, window, width = 100, height = 30) {
  const times = list(ts);
  const ys = list(values);
  const n = Math.min(times.length, ys.length);
  if (n === 0) return "";
  const newest = num(times[n - 1], NaN);
  const span = num(window, 0) > 0 ? window : 1;
  let top = 0;
  for (let i = 0; i < n; i++) if (Number.isFinite(ys[i]) && ys[i] > top) top = ys[i];
  if (top === 0) top = 1; // a flat zero line sits on the bottom edge
  const parts = [];
  let pen = "M";
  for (let i = 0; i < n; i++) {
    const t = times[i];
    const v = ys[i];
    if (typeof v !== "number" || !Number.isFinite(v) || typeof t !== "number" || !Number.isFinite(t)) {
      pen = "M";
      continue;
    }
    const x = width * (1 - (newest - t) / span);
    if (x < 0) continue; // older than the window: off the chart
    const y = height - (Math.max(0, v) / top) * height;
    parts.push(`${pen}${x.toFixed(1)} ${y.toFixed(1)}`);
    pen = "L";
  }
  return parts.join(" ");
}

/**
 * The points to draw (pure): `history` followed by the `tail` points newer than its last one,
 * then only those within `window` seconds of the newest (the history sent last may hold points
 * the kernel's window has dropped since).
 * @returns {{t: number[]} & Record<string, (number|null)[]>}
 */
export function mergeHistory(history, tail, window) {
  const hist = dict(history);
  const tl = dict(tail);
  const ht = list(hist.t);
  const tt = list(tl.t);
  const last = ht.length > 0 ? num(ht[ht.length - 1], -Infinity) : -Infinity;
  const fromTail = [];
  for (let i = 0; i < tt.length; i++) if (typeof tt[i] === "number" && tt[i] > last) fromTail.push(i);
  const keys = new Set([...Object.keys(hist), ...Object.keys(tl)]);
  const merged = {};
  for (const key of keys) merged[key] = [...list(hist[key]).slice(0, ht.length), ...fromTail.map((i) => list(tl[key])[i] ?? null)];
  merged.t = [...ht, ...fromTail.map((i) => tt[i])];
  const newest = merged.t.length > 0 ? merged.t[merged.t.length - 1] : NaN;
  const span = num(window, 0) > 0 ? window : Infinity;
  let start = 0;
  while (start < merged.t.length && !(merged.t[start] >= newest - span)) start += 1;
  for (const key of Object.keys(merged)) merged[key] = merged[key].slice(start);
  return merged;
}
