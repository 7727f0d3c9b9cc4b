// Stable per-user colours and avatar initials (fallbacks: Python normally sends `color`).

/** 32-bit FNV-1a hash of a string. */
export function hashString(s) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    hash ^= s.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Deterministic colour for a user id: same id -> same hue, readable on light and dark themes. */
export function colorFor(userId) {
  const hue = hashString(String(userId ?? "")) % 360;
  return `hsl(${hue}, 65%, 45%)`;
}

/**
 * Only colours in a plain CSS colour syntax are used for styling; anything else falls back
 * to `colorFor` (a colour string comes from other users' data, so it is not trusted).
 */
const SAFE_COLOR = /^(#[0-9a-f]{3,8}|(rgb|rgba|hsl|hsla)\([0-9.,%\s/-]+\)|[a-z]{3,20})$/i;

/** The given colour if it is a plain CSS colour, else `colorFor(userId)`. */
export function userColor(color, userId) {
  return typeof color === "string" && SAFE_COLOR.test(color.trim()) ? color.trim() : colorFor(userId);
}

/**
 * One or two letters for an avatar: the first letters of the first two words
 * ("Ada Lovelace" -> "AL", "ada.lovelace" -> "AL"), one letter for a single word
 * ("bob" -> "B"), "?" for an empty name.
 */
export function initials(name) {
  const words = String(name ?? "")
    .trim()
    .split(/[\s._@-]+/u)
    .filter(Boolean);
  if (words.length === 0) return "?";
  const first = Array.from(words[0])[0];
  if (words.length === 1) return first.toUpperCase();
  const second = Array.from(words[1])[0];
  return (first + second).toUpperCase();
}
