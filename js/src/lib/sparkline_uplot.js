// A small uPlot chart for the GatewayMonitor's cards: one series, no axes or legend (the card's
// header shows the value), y from 0, the x window following the newest sample, and a hover
// cursor that reports the exact value and time under it.
//
// Rules of this module:
// * gateway_monitor.js loads it lazily (`import()`), only when a 2D canvas context exists:
//   uPlot reads `matchMedia` and `devicePixelRatio` when it is evaluated, which jsdom lacks.
//   Without a canvas the card keeps its SVG sparkline. esbuild inlines the import.
// * Colours are read at each redraw (`color()`), so a JupyterLab theme switch repaints.
import uPlot from "uplot";
import UPLOT_CSS from "uplot/dist/uPlot.min.css";
import { injectStyle } from "./style.js";

/**
 * The y range of a sparkline (pure): 0 to a little above the largest value, never empty, with a
 * margin below 0 so a line at 0 (no errors, no closes) shows instead of vanishing in the edge.
 */
export function sparkRange(hi) {
  const top = Number.isFinite(hi) && hi > 0 ? hi : 1;
  return [-top * 0.08, top * 1.1];
}

/**
 * A sparkline in `container`.
 * @param {HTMLElement} container where the plot goes (its width is the plot's)
 * @param {{height: number, color: () => string, onHover: (t: number|null, v: number|null) => void}} options
 *   `onHover(t, v)` gets the hovered point (epoch seconds, value) or (null, null) when the
 *   cursor leaves
 * @returns {{uplot: uPlot, show: (ts: number[], values: (number|null)[], window: number) => void,
 *   resize: (width: number) => void, destroy: () => void}}
 */
export function createSparkline(container, { height, color, onHover }) {
  injectStyle("uplot", UPLOT_CSS, container);
  const width = () => Math.max(80, Math.floor(container.clientWidth || 160));
  const opts = {
    width: width(),
    height,
    legend: { show: false },
    cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 5 } },
    scales: { x: { time: true }, y: { auto: true, range: (_u, _lo, hi) => sparkRange(hi) } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: () => color(), width: 1.5, spanGaps: false, points: { show: false } }],
    hooks: {
      setCursor: [
        (u) => {
          const idx = u.cursor.idx;
          if (idx === null || idx === undefined) onHover(null, null);
          else onHover(u.data[0][idx], u.data[1][idx]);
        },
      ],
    },
  };
  const plot = new uPlot(opts, [[], []], container);
  return {
    uplot: plot,
    show(ts, values, window) {
      const n = Math.min(ts.length, values.length);
      const xs = ts.slice(0, n);
      const ys = values.slice(0, n).map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
      plot.batch(() => {
        plot.setData([xs, ys], false);
        if (n > 0) plot.setScale("x", { min: xs[n - 1] - window, max: xs[n - 1] });
      });
    },
    resize(w) {
      const next = Math.max(80, Math.floor(w || width()));
      if (next !== plot.width) plot.setSize({ width: next, height });
    },
    destroy() {
      plot.destroy();
    },
  };
}
