// LiveChart: a uPlot line chart of a decimated float64 series, redrawn at most once per
// animation frame. The kernel sends the series as custom messages (see rtwidgets/widgets/
// live_chart.py): a "window" (the whole series) and then "append"s (drop k from the front, add
// the new points), each with a seq number, the newest sample as `tail`, pressure and stats.
// A view asks for a window when it renders and when it sees a seq gap. Messages only mark the
// chart dirty; the frame callback hands the series to the plot (lib/uplot_chart.js).
//
// Rules of this module:
// * Live or paused: dragging over the plot zooms and pauses (the series keeps following the
//   kernel, the plot keeps what it showed); the "Live" button or a double-click resumes.
// * The badge is the buffer's state now; the loss line says what was lost so far, why and what
//   to change, and appears only once something was lost (see LiveChart's docstring).
// * Only a chart in the viewport draws (IntersectionObserver); one scrolled away catches up
//   when it comes back into view.
// * uPlot is loaded lazily, at the first frame with a 2D canvas context (lib/uplot_chart.js):
//   this module stays importable by Node (the oracle imports ChartSeries from it) and jsdom.
import { ChartSeries, computeView } from "./lib/chart_series.js";
import { h, setText } from "./lib/dom.js";
import { startFrameMeter } from "./lib/frame_meter.js";
import { formatCount } from "./lib/time.js";
import { dict, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

// The pure parts, for the tests and the Node oracle (tests/_support/chart_view.mjs).
export { ChartSeries, computeView, lowerBound } from "./lib/chart_series.js";

const PRESSURE_LEVELS = ["none", "moderate", "high"];
/** The badge: how full the kernel's sample buffer is now (BackpressureBuffer.pressure). */
export const PRESSURE_TEXT = { none: "keeping up", moderate: "buffer filling", high: "buffer nearly full" };
const DEFAULT_HEIGHT = 220;
// A window request lost on the way (or its answer) is asked again after this long, at the next gap.
const REQUEST_RETRY_MS = 1000;

const CSS = `
.rtw-live_chart { display: flex; flex-direction: column; gap: 4px; }
.rtw-live_chart .rtw-lc-title { font-weight: 600; }
.rtw-live_chart .rtw-lc-plot { width: 100%; min-height: ${DEFAULT_HEIGHT}px; }
.rtw-live_chart .rtw-lc-stats { font-family: var(--jp-code-font-family, monospace); font-size: 0.85em; }
.rtw-live_chart .rtw-lc-loss { font-size: 0.85em; }
.rtw-live_chart .rtw-lc-loss:empty, .rtw-live_chart .rtw-lc-paused:empty { display: none; }
.rtw-live_chart .rtw-lc-spacer { flex: 1; }
/* Theme text on the theme surface (readable in light and dark themes); the level is the border. */
.rtw-live_chart .rtw-pressure {
  font-size: 0.85em; padding: 0 6px; border-radius: 999px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb);
}
.rtw-live_chart .rtw-pressure-moderate { border: 2px solid var(--jp-warn-color1, #f57c00); }
.rtw-live_chart .rtw-pressure-high { border: 2px solid var(--jp-error-color1, #d32f2f); }
.rtw-live_chart .rtw-lc-live[aria-pressed="true"] { border-color: var(--jp-success-color1, #388e3c); }
.rtw-live_chart .rtw-lc-error:empty { display: none; }
/* uPlot's parts in the theme's colours (its own stylesheet is injected as "uplot"). */
.rtw-live_chart .uplot { font-family: inherit; }
.rtw-live_chart .u-legend { font-size: 0.9em; text-align: left; }
.rtw-live_chart .u-legend .u-value { font-family: var(--jp-code-font-family, monospace); }
.rtw-live_chart .u-select { background: color-mix(in srgb, var(--jp-brand-color1, #1976d2) 18%, transparent); }
.rtw-live_chart .u-hz .u-cursor-x, .rtw-live_chart .u-hz .u-cursor-y { border-color: var(--jp-ui-font-color2, #777); }
/* uPlot promotes its cursor parts to compositor layers (will-change): 4 layers per chart, 80 for
   20 charts, which costs every frame of the page. Moving them repaints a little instead. */
.rtw-live_chart .u-cursor-x, .rtw-live_chart .u-cursor-y, .rtw-live_chart .u-cursor-pt { will-change: auto; }
`;

/**
 * The loss line (pure; exported for tests): what the buffer merged or dropped so far and why,
 * and samples that were not numbers; "" when nothing was lost. `prev` is the stats before
 * (`{}` at first): a count that grew since then is happening now.
 */
export function lossText(stats, prev = {}) {
  const s = dict(stats);
  const p = dict(prev);
  const count = (k) => num(s[k], 0);
  const now = (k) => (count(k) > num(p[k], 0) && Object.keys(p).length > 0 ? ", now" : "");
  const parts = [];
  if (count("dropped") > 0) {
    parts.push(
      `dropped ${formatCount(count("dropped"))} of ${formatCount(count("received"))}${now("dropped")} ` +
        "(buffer full: raise max_buffer_size or lower the rate)",
    );
  }
  if (count("merged") > 0) {
    parts.push(
      `merged ${formatCount(count("merged"))}${now("merged")} ` +
        "(buffer full: a newer sample with the same key replaced one; raise max_buffer_size to keep all)",
    );
  }
  if (count("invalid") > 0) {
    parts.push(`invalid ${formatCount(count("invalid"))}${now("invalid")} (not a finite number)`);
  }
  return parts.join(" · ");
}

/** The stats line: how many samples came, and the rates in and out of the buffer. */
export function statsText(stats) {
  const s = dict(stats);
  const f = (k) => formatCount(num(s[k], NaN));
  return `received ${f("received")} · in ${f("rate_in")}/s · out ${f("rate_out")}/s`;
}

// The theme's colours, shared by every chart of the page (one theme per document): read at
// most once a second, and at once when JupyterLab switches themes (it names it on <body>), so
// 20 charts cost one getComputedStyle a second, not 20 (each one a style recalculation).
const theme = { name: null, at: -Infinity, colors: null };

/** The chart colours from the JupyterLab theme's CSS variables as seen from `el`. */
function themeColors(el) {
  const now = Date.now();
  const name = document.body?.dataset.jpThemeName ?? "";
  if (theme.colors && now - theme.at < 1000 && name === theme.name) return theme.colors;
  const css = getComputedStyle(el);
  const v = (prop, fallback) => css.getPropertyValue(prop).trim() || fallback;
  theme.colors = {
    line: v("--jp-brand-color1", "#1976d2"),
    grid: v("--jp-border-color2", "rgba(128,128,128,0.3)"),
    text: v("--jp-ui-font-color2", "#777"),
  };
  theme.name = name;
  theme.at = now;
  return theme.colors;
}

/** A 2D canvas context can be made here (not in jsdom without a canvas package). */
function canDraw() {
  try {
    return document.createElement("canvas").getContext("2d") !== null;
  } catch {
    return false;
  }
}

function build({ model, scope }) {
  const title = h("span", { class: "rtw-lc-title" });
  const pressure = h("span", {
    class: "rtw-pressure",
    role: "status",
    "aria-live": "polite",
    title: "How full the kernel's sample buffer is now (it holds max_buffer_size samples)",
  });
  const liveButton = h("button", { class: "rtw-lc-live", type: "button", title: "Follow the newest samples" }, "Live");
  const paused = h("span", { class: "rtw-lc-paused rtw-muted" });
  const plotEl = h("div", { class: "rtw-lc-plot", role: "img", "aria-label": "Live chart" });
  const stats = h("div", { class: "rtw-lc-stats rtw-muted" });
  const loss = h("div", { class: "rtw-lc-loss rtw-error-text", role: "status" });
  const error = h("div", { class: "rtw-lc-error rtw-error-text", role: "alert" });
  const root = h(
    "div",
    { class: "rtw-widget rtw-live_chart" },
    h("div", { class: "rtw-row" }, title, pressure, h("span", { class: "rtw-lc-spacer" }), paused, liveButton),
    plotEl,
    error,
    stats,
    loss,
  );

  let frame = null;
  let width = null; // the plot's new width from the ResizeObserver, until the next draw applies it
  let visible = true; // in the viewport (IntersectionObserver); without one, always

  const series = new ChartSeries();
  let pressureLevel = "none";
  let statsValue = {};
  let requestedAt = -Infinity;
  let live = true;
  let chart = null; // the uPlot chart, once loaded
  let chartState = "none"; // "none" | "loading" | "ready" | "unavailable" (no 2D context)

  /** Ask the kernel for the whole series (on render, and after a missed or bad message). */
  function requestWindow(force) {
    const now = Date.now();
    if (!force && now - requestedAt < REQUEST_RETRY_MS) return;
    requestedAt = now;
    model.send({ action: "window" });
  }

  function setLive(value) {
    live = value;
    root.dataset.live = String(live);
    liveButton.setAttribute("aria-pressed", String(live));
    liveButton.disabled = live;
    setText(paused, live ? "" : "paused: drag to zoom in, double-click or Live to resume");
    if (live) schedule();
  }

  /** Load uPlot and build the plot, once; false while there is no plot to draw into. */
  function ensureChart() {
    if (chartState === "ready") return true;
    if (chartState !== "none") return false;
    if (!canDraw()) {
      chartState = "unavailable"; // decoding, stats and the counters still work
      return false;
    }
    chartState = "loading";
    import("./lib/uplot_chart.js")
      .then(({ createChart }) => {
        if (scope.disposed) return;
        chart = createChart(plotEl, {
          label: () => str(model.get("title")) || "value",
          colors: () => themeColors(root),
          bounds: () => ({ yMin: num(model.get("y_min"), NaN), yMax: num(model.get("y_max"), NaN) }),
          height: DEFAULT_HEIGHT,
          onZoom: () => setLive(false),
          onResume: () => setLive(true),
        });
        chartState = "ready";
        scope.add(() => chart.destroy());
        schedule();
      })
      .catch((err) => {
        chartState = "unavailable";
        setText(error, `the chart could not be drawn: ${err?.message ?? err}`);
      });
    return false;
  }

  function draw() {
    frame = null;
    const xs = series.xs();
    const ys = series.ys();
    root.dataset.points = String(Math.min(xs.length, ys.length));
    if (!ensureChart()) return;
    // The width comes from the ResizeObserver: reading clientWidth here would force a layout
    // in every chart's frame callback (20 charts: 20 layouts a frame).
    if (width !== null) chart.resize(width);
    width = null;
    if (!live) return; // paused: the plot keeps what it showed (and the user's zoom)
    if (!visible) return; // scrolled away: drawn again when it comes into view
    const view = computeView(xs, ys, num(model.get("window_ms")), num(model.get("y_min"), NaN), num(model.get("y_max"), NaN));
    if (!view) return;
    chart.show(xs, ys, [view.x0, view.x1]);
    root.dataset.draws = String(num(Number(root.dataset.draws), 0) + 1);
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
    plotEl.setAttribute("aria-label", t ? `Live chart: ${t}` : "Live chart");
    chart?.setLabel(t || "value");
  }

  function renderPressure() {
    const raw = str(pressureLevel, "none");
    const level = PRESSURE_LEVELS.includes(raw) ? raw : "none";
    for (const l of PRESSURE_LEVELS) pressure.classList.toggle(`rtw-pressure-${l}`, l === level);
    setText(pressure, PRESSURE_TEXT[raw] ?? `buffer: ${raw || "none"}`);
    root.dataset.state = level;
  }

  let statsBefore = {};
  function renderStats() {
    setText(stats, statsText(statsValue));
    setText(loss, lossText(statsValue, statsBefore));
    root.dataset.loss = loss.textContent ? (loss.textContent.includes(", now") ? "now" : "earlier") : "none";
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
      statsBefore = statsValue;
      statsValue = msg.stats;
      renderStats();
    }
    const outcome = series.apply(msg, buffers);
    setText(error, series.lastError);
    if (outcome === "gap" || outcome === "error") requestWindow(false);
    else if (outcome === "ignored" && !series.hasWindow) requestWindow(false);
    else if (outcome === "window" || outcome === "append") schedule();
  });
  scope.listen(liveButton, "click", () => setLive(true));

  if (typeof ResizeObserver === "function") {
    const ro = new ResizeObserver((entries) => {
      const box = entries.at(-1)?.contentRect;
      if (box) width = box.width;
      schedule();
    });
    ro.observe(plotEl);
    scope.add(() => ro.disconnect());
  }

  if (typeof IntersectionObserver === "function") {
    // A chart out of view does not draw: with 20 charts on a page most are scrolled away, and
    // their canvases are the page's biggest cost per frame. The series still follows the kernel.
    const io = new IntersectionObserver((entries) => {
      const entry = entries.at(-1);
      if (!entry) return;
      visible = entry.isIntersecting;
      root.dataset.visible = String(visible);
      if (visible) schedule();
    });
    io.observe(root);
    scope.add(() => io.disconnect());
  }

  renderTitle();
  renderPressure();
  renderStats();
  setLive(true);
  requestWindow(true);
  // How fast this view can draw: the kernel lowers the chart's update rate when no view keeps up.
  startFrameMeter(scope, (msg) => model.send(msg));
  return root;
}

export default { render: widgetRender({ name: "live_chart", css: CSS }, build) };
