// Time formatting helpers (pure; the clock is always passed in).

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "HH:MM" in local time for an epoch-ms timestamp; "" for a non-finite value. */
export function formatClock(ts) {
  if (!Number.isFinite(ts)) return "";
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "HH:MM:SS.mmm" in local time (the inspector log). */
export function formatClockMs(ts) {
  if (!Number.isFinite(ts)) return "";
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Whole seconds left until `targetMs` (rounded up, never negative). */
export function secondsLeft(targetMs, nowMs) {
  return Math.max(0, Math.ceil((targetMs - nowMs) / 1000));
}

/** "12 ms" / "1.2 s"; "–" when unknown (negative or not finite). */
export function formatRtt(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Compact number for stats: integers as-is, rates with one decimal below 100. */
export function formatCount(n) {
  if (!Number.isFinite(n)) return "–";
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? String(Math.round(n)) : n.toFixed(1);
}
