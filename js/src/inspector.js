// Inspector: a compact table of the connection snapshot and a scrolling monospace event log
// with a client-side type filter and a pause button (freezes the log view, not the data).
import { h, isAtBottom, setAttr, setText } from "./lib/dom.js";
import { setStateBadge, stateBadge } from "./lib/badge.js";
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
`;

const DIR_GLYPH = { in: "←", out: "→", local: "·" };

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

  scope.onModel("change:snapshot", renderSnapshot);
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

  renderSnapshot();
  renderLog();
  renderStatus();
  return root;
}

export default { render: widgetRender({ name: "inspector", css: CSS }, build) };
