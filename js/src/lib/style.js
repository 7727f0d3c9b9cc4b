// Stylesheet injection: each bundle adds its CSS once per document as <style data-rtw="key">.
// Only JupyterLab CSS variables (with fallbacks) are used, so light and dark themes both work.

/**
 * Insert `css` once for `key` (idempotent across views and bundles): into document.head, or
 * into the shadow root holding `el` when a host renders widgets inside shadow DOM.
 * @param {string} key
 * @param {string} css static stylesheet text (never user data)
 * @param {Element} [el] the render element
 * @returns {HTMLStyleElement}
 */
export function injectStyle(key, css, el) {
  const rootNode = el?.getRootNode?.();
  const container = typeof ShadowRoot !== "undefined" && rootNode instanceof ShadowRoot ? rootNode : document.head;
  const existing = container.querySelector(`style[data-rtw="${key}"]`);
  if (existing) {
    // Same key, newer text (anywidget hot reload while developing): refresh in place.
    if (existing.textContent !== css) existing.textContent = css;
    return existing;
  }
  const style = document.createElement("style");
  style.setAttribute("data-rtw", key);
  style.textContent = css;
  container.append(style);
  return style;
}

/**
 * Shared base rules (badges, buttons, inputs); every widget injects it under "base".
 * Text on a state badge is the theme's font colour on its layout colour (the tone is the dot and
 * the border, never the text's background), so it is readable in light and dark themes; a user
 * badge gets its colours inline from `badgeColors` (lib/color.js). tests/widgets/test_colors.py
 * checks every text/background pair of the widgets' CSS in both JupyterLab themes.
 */
export const BASE_CSS = `
.rtw-widget {
  font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, transparent);
  border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 6px;
  padding: 8px;
  box-sizing: border-box;
  max-width: 100%;
}
.rtw-widget *, .rtw-widget *::before, .rtw-widget *::after { box-sizing: border-box; }
.rtw-muted { color: var(--jp-ui-font-color2, #777); }
.rtw-row { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.rtw-badge {
  display: inline-flex; align-items: center; gap: 4px;
  padding: 0 8px; border-radius: 999px; font-weight: 600;
  color: var(--jp-ui-font-color1, #222); background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--rtw-tone, var(--jp-border-color1, #bbb));
}
.rtw-badge::before {
  content: ""; width: 8px; height: 8px; border-radius: 50%;
  background: var(--rtw-tone, var(--jp-ui-font-color2, #777));
}
.rtw-tone-success { --rtw-tone: var(--jp-success-color1, #388e3c); }
.rtw-tone-warn { --rtw-tone: var(--jp-warn-color1, #f57c00); }
.rtw-tone-error { --rtw-tone: var(--jp-error-color1, #d32f2f); }
.rtw-user-badge {
  display: inline-flex; align-items: center; justify-content: center;
  padding: 0 8px; border-radius: 999px; font-weight: 600;
}
.rtw-widget button {
  font: inherit; cursor: pointer; padding: 2px 10px; border-radius: 4px;
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--jp-border-color1, #bbb);
}
.rtw-widget button:hover:not(:disabled) { border-color: var(--jp-brand-color1, #1976d2); }
.rtw-widget button:disabled { opacity: 0.5; cursor: default; }
.rtw-widget button:focus-visible, .rtw-widget input:focus-visible, .rtw-widget textarea:focus-visible {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px;
}
.rtw-widget input[type="text"], .rtw-widget input[type="search"], .rtw-widget textarea {
  font: inherit; padding: 3px 6px; border-radius: 4px;
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bbb);
}
/* The tone mixed 20% toward the theme's strongest text colour: AA in light and dark themes. */
.rtw-error-text { color: color-mix(in srgb, var(--jp-error-color1, #d32f2f) 80%, var(--jp-ui-font-color0, #000)); }
.rtw-sr-only {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
`;

/** Badge tone for a connection state (contract: connected=success, (re)connecting=warn, else error). */
export function toneForState(state) {
  if (state === "connected") return "success";
  if (state === "connecting" || state === "reconnecting") return "warn";
  return "error";
}
