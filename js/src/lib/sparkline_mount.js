// Mounting uPlot sparklines over the SVG ones, shared by GatewayMonitor and Inspector.
//
// Each widget draws its cards' sparklines as SVG paths first (lib/sparkline.js: works everywhere,
// also in jsdom); when the page can draw on a 2D canvas, lib/sparkline_uplot.js is loaded and
// each card gets a uPlot chart (hover values, resizing with the card) in place of its SVG.

/** True when the page can draw on a 2D canvas (false in jsdom, where the SVG lines stay). */
export function canDraw() {
  try {
    return document.createElement("canvas").getContext("2d") !== null;
  } catch {
    return false;
  }
}

/**
 * The line colour of a card: the theme's brand colour, or its error colour for `tone === "error"`
 * (the JupyterLab CSS variables, so charts follow a theme switch), with fallbacks outside Lab.
 */
export function lineColor(card, tone = "") {
  const name = tone === "error" ? "--jp-error-color1" : "--jp-brand-color1";
  const value = getComputedStyle(card).getPropertyValue(name).trim();
  return value || (tone === "error" ? "#d32f2f" : "#1976d2");
}

/**
 * Load uPlot and give every chart card its sparkline, once; nothing happens without a canvas.
 *
 * `charts`: cards `{card, plotEl, svg, tone?, hover, plot}`; each gets `plot` (the sparkline,
 * destroyed with `scope`) and its SVG hidden. Hovering sets `hover` (`{t, v}` or null) and calls
 * `renderValue(card)`; `renderCharts()` draws the current points once the charts exist, and
 * `root.dataset.charts` becomes "uplot" (tests wait on it). A failed load is logged with `name`
 * and the SVG lines keep working.
 */
export function mountSparklines({ charts, root, scope, height, name, renderValue, renderCharts }) {
  if (!canDraw()) return;
  import("./sparkline_uplot.js")
    .then(({ createSparkline }) => {
      if (scope.disposed) return;
      for (const c of charts) {
        c.plot = createSparkline(c.plotEl, {
          height,
          color: () => lineColor(c.card, c.tone),
          onHover: (t, v) => {
            c.hover = t === null ? null : { t, v };
            renderValue(c);
          },
        });
        c.svg.style.display = "none";
      }
      scope.add(() => {
        for (const c of charts) c.plot?.destroy();
      });
      if (typeof ResizeObserver === "function") {
        const observer = new ResizeObserver(() => {
          for (const c of charts) c.plot?.resize(c.card.clientWidth - 12);
        });
        for (const c of charts) observer.observe(c.card);
        scope.add(() => observer.disconnect());
      }
      root.dataset.charts = "uplot";
      renderCharts();
    })
    .catch((err) => {
      console.error(`rtwidgets: ${name} could not load its charts`, err);
    });
}
