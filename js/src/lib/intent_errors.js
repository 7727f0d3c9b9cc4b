// Refused intents: the kernel answers an intent it cannot accept (unknown action, bad field,
// widget closed) with the custom message {type: "intent_error", action, message}. Every view
// shows it as a short-lived notice, so a click or edit that did nothing never fails silently.

import { h, setText } from "./dom.js";
import { injectStyle } from "./style.js";

/** How long a notice stays visible (ms); a newer error replaces it and restarts the timer. */
export const INTENT_ERROR_MS = 4000;

const CSS = `
.rtw-widget .rtw-intent-error {
  margin-top: 6px; padding: 4px 8px; border-radius: 4px;
  /* theme text on the theme surface (readable in light and dark); the error tone is the border */
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-error-color1, #d32f2f); border-left-width: 4px;
}
`;

/**
 * The notice text for one `intent_error` message (plain text: it is set with textContent).
 * @param {{action?: unknown, message?: unknown}} msg
 * @returns {string}
 */
export function intentErrorText(msg) {
  const action = typeof msg.action === "string" && msg.action ? ` "${msg.action}"` : "";
  const message = typeof msg.message === "string" && msg.message ? msg.message : "refused by the kernel";
  return `Action${action} was not applied: ${message}`;
}

/**
 * Show the kernel's `intent_error` messages inside `root` while the view lives.
 *
 * Listens through `scope` (so dispose removes the listener and clears the hide timer); the
 * notice is a `div.rtw-intent-error[role=alert]` appended to `root` and removed after
 * `durationMs`. Other custom messages are ignored (widgets handle their own).
 * @param {ReturnType<import("./scope.js").createScope>} scope the view's render scope
 * @param {HTMLElement} root the widget's root element
 * @param {{durationMs?: number}} [options]
 * @returns {{notice: HTMLElement}} the (reused) notice element, for tests
 */
export function showIntentErrors(scope, root, { durationMs = INTENT_ERROR_MS } = {}) {
  const notice = h("div", { class: "rtw-intent-error", role: "alert" });
  let timer;

  const hide = () => {
    timer = undefined;
    notice.remove();
    setText(notice, "");
  };

  scope.onModel("msg:custom", (msg) => {
    if (!msg || typeof msg !== "object" || msg.type !== "intent_error") return;
    // Styled on first use, when `root` is in its document (or shadow root).
    injectStyle("intent_errors", CSS, root);
    scope.clearTimeout(timer);
    // Re-inserting the alert makes screen readers announce a repeated message again.
    notice.remove();
    setText(notice, intentErrorText(msg));
    root.append(notice);
    timer = scope.timeout(hide, durationMs);
  });
  scope.add(() => notice.remove());
  return { notice };
}
