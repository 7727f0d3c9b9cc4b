// The LiveChart's plot on uPlot: a time axis, round y ticks, a legend with live values, a hover
// cursor with exact values and times, drag to zoom (which pauses live updates) and theme colours.
//
// Rules of this module:
// * live_chart.js loads it lazily (`import()`), once a view has a 2D canvas context to draw on:
//   uPlot reads `matchMedia` and `devicePixelRatio` when it is evaluated, which jsdom and Node
//   (the oracle of tests/_support/js_chart.py imports live_chart.js) do not have. esbuild inlines
//   the dynamic import into the bundle, so the browser loads nothing more.
// * The plot owns copies of the points it shows (`show` copies them): the view's ChartSeries
//   reuses its buffers for later messages, and a paused (zoomed) plot must keep what it showed,
//   hover values included.
// * Colours are functions read at each redraw (`colors()`): a JupyterLab theme switch repaints
//   the axes, grid and line without rebuilding the plot.
import uPlot from "uplot";
import UPLOT_CSS from "uplot/dist/uPlot.min.css";
import { injectStyle } from "./style.js";
import { formatClockMs } from "./time.js";

// esbuild loads uPlot's stylesheet as text (js/build.mjs, loader ".css": "text").
export { UPLOT_CSS };

/** Digits a legend value keeps: enough to show the sample as sent, without float noise. */
const VALUE_DIGITS = 10;

/** A legend value: the number without float noise (0.1 + 0.2 -> "0.3"); "—" for none. */
export function formatValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return String(v);
  return String(Number(v.toPrecision(VALUE_DIGITS)));
}

/** A legend time: local wall-clock time of epoch ms `t`, to the millisecond; "—" for none. */
export function formatTime(t) {
  if (t === null || t === undefined || !Number.isFinite(t)) return "—";
  return formatClockMs(t);
}

const pad2 = (n) => String(n).padStart(2, "0");

/**
 * x tick labels (pure): local times as precise as the tick step needs - "HH:MM" for minutes,
 * "HH:MM:SS" for seconds, then the fewest decimals the step needs ("HH:MM:SS.5" every 500 ms,
 * ".25" every 250 ms), "YYYY-MM-DD" for days.
 * @param {number[]} splits tick positions, epoch ms
 * @param {number} incr the step between ticks, ms
 */
export function timeTicks(splits, incr) {
  // The fewest decimals of a second that still tell the ticks apart (250 ms -> 2: ".25").
  let decimals = 0;
  while (decimals < 3 && Math.round(incr) % 10 ** (3 - decimals) !== 0) decimals += 1;
  return splits.map((t) => {
    const d = new Date(t);
    if (incr >= 86_400_000) return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    if (incr >= 60_000) return hm;
    const sec = `${hm}:${pad2(d.getSeconds())}`;
    return decimals === 0 ? sec : `${sec}.${String(d.getMilliseconds()).padStart(3, "0").slice(0, decimals)}`;
  });
}

/**
 * The y range shown for data spanning [lo, hi] (pure): a fixed bound (`yMin`/`yMax`, finite)
 * is kept as given; an automatic one is padded and rounded by uPlot (`rangeNum`), so the
 * ticks are round numbers. Flat or missing data still gets a non-empty range.
 * @returns {[number, number]}
 */
export function yRange(lo, hi, yMin, yMax) {
  const fixedLo = Number.isFinite(yMin);
  const fixedHi = Number.isFinite(yMax);
  if (fixedLo && fixedHi && yMax > yMin) return [yMin, yMax];
  let a = fixedLo ? yMin : lo;
  let b = fixedHi ? yMax : hi;
  if (!Number.isFinite(a) && !Number.isFinite(b)) return [0, 1]; // no data yet
  if (!Number.isFinite(a)) a = b;
  if (!Number.isFinite(b)) b = a;
  const [niceLo, niceHi] = uPlot.rangeNum(Math.min(a, b), Math.max(a, b), 0.1, true);
  return [fixedLo ? yMin : niceLo, fixedHi && yMax > niceLo ? yMax : niceHi];
}

/** [x copy, y copy with null for NaN (uPlot's gap)] of the first `n` points. */
function toAligned(xs, ys, n) {
  const x = Float64Array.from(xs.subarray(0, n));
  const y = new Array(n);
  for (let i = 0; i < n; i++) y[i] = Number.isNaN(ys[i]) ? null : ys[i];
  return [x, y];
}

