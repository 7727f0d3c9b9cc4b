// GatewayMonitor: small charts of a gateway's gauges and rates over the last minutes, a table of
// current values and a table of errors by code. The kernel samples and computes the rates; this
// view only draws the columns it receives ({t: [...], <series>: [...]}, null where a rate is not
// known yet): `history`, sent whole every 30 s or so, and `tail`, the points since (see
// `mergeHistory`).
//
// Each card draws an SVG sparkline at once; where a 2D canvas exists (a browser, not jsdom) it
// loads uPlot lazily (lib/sparkline_uplot.js) and swaps each sparkline for a small uPlot chart
// with a hover cursor (the card's header then shows the hovered value and its time).
import { h, setAttr, setText } from "./lib/dom.js";
import { formatClockMs, formatCount } from "./lib/time.js";
import { mergeHistory, sparklinePath } from "./lib/sparkline.js";
import { mountSparklines } from "./lib/sparkline_mount.js";
import { dict, list, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

// Shared with the Inspector's charts (lib/sparkline.js); exported here as they always were.
export { mergeHistory, sparklinePath };

const CSS = `
.rtw-gateway_monitor { display: flex; flex-direction: column; gap: 6px; }
.rtw-gm-source { font-family: var(--jp-code-font-family, monospace); font-size: 0.9em; overflow-wrap: anywhere; }
.rtw-gm-error {
  border: 1px solid var(--jp-error-color1, #d32f2f); border-radius: 4px; padding: 4px 8px;
  color: color-mix(in srgb, var(--jp-error-color1, #d32f2f) 80%, var(--jp-ui-font-color0, #000));
}
.rtw-gm-charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 8px; }
.rtw-gm-chart {
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; padding: 4px 6px;
  background: var(--jp-layout-color1, transparent);
}
.rtw-gm-chart-head { display: flex; justify-content: space-between; gap: 6px; font-size: 0.85em; }
.rtw-gm-chart-title { color: var(--jp-ui-font-color2, #777); }
.rtw-gm-chart-value { font-weight: 600; font-variant-numeric: tabular-nums; }
.rtw-gm-chart svg { display: block; width: 100%; height: 36px; }
.rtw-gm-chart .rtw-gm-plot { min-height: 36px; }
.rtw-gm-chart .rtw-gm-plot:empty { display: none; }
.rtw-gm-line { fill: none; stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.rtw-gm-chart[data-tone="error"] .rtw-gm-line { stroke: var(--jp-error-color1, #d32f2f); }
.rtw-gm-tables { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.rtw-gm-tables table { border-collapse: collapse; font-size: 0.9em; }
.rtw-gm-tables th, .rtw-gm-tables td {
  text-align: left; padding: 1px 8px 1px 0; border-bottom: 1px solid var(--jp-border-color2, #ddd);
}
.rtw-gm-tables th { font-weight: 600; color: var(--jp-ui-font-color2, #777); white-space: nowrap; }
.rtw-gm-tables td { font-variant-numeric: tabular-nums; }
`;

/** The charts: [series key in `history`, title, unit, tone]. */
export const CHARTS = [
  ["connections", "connections", "", "normal"],
  ["channels", "channels", "", "normal"],
  ["subscriptions", "subscriptions", "", "normal"],
  ["publish_rate", "publishes", "/s", "normal"],
  ["delivery_rate", "deliveries", "/s", "normal"],
  ["error_rate", "errors", "/s", "error"],
  ["slow_close_rate", "slow-consumer closes", "/s", "error"],
  ["outbound_bytes", "largest outbound buffer", "B", "normal"],
];

/** The rows of the current-values table: [key in `current`, label, unit]. */
const CURRENT_ROWS = [
  ["connections", "connections", ""],
  ["channels", "channels", ""],
  ["subscriptions", "subscriptions", ""],
  ["publish_rate", "publish rate", "/s"],
  ["delivery_rate", "delivery rate", "/s"],
  ["error_rate", "error rate", "/s"],
  ["connections_accepted", "connections accepted", ""],
  ["messages_published", "messages published", ""],
  ["messages_delivered", "messages delivered", ""],
  ["errors", "errors", ""],
  ["slow_consumer_closes", "slow-consumer closes", ""],
  ["idle_closes", "idle closes", ""],
  ["auth_failures", "auth failures", ""],
  ["frames_dropped_closed", "frames dropped (closed)", ""],
  ["outbound_bytes", "largest outbound buffer", "B"],
  ["uptime", "uptime", "duration"],
  ["restarts", "restarts seen", ""],
];

const STATUS_TONE = { ok: "success", starting: "warn", error: "error" };

/**
 * A number of seconds as a duration (pure): "12.5 s" under a minute, then the two largest
 * units ("4 min 05 s", "3 h 07 min", "2 d 05 h"); "–" when unknown or negative.
 */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${formatCount(seconds)} s`;
  const whole = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  if (whole < 86400) return `${Math.floor(whole / 3600)} h ${pad(Math.floor((whole % 3600) / 60))} min`;
  return `${Math.floor(whole / 86400)} d ${pad(Math.floor((whole % 86400) / 3600))} h`;
}

/** A value with its unit ("12.5/s", "3 B", a "duration"); "–" when unknown. */
export function formatValue(value, unit = "") {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (unit === "duration") return formatDuration(value);
  const text = formatCount(value);
  return unit === "" ? text : unit === "/s" ? `${text}/s` : `${text} ${unit}`;
}

/** [key, label, text] rows of the current-values table (pure; exported for tests). */
export function currentRows(current) {
  const c = dict(current);
  return CURRENT_ROWS.map(([key, label, unit]) => [key, label, formatValue(c[key], unit)]);
}

/** [code, total, rate] rows of the errors table, codes sorted (pure). */
export function errorRows(errorsByCode) {
  return Object.entries(dict(errorsByCode))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, v]) => [code, formatValue(dict(v).total), formatValue(dict(v).rate, "/s")]);
}

const SVG = "http://www.w3.org/2000/svg";

function chartCard([key, title, unit, tone]) {
  const svg = document.createElementNS(SVG, "svg");
  // The path spans y 0..30; the margin keeps a line on the top or bottom edge visible.
  svg.setAttribute("viewBox", "0 -3 100 36");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("class", "rtw-gm-line");
  svg.append(path);
  const value = h("span", { class: "rtw-gm-chart-value" });
  const plotEl = h("div", { class: "rtw-gm-plot" });
  const card = h(
    "figure",
    { class: "rtw-gm-chart", dataset: { series: key, tone }, style: { margin: "0" } },
    h("figcaption", { class: "rtw-gm-chart-head" }, h("span", { class: "rtw-gm-chart-title", text: title }), value),
    svg,
    plotEl,
  );
  return { key, unit, tone, card, svg, path, value, plotEl, plot: null, hover: null };
}

function build({ model, scope }) {
  const badge = h("span", { class: "rtw-badge rtw-gm-status" });
  const source = h("span", { class: "rtw-gm-source rtw-muted" });
  const error = h("div", { class: "rtw-gm-error", role: "alert", hidden: true });
  const charts = CHARTS.map(chartCard);
  const currentBody = h("tbody");
  const errorsBody = h("tbody");
  const errorsTable = h(
    "table",
    { class: "rtw-gm-errors", "aria-label": "Errors by code" },
    h("thead", {}, h("tr", {}, ...["error code", "total", "rate"].map((t) => h("th", { scope: "col", text: t })))),
    errorsBody,
  );
  const noErrors = h("span", { class: "rtw-gm-no-errors rtw-muted", text: "no errors" });
  const root = h(
    "div",
    { class: "rtw-widget rtw-gateway_monitor" },
    h("div", { class: "rtw-row" }, h("strong", { text: "Gateway monitor" }), badge, source),
    error,
    h("div", { class: "rtw-gm-charts" }, ...charts.map((c) => c.card)),
    h(
      "div",
      { class: "rtw-gm-tables" },
      h("table", { class: "rtw-gm-current", "aria-label": "Current values" }, currentBody),
      h("div", {}, errorsTable, noErrors),
    ),
  );

  function renderStatus() {
    const status = str(model.get("status"), "starting");
    root.dataset.status = status;
    const tone = STATUS_TONE[status] ?? "error";
    for (const t of ["success", "warn", "error"]) badge.classList.toggle(`rtw-tone-${t}`, t === tone);
    setText(badge, status);
    setText(source, str(model.get("source")));
    const message = str(model.get("error"));
    setText(error, message);
    error.hidden = status !== "error" || message === "";
  }

  function renderCharts() {
    const window = num(model.get("window"), 300);
    const history = mergeHistory(model.get("history"), model.get("tail"), window);
    const current = dict(model.get("current"));
    for (const c of charts) {
      if (c.plot !== null) c.plot.show(list(history.t), list(history[c.key]), window);
      else setAttr(c.path, "d", sparklinePath(history.t, history[c.key], window) || null);
      renderValue(c, current);
    }
    root.dataset.points = String(history.t.length);
    // The newest sample's time (epoch s): tests wait on it for "the next sample was drawn".
    root.dataset.newest = history.t.length > 0 ? String(history.t[history.t.length - 1]) : "";
  }

  /** The card's header: the hovered point's value and time, else the current value. */
  function renderValue(c, current = dict(model.get("current"))) {
    if (c.hover !== null) setText(c.value, `${formatValue(c.hover.v, c.unit)} at ${formatClockMs(c.hover.t * 1000).slice(0, 8)}`);
    else setText(c.value, formatValue(current[c.key], c.unit));
  }

  function loadCharts() {
    mountSparklines({ charts, root, scope, height: 36, name: "GatewayMonitor", renderValue, renderCharts });
  }

  function renderTables() {
    currentBody.replaceChildren(
      ...currentRows(model.get("current")).map(([key, label, text]) =>
        h("tr", { dataset: { key } }, h("th", { scope: "row", text: label }), h("td", { text })),
      ),
    );
    const rows = errorRows(model.get("errors_by_code"));
    errorsBody.replaceChildren(
      ...rows.map(([code, total, rate]) =>
        h("tr", { dataset: { code } }, h("td", { text: code }), h("td", { text: total }), h("td", { text: rate })),
      ),
    );
    errorsTable.hidden = rows.length === 0;
    // "no errors" is a fact only once a sample arrived (not while starting or unreachable).
    noErrors.hidden = rows.length > 0 || Object.keys(dict(model.get("current"))).length === 0;
  }

  scope.onModel("change:status", renderStatus);
  scope.onModel("change:error", renderStatus);
  scope.onModel("change:source", renderStatus);
  // One sample changes tail (or history) and current together (one sync): each handler redraws
  // its part.
  scope.onModel("change:history", renderCharts);
  scope.onModel("change:tail", renderCharts);
  scope.onModel("change:window", renderCharts);
  scope.onModel("change:current", () => {
    const current = dict(model.get("current"));
    for (const c of charts) renderValue(c, current); // the headers; the lines follow `tail`
    renderTables();
  });
  scope.onModel("change:errors_by_code", renderTables);

  root.dataset.charts = "svg";
  renderStatus();
  renderCharts();
  renderTables();
  loadCharts();
  return root;
}

export default { render: widgetRender({ name: "gateway_monitor", css: CSS }, build) };
