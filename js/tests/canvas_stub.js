// What uPlot needs from a browser and jsdom lacks, as recording stand-ins: a 2D context (every
// call recorded), Path2D (every path and its segments recorded) and matchMedia (uPlot watches
// the device pixel ratio with it). `installCanvas()` stubs them for one test; vitest's
// restoreMocks and `vi.unstubAllGlobals()` (in afterEach) undo it.
import { vi } from "vitest";

/** A CanvasRenderingContext2D stand-in: methods record [name, ...args]; properties are kept. */
export function recordingContext() {
  const calls = [];
  const state = {
    calls,
    count(name) {
      return calls.filter((c) => c[0] === name).length;
    },
    /** The texts drawn with fillText (axis tick labels), in order. */
    texts() {
      return calls.filter((c) => c[0] === "fillText").map((c) => c[1]);
    },
  };
  return new Proxy(state, {
    get(target, key) {
      if (key in target) return target[key];
      return (...args) => calls.push([key, ...args]);
    },
    set(target, key, value) {
      target[key] = value;
      return true;
    },
  });
}

/** A Path2D stand-in recording its segments; every instance is pushed to `paths`. */
function recordingPath2D(paths) {
  return class Path2DStub {
    constructor(from) {
      this.ops = from instanceof Path2DStub ? [...from.ops] : [];
      paths.push(this);
    }
    count(name) {
      return this.ops.filter((op) => op[0] === name).length;
    }
    static {
      for (const name of ["moveTo", "lineTo", "rect", "arc", "closePath", "bezierCurveTo", "quadraticCurveTo", "addPath"]) {
        this.prototype[name] = function record(...args) {
          this.ops.push([name, ...args]);
        };
      }
    }
  };
}

/**
 * Stub the canvas APIs for uPlot. Returns {ctx, paths, getContext}: the one recording context
 * every canvas gets, every Path2D made, and the getContext spy.
 */
export function installCanvas() {
  const ctx = recordingContext();
  const paths = [];
  vi.stubGlobal("Path2D", recordingPath2D(paths));
  vi.stubGlobal("matchMedia", () => ({ matches: false, addEventListener() {}, removeEventListener() {} }));
  const getContext = vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(() => ctx);
  return { ctx, paths, getContext };
}