/**
 * A uPlot chart in `container`.
 * @param {HTMLElement} container where the plot goes (its width is the plot's)
 * @param {{
 *   label: () => string,                       the series name in the legend
 *   colors: () => {line: string, grid: string, text: string},
 *   bounds: () => {yMin: number, yMax: number}, fixed y bounds (NaN: automatic)
 *   height: number,
 *   onZoom: () => void,                        the user selected a range (drag): pause
 *   onResume: () => void,                      the user double-clicked the plot: resume live
 * }} options
 * @returns {{
 *   uplot: uPlot,
 *   show: (xs: Float64Array, ys: Float64Array, range: [number, number]) => void,
 *   resize: (width: number) => void,
 *   setLabel: (text: string) => void,
 *   destroy: () => void,
 * }} `show` draws the points (copied) over the x range `range` (epoch ms); a paused view
 *   simply stops calling it, so the user's zoom stays.
 */
export function createChart(container, { label, colors, bounds, height, onZoom, onResume }) {
  injectStyle("uplot", UPLOT_CSS, container);
  let latestX = NaN; // the newest point: what the legend shows while the cursor is away
  let latestY = NaN;
  const width = () => Math.max(200, Math.floor(container.clientWidth || 600));
  const axis = {
    stroke: () => colors().text,
    grid: { stroke: () => colors().grid, width: 1 },
    ticks: { stroke: () => colors().grid, width: 1 },
  };
  const opts = {
    width: width(),
    height,
    ms: 1, // x values are epoch milliseconds
    cursor: {
      drag: { x: true, y: false, setScale: true },
      // Double-click resumes live updates (onResume) instead of uPlot's zoom to all data.
      bind: { dblclick: () => null },
    },
    legend: { live: true },
    scales: {
      x: { time: true },
      y: {
        auto: true,
        range: (_u, lo, hi) => {
          const { yMin, yMax } = bounds();
          return yRange(lo, hi, yMin, yMax);
        },
      },
    },
    series: [
      { label: "time", value: (_u, v, _s, idx) => formatTime(idx === null ? latestX : v) },
      {
        label: label(),
        stroke: () => colors().line,
        width: 1.5,
        spanGaps: false, // a NaN (null) breaks the line: no made-up values
        value: (_u, v, _s, idx) => formatValue(idx === null ? latestY : v),
      },
    ],
    axes: [
      // Ticks at least 90 px apart (room for "HH:MM:SS.s"; each label is a fillText per
      // redraw), labelled as precisely as needed.
      { ...axis, space: 90, values: (_u, splits, _i, _space, incr) => timeTicks(splits, incr) },
      { ...axis, size: 60 },
    ],
    hooks: {
      // uPlot reports a finished drag selection just before it zooms to it.
      setSelect: [(u) => u.select.width > 0 && onZoom()],
    },
  };
  const plot = new uPlot(opts, [new Float64Array(0), []], container);
  const onDblClick = () => onResume();
  plot.over.addEventListener("dblclick", onDblClick);

  return {
    uplot: plot,
    show(xs, ys, range) {
      const n = Math.min(xs.length, ys.length);
      latestX = n > 0 ? xs[n - 1] : NaN;
      latestY = n > 0 ? ys[n - 1] : NaN;
      const data = toAligned(xs, ys, n);
      plot.batch(() => {
        plot.setData(data, false);
        // The x window follows the newest sample; uPlot then ranges y over what is visible.
        plot.setScale("x", { min: range[0], max: range[1] });
        // Cursor away from the plot: the legend shows the newest values (idx null = newest).
        if (plot.cursor.idx === null || plot.cursor.idx === undefined) plot.setLegend({ idx: null });
      });
    },
    resize(w) {
      const next = Math.max(200, Math.floor(w || width()));
      if (next !== plot.width) plot.setSize({ width: next, height });
    },
    setLabel(text) {
      const cell = plot.root.querySelector(".u-legend .u-series:nth-child(2) .u-label");
      if (cell) cell.textContent = text;
      plot.series[1].label = text;
    },
    destroy() {
      plot.over.removeEventListener("dblclick", onDblClick);
      plot.destroy();
    },
  };
}
