// A live "N s" countdown to an epoch-ms deadline, ticking on whole-second boundaries.
import { secondsLeft } from "./time.js";

/**
 * Call `onTick(secondsLeft)` now and every time the whole-second value changes, the last call
 * being `onTick(0)` at the deadline. Timers go through `scope` (cleared on dispose).
 * @param {ReturnType<import("./scope.js").createScope>} scope
 * @param {number} targetMs epoch ms
 * @param {(seconds: number) => void} onTick
 * @returns {() => void} stop
 */
export function startCountdown(scope, targetMs, onTick) {
  let timer;
  let stopped = false;
  const tick = () => {
    timer = undefined;
    if (stopped) return;
    const now = Date.now();
    const left = secondsLeft(targetMs, now);
    onTick(left);
    if (left > 0) {
      // Wake just after the displayed value changes: remaining ms past the last whole second.
      const remainder = (targetMs - now) % 1000;
      timer = scope.timeout(tick, remainder > 0 ? remainder : 1000);
    }
  };
  tick();
  return () => {
    stopped = true;
    scope.clearTimeout(timer);
    timer = undefined;
  };
}
