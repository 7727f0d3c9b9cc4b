// User colours, avatar initials and readable text on a colour.
//
// Rules of this module:
// * The palette is rtwidgets/static/palette.json, the one source shared with Python
//   (rtwidgets/colors.py): esbuild bundles the file, so kernels and browsers agree on a user's
//   colour. `colorFor` hashes exactly like Python's `color_for` (31-multiplier over code points).
// * A colour string from other users' data is not trusted: only plain CSS colour syntax is used.
// * Text on a user colour is the palette's `text` colour for palette entries (checked for
//   WCAG AA by tests/widgets/test_colors.py), else black or white, whichever contrasts more.
import palette from "../../../rtwidgets/static/palette.json";

/** The shared palette: `colors` (#rrggbb badge backgrounds) and `text` (the text on them). */
export const PALETTE = Object.freeze(palette.colors.map((c) => c.toLowerCase()));
export const PALETTE_TEXT = palette.text.toLowerCase();

/** The palette index of a user id: Python's `(h * 31 + ord(ch)) & 0xFFFFFFFF` over code points. */
export function paletteIndex(userId) {
  let h = 0;
  for (const ch of String(userId ?? "")) {
    h = (Math.imul(h, 31) + ch.codePointAt(0)) >>> 0;
  }
  return h % PALETTE.length;
}

/** Deterministic palette colour for a user id (the same as `rtwidgets.colors.color_for`). */
export function colorFor(userId) {
  return PALETTE[paletteIndex(userId)];
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
 * [r, g, b] (0-255) of a hex, rgb() or hsl() colour string; null for anything else (names,
 * keywords): the caller decides what an unknown colour means.
 */
export function parseColor(color) {
  const s = String(color ?? "").trim().toLowerCase();
  let m = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(s);
  if (m) {
    let hex = m[1];
    if (hex.length <= 4) hex = [...hex].map((c) => c + c).join("");
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(s);
  if (m) return m.slice(1, 4).map((v) => Math.max(0, Math.min(255, Math.round(Number(v)))));
  m = /^hsla?\(\s*(-?[\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(s);
  if (m) {
    const hue = (((Number(m[1]) % 360) + 360) % 360) / 360;
    const sat = Math.min(1, Number(m[2]) / 100);
    const light = Math.min(1, Number(m[3]) / 100);
    // CSS Color 4 hsl -> rgb
    const f = (n) => {
      const k = (n + hue * 12) % 12;
      const a = sat * Math.min(light, 1 - light);
      return Math.round(255 * (light - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  }
  return null;
}

/** WCAG relative luminance of [r, g, b] (0-255). */
export function luminance([r, g, b]) {
  const lin = (c) => {
    const v = c / 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** WCAG contrast ratio of two [r, g, b] colours (1 to 21). */
export function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

let canvas2d;

/** A colour name resolved by the browser's canvas ("red" -> [255, 0, 0]); null without one. */
function resolveByBrowser(color) {
  if (typeof OffscreenCanvas === "undefined") return null; // e.g. jsdom: names stay unknown
  canvas2d ??= new OffscreenCanvas(1, 1).getContext("2d");
  if (!canvas2d) return null;
  canvas2d.fillStyle = "#000000";
  canvas2d.fillStyle = color; // an invalid value leaves the previous one
  const resolved = parseColor(canvas2d.fillStyle);
  return resolved && (resolved.some((c) => c !== 0) || /^(black|#000)/i.test(color)) ? resolved : null;
}

/**
 * Background and text colour of a user badge: `{background, text}`.
 * A palette colour gets the palette's text colour; another parseable colour gets black or white,
 * whichever contrasts more (always >= 4.58:1); a colour name is resolved by the browser's canvas;
 * one that cannot be resolved is replaced by the user's palette colour, so the text stays readable.
 */
export function badgeColors(color, userId) {
  const background = userColor(color, userId);
  if (PALETTE.includes(background.toLowerCase())) return { background, text: PALETTE_TEXT };
  const rgb = parseColor(background) ?? resolveByBrowser(background);
  if (rgb === null) return { background: colorFor(userId), text: PALETTE_TEXT };
  const white = contrast(rgb, [255, 255, 255]);
  const black = contrast(rgb, [0, 0, 0]);
  return { background, text: white >= black ? "#ffffff" : "#000000" };
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
