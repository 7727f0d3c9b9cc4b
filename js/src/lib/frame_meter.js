// Counts the animation frames a view gets and reports them in batches, so the kernel can lower a
// widget's update rate while the browser cannot draw (a background tab, a busy page) and raise it
// again (rtwidgets.core.rate.AdaptiveRateController.record_frames on the Python side).
//
// The meter is a requestAnimationFrame loop that only counts (no drawing), plus a timer that sends
// {action: "frames", view, count, elapsed_ms} every `intervalMs`. A background tab runs neither
// rAF nor timers at full rate: its next report says few or no frames over a long span, which is
// exactly the signal.

let nextViewId = 0;

/**
 * Start reporting on `scope` (stopped when the scope is disposed).
 * @param {{ add: Function, timeout: Function }} scope the view's scope (lib/scope.js)
 * @param {(msg: object) => void} send model.send
 * @param {{ intervalMs?: number, now?: () => number, raf?: Function, caf?: Function }} [options]
 * @returns {{ view: string, frames: () => number }} the view id and the frames counted so far
 */
export function startFrameMeter(scope, send, options = {}) {
  const intervalMs = options.intervalMs ?? 1000;
  const now = options.now ?? (() => performance.now());
  const hasRaf = typeof requestAnimationFrame === "function";
  if (!options.raf && !hasRaf) return { view: "", frames: () => 0 }; // no animation frames here
  const raf = options.raf ?? ((fn) => requestAnimationFrame(fn));
  const caf = options.caf ?? ((id) => cancelAnimationFrame(id));
  const view = `v${Date.now().toString(36)}-${(nextViewId++).toString(36)}`;
  let count = 0;
  let total = 0;
  let since = now();
  let handle = null;
  let stopped = false;

  function tick() {
    count += 1;
    total += 1;
    handle = stopped ? null : raf(tick);
  }
  function report() {
    if (stopped) return;
    const t = now();
    const elapsed = t - since;
    if (elapsed > 0) send({ action: "frames", view, count, elapsed_ms: elapsed });
    count = 0;
    since = t;
    scope.timeout(report, intervalMs);
  }
  handle = raf(tick);
  scope.timeout(report, intervalMs);
  scope.add(() => {
    stopped = true;
    if (handle !== null) caf(handle);
  });
  return { view, frames: () => total };
}
