import { afterEach, describe, expect, it, vi } from "vitest";
import { colorFor, initials, userColor } from "../src/lib/color.js";
import { BufferError, toFloat64 } from "../src/lib/buffers.js";
import { h } from "../src/lib/dom.js";
import { createScope } from "../src/lib/scope.js";
import { injectStyle } from "../src/lib/style.js";
import { formatCount, formatRtt, secondsLeft } from "../src/lib/time.js";
import { FakeModel } from "./fake_model.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("color", () => {
  it("colorFor is stable and differs between users", () => {
    expect(colorFor("alice")).toBe(colorFor("alice"));
    expect(colorFor("alice")).not.toBe(colorFor("bob"));
    expect(colorFor("alice")).toMatch(/^hsl\(\d{1,3}, 65%, 45%\)$/);
  });
  it("userColor accepts plain colours only", () => {
    expect(userColor("#12ab34", "u")).toBe("#12ab34");
    expect(userColor("hsl(10, 50%, 50%)", "u")).toBe("hsl(10, 50%, 50%)");
    expect(userColor("url(javascript:alert(1))", "u")).toBe(colorFor("u"));
    expect(userColor(undefined, "u")).toBe(colorFor("u"));
  });
  it("initials", () => {
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("ada.lovelace")).toBe("AL");
    expect(initials("bob")).toBe("B");
    expect(initials("  ")).toBe("?");
    expect(initials("émile zola")).toBe("ÉZ");
  });
});

describe("toFloat64", () => {
  it("decodes a DataView without copying when aligned", () => {
    const src = new Float64Array([1.5, -2, 3e10]);
    const dv = new DataView(src.buffer);
    const out = toFloat64(dv, "y");
    expect(Array.from(out)).toEqual([1.5, -2, 3e10]);
    expect(out.buffer).toBe(src.buffer);
  });
  it("decodes an unaligned view and ArrayBuffer, empty for null", () => {
    const raw = new ArrayBuffer(8 * 2 + 4);
    const dv = new DataView(raw, 4, 16);
    dv.setFloat64(0, 7.25, true);
    dv.setFloat64(8, -1, true);
    expect(Array.from(toFloat64(dv))).toEqual([7.25, -1]);
    expect(Array.from(toFloat64(new Float64Array([4]).buffer))).toEqual([4]);
    expect(toFloat64(null).length).toBe(0);
  });
  it("rejects a bad length or a non-binary value with a clear error", () => {
    expect(() => toFloat64(new DataView(new ArrayBuffer(12)), "x")).toThrow(BufferError);
    expect(() => toFloat64(new DataView(new ArrayBuffer(12)), "x")).toThrow("x: byte length 12 is not a multiple of 8");
    expect(() => toFloat64([1, 2], "x")).toThrow("expected binary data");
  });
});

describe("dom and style", () => {
  it("h puts strings in as text", () => {
    const el = h("p", { class: "a", title: "<b>" }, "<img src=x>", 3);
    expect(el.textContent).toBe("<img src=x>3");
    expect(el.querySelector("img")).toBeNull();
    expect(el.title).toBe("<b>");
  });
  it("injectStyle adds one <style data-rtw> per key", () => {
    injectStyle("k1", ".a{}");
    injectStyle("k1", ".a{}");
    expect(document.head.querySelectorAll('style[data-rtw="k1"]').length).toBe(1);
  });
  it("injectStyle targets the shadow root that holds the element", () => {
    const host = document.createElement("div");
    document.body.append(host);
    const shadow = host.attachShadow({ mode: "open" });
    const el = document.createElement("div");
    shadow.append(el);
    injectStyle("k2", ".b{}", el);
    injectStyle("k2", ".b{}", el);
    expect(shadow.querySelectorAll('style[data-rtw="k2"]').length).toBe(1);
    expect(document.head.querySelector('style[data-rtw="k2"]')).toBeNull();
    host.remove();
  });
});

describe("scope", () => {
  it("dispose removes DOM and model listeners and pending timers, keeps fired ones forgotten", () => {
    vi.useFakeTimers();
    const model = new FakeModel({});
    const scope = createScope(model);
    const button = document.createElement("button");
    const clicks = vi.fn();
    scope.listen(button, "click", clicks);
    scope.onModel("change:x", () => {});
    const fired = vi.fn();
    scope.timeout(fired, 10);
    scope.timeout(() => {}, 1000);
    vi.advanceTimersByTime(10);
    expect(fired).toHaveBeenCalledOnce();
    expect(vi.getTimerCount()).toBe(1);
    scope.dispose();
    button.click();
    expect(clicks).not.toHaveBeenCalled();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(scope.timeout(() => {}, 5)).toBeUndefined();
  });
});

describe("time", () => {
  it("formats", () => {
    expect(secondsLeft(10_500, 10_000)).toBe(1);
    expect(secondsLeft(9_000, 10_000)).toBe(0);
    expect(formatRtt(-1)).toBe("–");
    expect(formatRtt(1500)).toBe("1.5 s");
    expect(formatCount(12)).toBe("12");
    expect(formatCount(12.345)).toBe("12.3");
    expect(formatCount(1234.5)).toBe("1235");
  });
});
