// A tiny DOM builder. User data only ever enters the DOM as text nodes or attribute
// values (never innerHTML), so a message like `<img src=x onerror=...>` stays text.

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, any>} [props] `class`, `style` (object), `dataset` (object),
 *   `text` (textContent), boolean/str attributes; `null`/`undefined`/`false` values are skipped.
 * @param {...(Node|string|number|null|undefined|false)} children strings become text nodes
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "style") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Set textContent only when it differs (avoids needless layout and mutation records). */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

/** Set or remove an attribute; `null`/`undefined`/`false` removes it. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const s = value === true ? "" : String(value);
    if (el.getAttribute(name) !== s) el.setAttribute(name, s);
  }
}

/** True when a scrollable element is (within `slack` px of) scrolled to the bottom. */
export function isAtBottom(el, slack = 8) {
  return el.scrollHeight - el.scrollTop - el.clientHeight <= slack;
}
