// Badges shared by the widgets: the connection-state badge and the user badge (a name or
// initials on the user's colour). Widgets build them here instead of each styling its own.
import { badgeColors } from "./color.js";
import { h, setText } from "./dom.js";
import { toneForState } from "./style.js";

const TONES = ["success", "warn", "error"];

/** A `span.rtw-badge` for a connection state; `props` are extra `h` props (e.g. role). */
export function stateBadge(props = {}) {
  return h("span", { ...props, class: ["rtw-badge", props.class] });
}

/** Show `state` on a state badge: its text and its tone class (see `toneForState`). */
export function setStateBadge(badge, state) {
  const tone = toneForState(state);
  for (const t of TONES) badge.classList.toggle(`rtw-tone-${t}`, t === tone);
  setText(badge, state);
}

/**
 * Paint `el` as a user badge: background = the user's colour (or their palette colour when it is
 * not a plain CSS colour), text = a colour readable on it (see `badgeColors`).
 */
export function paintUserBadge(el, color, userId) {
  const { background, text } = badgeColors(color, userId);
  el.classList.add("rtw-user-badge");
  el.style.background = background;
  el.style.color = text;
  return el;
}

/**
 * A user badge element: `tag` with `props` (class, title, aria-label, dataset, ...) and
 * `children`, painted with the user's colour.
 */
export function userBadge(tag, { color, userId, ...props }, ...children) {
  return paintUserBadge(h(tag, props, ...children), color, userId);
}
