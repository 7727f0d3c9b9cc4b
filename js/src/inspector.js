// Inspector: a compact table of the connection snapshot, small live charts (RTT, frames in and
// out per second, outbound queue) over the last minute, and a scrolling monospace event log with
// a client-side type filter and a pause button (freezes the log view, not the data).
//
// The charts draw the columns the kernel sends with its snapshot ticks: `history` (the whole
// ring, now and then) and `tail` (the points since), merged by lib/sparkline.js. Each card draws
// an SVG sparkline at once; where a 2D canvas exists (a browser, not jsdom) lib/sparkline_uplot.js
// is loaded lazily and each card gets a small uPlot chart with a hover cursor, as in the
// GatewayMonitor.
import { h, isAtBottom, setAttr, setText } from "./lib/dom.js";
import { setStateBadge, stateBadge } from "./lib/badge.js";
import { mergeHistory, sparklinePath } from "./lib/sparkline.js";
import { mountSparklines } from "./lib/sparkline_mount.js";
import { formatClockMs, formatCount, formatRtt } from "./lib/time.js";
import { dict, list, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

const CSS = `
.rtw-inspector { display: flex; flex-direction: column; gap: 6px; }
.rtw-inspector table { border-collapse: collapse; font-size: 0.9em; }
.rtw-inspector th, .rtw-inspector td {
  text-align: left; padding: 1px 8px 1px 0; border-bottom: 1px solid var(--jp-border-color2, #ddd);
  vertical-align: top;
}
.rtw-inspector th { font-weight: 600; color: var(--jp-ui-font-color2, #777); white-space: nowrap; }
.rtw-inspector .rtw-insp-tables { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.rtw-inspector .rtw-insp-log {
  font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  max-height: 240px; min-height: 60px; overflow-y: auto; margin: 0; padding: 4px; list-style: none;
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px;
  background: var(--jp-layout-color1, transparent); white-space: pre-wrap; overflow-wrap: anywhere;
}
.rtw-inspector .rtw-ev-dir { display: inline-block; width: 1.5em; text-align: center; }
/* The tone mixed 20% toward the theme's strongest text colour: AA in light and dark themes. */
.rtw-inspector .rtw-dir-in .rtw-ev-dir {
  color: color-mix(in srgb, var(--jp-success-color1, #388e3c) 80%, var(--jp-ui-font-color0, #000));
}
.rtw-inspector .rtw-dir-out .rtw-ev-dir { color: var(--jp-brand-color1, #1976d2); }
.rtw-inspector .rtw-dir-local .rtw-ev-dir { color: var(--jp-ui-font-color2, #777); }
.rtw-inspector .rtw-ev-type { font-weight: 600; }
.rtw-inspector .rtw-ev-time { color: var(--jp-ui-font-color2, #777); }
.rtw-inspector .rtw-insp-charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.rtw-inspector .rtw-insp-chart {
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; padding: 4px 6px; margin: 0;
  background: var(--jp-layout-color1, transparent);
}
.rtw-inspector .rtw-insp-chart-head { display: flex; justify-content: space-between; gap: 6px; font-size: 0.85em; }
.rtw-inspector .rtw-insp-chart-title { color: var(--jp-ui-font-color2, #777); }
.rtw-inspector .rtw-insp-chart-value { font-weight: 600; font-variant-numeric: tabular-nums; }
.rtw-inspector .rtw-insp-chart svg { display: block; width: 100%; height: 32px; }
.rtw-inspector .rtw-insp-plot { min-height: 32px; }
.rtw-inspector .rtw-insp-plot:empty { display: none; }
.rtw-inspector .rtw-insp-line {
  fill: none; stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5; vector-effect: non-scaling-stroke;
}
`;

const DIR_GLYPH = { in: "←", out: "→", local: "·" };

/** The charts: [column in `history`, title, unit]. */
export const CHARTS = [
  ["rtt_ms", "RTT", "ms"],
  ["in_rate", "frames in", "/s"],
  ["out_rate", "frames out", "/s"],
  ["queue_size", "outbound queue", ""],
];
const CHART_HEIGHT = 32;

/** A chart value with its unit ("3.2 ms", "12/s", "0"); "–" when unknown (pure). */
export function formatChartValue(value, unit) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (unit === "ms") return formatRtt(value);
  return unit === "/s" ? `${formatCount(value)}/s` : formatCount(value);
}

