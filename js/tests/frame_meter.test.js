import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startFrameMeter } from "../src/lib/frame_meter.js";
import { createScope } from "../src/lib/scope.js";
import { FakeModel } from "./fake_model.js";

describe("startFrameMeter", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("reports the frames counted in each interval and stops with its scope", () => {
    const model = new FakeModel();
    const scope = createScope(model);
    const sent = [];
    let t = 0;
    const callbacks = [];
    const raf = (fn) => {
      callbacks.push(fn);
      return callbacks.length;
    };
    const caf = vi.fn();
    const meter = startFrameMeter(scope, (m) => sent.push(m), { intervalMs: 1000, now: () => t, raf, caf });
    for (let i = 0; i < 30; i++) callbacks.shift()(); // 30 frames drawn
    t = 1000;
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([{ action: "frames", view: meter.view, count: 30, elapsed_ms: 1000 }]);
    t = 3500; // a background tab: no frames, a late timer
    vi.advanceTimersByTime(1000);
    expect(sent[1]).toEqual({ action: "frames", view: meter.view, count: 0, elapsed_ms: 2500 });
    scope.dispose();
    expect(caf).toHaveBeenCalled();
    vi.advanceTimersByTime(5000);
    expect(sent.length).toBe(2);
    expect(meter.frames()).toBe(30);
  });

  it("does nothing where there are no animation frames", () => {
    const scope = createScope(new FakeModel());
    const saved = globalThis.requestAnimationFrame;
    globalThis.requestAnimationFrame = undefined;
    try {
      const sent = [];
      expect(startFrameMeter(scope, (m) => sent.push(m)).view).toBe("");
      vi.advanceTimersByTime(3000);
      expect(sent).toEqual([]);
    } finally {
      globalThis.requestAnimationFrame = saved;
    }
  });
});
