// A render scope: the one place a widget view registers everything it must undo.
//
// Contract: every DOM listener, model listener and timer created through a scope is
// removed by `dispose()`, so `render()` can return `scope.dispose` as anywidget's cleanup.
// DOM listeners ride on one AbortController; timers are tracked by id so that a timer
// which already fired is forgotten and a pending one is cleared.

/**
 * @param {{on: Function, off: Function}} model anywidget model
 */
export function createScope(model) {
  const abort = new AbortController();
  const timeouts = new Set();
  const disposers = [];
  let disposed = false;

  const scope = {
    /** AbortSignal aborted on dispose (for fetch, listeners, ...). */
    signal: abort.signal,

    /**
     * Add a DOM event listener removed on dispose (or earlier, when `options.signal` from
     * `controller()` is aborted).
     */
    listen(target, type, fn, options = {}) {
      target.addEventListener(type, fn, { signal: abort.signal, ...options });
    },

    /**
     * An AbortController for a shorter-lived part of the view (e.g. an inline editor): abort it
     * when that part goes away; it is aborted with the scope in any case.
     */
    controller() {
      const ac = new AbortController();
      abort.signal.addEventListener("abort", () => ac.abort(), { signal: ac.signal });
      return ac;
    },

    /** Subscribe to a model event ("change:x", "msg:custom"); unsubscribed on dispose. */
    onModel(event, fn) {
      model.on(event, fn);
      disposers.push(() => model.off(event, fn));
    },

    /** setTimeout that is cleared on dispose. Returns the id (for `clearTimeout`). */
    timeout(fn, ms) {
      if (disposed) return undefined;
      const id = setTimeout(() => {
        timeouts.delete(id);
        fn();
      }, ms);
      timeouts.add(id);
      return id;
    },

    /** Clear a timer created by `timeout` (ignores undefined / already fired ids). */
    clearTimeout(id) {
      if (id === undefined || id === null) return;
      clearTimeout(id);
      timeouts.delete(id);
    },

    /** Register an arbitrary cleanup function (run in reverse order of registration). */
    add(fn) {
      disposers.push(fn);
    },

    get disposed() {
      return disposed;
    },

    /** Undo everything. Idempotent. */
    dispose() {
      if (disposed) return;
      disposed = true;
      abort.abort();
      for (const id of timeouts) clearTimeout(id);
      timeouts.clear();
      while (disposers.length) {
        const fn = disposers.pop();
        try {
          fn();
        } catch (err) {
          // One failing cleanup must not leave the others undone.
          console.error("rtwidgets: cleanup failed", err);
        }
      }
    },
  };
  return scope;
}
