// A keyed list: one DOM node per item key, reused across renders (an edit in progress, a
// running animation and focus survive updates), moved only when order or membership changes.

/**
 * @template P
 * @param {HTMLElement} container the list element (its children are managed here)
 * @param {{
 *   keyOf: (item: any) => string,
 *   create: (key: string, item: any) => P,
 *   update: (parts: P, item: any) => void,
 *   nodeOf?: (parts: P) => Node,
 * }} spec `create` builds a row's parts once per key, `update` refreshes them on every render,
 *   `nodeOf` gives the row node (default: `parts.row`)
 */
export function createKeyedList(container, { keyOf, create, update, nodeOf = (parts) => parts.row }) {
  /** key -> row parts of the rows shown now. */
  const rows = new Map();

  /**
   * Show `items` in order. Non-objects are skipped; of items sharing a key only the first is
   * shown (one node cannot stand in two places). Returns the number of rows shown.
   */
  function render(items) {
    const seen = new Set();
    const ordered = [];
    for (const item of Array.isArray(items) ? items : []) {
      if (item === null || typeof item !== "object") continue;
      const key = keyOf(item);
      if (seen.has(key)) continue;
      seen.add(key);
      let parts = rows.get(key);
      if (!parts) {
        parts = create(key, item);
        rows.set(key, parts);
      }
      update(parts, item);
      ordered.push(nodeOf(parts));
    }
    for (const key of [...rows.keys()]) if (!seen.has(key)) rows.delete(key);
    // Only touch the child list when order or membership changed.
    const current = container.children;
    let same = current.length === ordered.length;
    for (let i = 0; same && i < ordered.length; i++) same = current[i] === ordered[i];
    if (!same) container.replaceChildren(...ordered);
    return ordered.length;
  }

  return { render, get: (key) => rows.get(key), rows };
}