/** The newest known value of a column (pure): the last finite number, else null. */
export function newestValue(values) {
  const vs = list(values);
  for (let i = vs.length - 1; i >= 0; i--) if (typeof vs[i] === "number" && Number.isFinite(vs[i])) return vs[i];
  return null;
}

const SVG = "http://www.w3.org/2000/svg";

function chartCard([key, title, unit]) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 -3 100 36"); // the path spans y 0..30; the margin shows edge lines
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("class", "rtw-insp-line");
  svg.append(path);
  const value = h("span", { class: "rtw-insp-chart-value" });
  const plotEl = h("div", { class: "rtw-insp-plot" });
  const card = h(
    "figure",
    { class: "rtw-insp-chart", dataset: { series: key } },
    h("figcaption", { class: "rtw-insp-chart-head" }, h("span", { class: "rtw-insp-chart-title", text: title }), value),
    svg,
    plotEl,
  );
  return { key, unit, card, svg, path, value, plotEl, plot: null, hover: null, newest: null };
}

/** [label, value] rows of the snapshot table (pure; exported for tests). */
export function snapshotRows(snapshot) {
  const s = dict(snapshot);
  const c = dict(s.counters);
  const text = (v) => (v === null || v === undefined || v === "" ? "–" : typeof v === "number" ? formatCount(v) : str(v));
  return [
    ["state", text(s.state)],
    ["url", text(s.url)],
    ["user", text(s.user_id)],
    ["client", text(s.client_id)],
    ["rtt", formatRtt(num(s.rtt_ms, -1))],
    ["attempt", text(s.attempt)],
    ["queue", text(s.queue_size)],
    ["pending acks", text(s.pending_acks)],
    ["pending ops", text(s.pending_ops)],
    ["pressure", text(s.pressure)],
    [
      "counters",
      `sent ${text(c.sent)} · received ${text(c.received)} · errors ${text(c.errors)} · reconnects ${text(c.reconnects)}`,
    ],
  ];
}

/** Events whose type contains `filter` (case-insensitive); all when the filter is blank. */
export function filterEvents(events, filter) {
  const needle = filter.trim().toLowerCase();
  const valid = list(events).filter((e) => e !== null && typeof e === "object");
  if (needle === "") return valid;
  return valid.filter((e) => str(e.type).toLowerCase().includes(needle));
}

