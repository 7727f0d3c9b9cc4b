// Defensive trait readers: a trait arriving with the wrong type renders as empty, never throws.

export function str(v, fallback = "") {
  return typeof v === "string" ? v : v === null || v === undefined ? fallback : String(v);
}

export function num(v, fallback = 0) {
  return typeof v === "number" && !Number.isNaN(v) ? v : fallback;
}

export function list(v) {
  return Array.isArray(v) ? v : [];
}

export function dict(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v : {};
}
