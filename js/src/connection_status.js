// ConnectionStatus: state badge, live reconnect countdown, last error, user and RTT,
// Reconnect / Disconnect buttons. Traits and intents: see docs/widgets_contract (ConnectionStatus).
// The countdown runs on this browser's clock: the kernel sends `retry_in_ms`, a delay measured
// when it was sent, never its own clock's instant (the two clocks need not agree).
import { setStateBadge, stateBadge } from "./lib/badge.js";
import { startCountdown } from "./lib/countdown.js";
import { h, setAttr, setText } from "./lib/dom.js";
import { formatRtt } from "./lib/time.js";
import { num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

const CSS = `
.rtw-connection_status { display: flex; flex-direction: column; gap: 6px; }
.rtw-connection_status .rtw-cs-error:empty, .rtw-connection_status .rtw-cs-retry:empty { display: none; }
.rtw-connection_status .rtw-cs-meta { font-size: 0.9em; }
`;

function build({ model, scope }) {
  const badge = stateBadge({ role: "status" });
  const retry = h("span", { class: "rtw-cs-retry rtw-muted", "aria-live": "polite" });
  const attempt = h("span", { class: "rtw-cs-attempt rtw-muted" });
  const error = h("div", { class: "rtw-cs-error rtw-error-text", "aria-live": "polite" });
  const user = h("span", { class: "rtw-cs-user" });
  const rtt = h("span", { class: "rtw-cs-rtt" });
  const url = h("span", { class: "rtw-cs-url rtw-muted" });
  const reconnect = h("button", { type: "button", class: "rtw-cs-reconnect", text: "Reconnect" });
  const disconnect = h("button", { type: "button", class: "rtw-cs-disconnect", text: "Disconnect" });
  const root = h(
    "div",
    { class: "rtw-widget rtw-connection_status", role: "group", "aria-label": "Connection status" },
    h("div", { class: "rtw-row" }, badge, retry, attempt),
    error,
    h("div", { class: "rtw-row rtw-cs-meta" }, "user ", user, " · rtt ", rtt, " ", url),
    h("div", { class: "rtw-row" }, reconnect, disconnect),
  );

  let stopCountdown = () => {};

  function renderCountdown() {
    stopCountdown();
    stopCountdown = () => {};
    const retryIn = num(model.get("retry_in_ms"));
    if (str(model.get("state")) !== "reconnecting" || retryIn <= 0) {
      setText(retry, "");
      return;
    }
    // The delay counts from when it arrived (now), on this browser's clock.
    stopCountdown = startCountdown(scope, Date.now() + retryIn, (s) => {
      setText(retry, s > 0 ? `retry in ${s} s` : "retrying…");
    });
  }

  function renderState() {
    const state = str(model.get("state"), "disconnected");
    root.dataset.state = state;
    setStateBadge(badge, state);
    reconnect.disabled = state === "connected";
    disconnect.disabled = state !== "connected";
    renderAttempt();
    renderCountdown();
  }

  function renderAttempt() {
    const state = str(model.get("state"));
    const n = num(model.get("attempt"));
    const max = num(model.get("max_attempts"));
    const show = n > 0 && (state === "reconnecting" || state === "connecting" || state === "failed");
    setText(attempt, show ? `attempt ${n}${max > 0 ? `/${max}` : ""}` : "");
  }

  function renderMeta() {
    const userId = str(model.get("user_id"));
    const clientId = str(model.get("client_id"));
    setText(user, userId || "–");
    setAttr(user, "title", clientId ? `client ${clientId}` : null);
    setText(rtt, formatRtt(num(model.get("rtt_ms"), -1)));
    setText(url, str(model.get("url")));
    setText(error, str(model.get("last_error")));
  }

  scope.listen(reconnect, "click", () => model.send({ action: "reconnect" }));
  scope.listen(disconnect, "click", () => model.send({ action: "disconnect" }));

  scope.onModel("change:state", renderState);
  scope.onModel("change:retry_in_ms", renderCountdown);
  scope.onModel("change:attempt", renderAttempt);
  scope.onModel("change:max_attempts", renderAttempt);
  for (const trait of ["user_id", "client_id", "rtt_ms", "url", "last_error"]) {
    scope.onModel(`change:${trait}`, renderMeta);
  }

  renderState();
  renderMeta();
  return root;
}

export default { render: widgetRender({ name: "connection_status", css: CSS }, build) };