function build({ model, scope }) {
  const badge = stateBadge();
  const snapBody = h("tbody");
  const chanBody = h("tbody");
  const chanTable = h(
    "table",
    { class: "rtw-insp-channels", "aria-label": "Channels" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["channel", "subscribed", "last event", "epoch", "members", "buffered"].map((t) => h("th", { scope: "col", text: t })),
      ),
    ),
    chanBody,
  );
  const filter = h("input", { type: "search", class: "rtw-insp-filter", placeholder: "filter by type", "aria-label": "Filter events by type" });
  const pause = h("button", { type: "button", class: "rtw-insp-pause", "aria-pressed": "false", text: "Pause" });
  const status = h("span", { class: "rtw-insp-status rtw-muted", "aria-live": "polite" });
  const log = h("ol", { class: "rtw-insp-log", role: "log", "aria-label": "Events", tabindex: "0" });
  const charts = CHARTS.map(chartCard);
  const root = h(
    "div",
    { class: "rtw-widget rtw-inspector" },
    h("div", { class: "rtw-row" }, h("strong", { text: "Inspector" }), badge),
    h(
      "div",
      { class: "rtw-insp-tables" },
      h("table", { class: "rtw-insp-snapshot", "aria-label": "Connection snapshot" }, snapBody),
      chanTable,
    ),
    h("div", { class: "rtw-insp-charts", role: "group", "aria-label": "Charts of the last minute" }, ...charts.map((c) => c.card)),
    h("div", { class: "rtw-row" }, filter, pause, status),
    log,
  );

  let paused = false;
  let missed = 0;
  /** The events list as it was when paused (trait values are replaced, never mutated). */
  let frozen = [];

  function renderSnapshot() {
    const s = dict(model.get("snapshot"));
    const state = str(s.state, "disconnected");
    root.dataset.state = state;
    setStateBadge(badge, state);
    snapBody.replaceChildren(
      ...snapshotRows(s).map(([k, v]) => h("tr", { dataset: { key: k } }, h("th", { scope: "row", text: k }), h("td", { text: v }))),
    );
    const channels = list(s.channels).filter((c) => c && typeof c === "object");
    chanBody.replaceChildren(
      ...channels.map((c) =>
        h(
          "tr",
          { dataset: { channel: str(c.name) } },
          h("td", { text: str(c.name) }),
          h("td", { text: c.subscribed === true ? "yes" : "no" }),
          h("td", { text: str(c.last_event_id) || "–" }),
          h("td", { text: str(c.epoch) || "–" }),
          h("td", { text: formatCount(num(c.members, NaN)) }),
          h("td", { text: formatCount(num(c.buffered, NaN)) }),
        ),
      ),
    );
    chanTable.hidden = channels.length === 0;
  }

  function renderLog() {
    const stick = isAtBottom(log);
    const events = filterEvents(paused ? frozen : model.get("events"), filter.value);
    log.replaceChildren(
      ...events.map((e) => {
        const dir = ["in", "out", "local"].includes(e.dir) ? e.dir : "local";
        return h(
          "li",
          { class: ["rtw-ev", `rtw-dir-${dir}`], dataset: { type: str(e.type) } },
          h("span", { class: "rtw-ev-time", text: formatClockMs(num(e.ts, NaN)) }),
          " ",
          h("span", { class: "rtw-ev-dir", title: dir, "aria-label": dir, text: DIR_GLYPH[dir] }),
          " ",
          h("span", { class: "rtw-ev-type", text: str(e.type) }),
          " ",
          h("span", { class: "rtw-ev-summary", text: str(e.summary) }),
        );
      }),
    );
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function renderStatus() {
    root.dataset.paused = String(paused);
    setText(pause, paused ? "Resume" : "Pause");
    setAttr(pause, "aria-pressed", String(paused));
    setText(status, paused ? `paused${missed > 0 ? ` · ${missed} update${missed === 1 ? "" : "s"} held` : ""}` : "");
  }

  function renderCharts() {
    const window = num(model.get("chart_window"), 60);
    const points = mergeHistory(model.get("history"), model.get("tail"), window);
    for (const c of charts) {
      if (c.plot !== null) c.plot.show(list(points.t), list(points[c.key]), window);
      else setAttr(c.path, "d", sparklinePath(points.t, points[c.key], window) || null);
      c.newest = newestValue(points[c.key]);
      renderValue(c);
    }
    root.dataset.points = String(points.t.length);
  }

  /** The card's header: the hovered point's value and time, else the newest value. */
  function renderValue(c) {
    if (c.hover !== null) setText(c.value, `${formatChartValue(c.hover.v, c.unit)} at ${formatClockMs(c.hover.t * 1000).slice(0, 8)}`);
    else setText(c.value, formatChartValue(c.newest, c.unit));
  }

  function loadCharts() {
    mountSparklines({ charts, root, scope, height: CHART_HEIGHT, name: "Inspector", renderValue, renderCharts });
  }

  scope.onModel("change:snapshot", renderSnapshot);
  scope.onModel("change:history", renderCharts);
  scope.onModel("change:tail", renderCharts);
  scope.onModel("change:chart_window", renderCharts);
  scope.onModel("change:events", () => {
    if (paused) {
      missed += 1;
      renderStatus();
    } else renderLog();
  });
  // The filter also applies to a paused view (over the frozen events).
  scope.listen(filter, "input", renderLog);
  scope.listen(pause, "click", () => {
    paused = !paused;
    missed = 0;
    frozen = paused ? list(model.get("events")) : [];
    if (!paused) renderLog();
    renderStatus();
  });

  root.dataset.charts = "svg";
  renderSnapshot();
  renderCharts();
  renderLog();
  renderStatus();
  loadCharts();
  return root;
}

export default { render: widgetRender({ name: "inspector", css: CSS }, build) };
