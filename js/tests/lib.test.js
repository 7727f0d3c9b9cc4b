import { afterEach, describe, expect, it, vi } from "vitest";
import palette from "../../rtwidgets/static/palette.json";
import { setStateBadge, userBadge } from "../src/lib/badge.js";
import { badgeColors, colorFor, contrast, initials, PALETTE, PALETTE_TEXT, parseColor, userColor } from "../src/lib/color.js";
import { createKeyedList } from "../src/lib/keyed_list.js";
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
    expect(PALETTE).toContain(colorFor("alice"));
  });
  it("uses the palette file Python reads, with Python's hash", () => {
    expect(PALETTE).toEqual(palette.colors.map((c) => c.toLowerCase()));
    expect(PALETTE_TEXT).toBe(palette.text.toLowerCase());
    // rtwidgets.colors.color_for: h = (h * 31 + ord(ch)) & 0xFFFFFFFF; "ab" -> 97 * 31 + 98 = 3105
    expect(colorFor("ab")).toBe(PALETTE[3105 % PALETTE.length]);
    expect(colorFor("")).toBe(PALETTE[0]);
    // Code points, not UTF-16 units (Python iterates code points): U+1F600 is one step.
    expect(colorFor("\u{1F600}")).toBe(PALETTE[0x1f600 % PALETTE.length]);
    // A long id wraps at 32 bits exactly like Python's mask.
    let h = 0n;
    for (const ch of "a-rather-long-user-id@example.org") h = (h * 31n + BigInt(ch.codePointAt(0))) & 0xffffffffn;
    expect(colorFor("a-rather-long-user-id@example.org")).toBe(PALETTE[Number(h % BigInt(PALETTE.length))]);
  });
  it("parseColor reads hex, rgb() and hsl(), null for the rest", () => {
    expect(parseColor("#fff")).toEqual([255, 255, 255]);
    expect(parseColor("#12ab34")).toEqual([18, 171, 52]);
    expect(parseColor("rgb(1, 2, 3)")).toEqual([1, 2, 3]);
    expect(parseColor("rgba(1 2 3 / 50%)")).toEqual([1, 2, 3]);
    expect(parseColor("hsl(0, 100%, 50%)")).toEqual([255, 0, 0]);
    expect(parseColor("hsl(120, 100%, 25%)")).toEqual([0, 128, 0]);
    expect(parseColor("rebeccapurple")).toBeNull();
    expect(parseColor(undefined)).toBeNull();
  });
  it("badgeColors gives text readable (WCAG AA) on any colour", () => {
    for (const c of PALETTE) expect(badgeColors(c, "u")).toEqual({ background: c, text: PALETTE_TEXT });
    for (const c of ["#ffff00", "#42d4f4", "#000000", "#777777", "#808080", "hsl(60, 100%, 50%)", "rgb(20, 40, 60)"]) {
      const { background, text } = badgeColors(c, "u");
      expect(background).toBe(c);
      expect(contrast(parseColor(background), parseColor(text))).toBeGreaterThanOrEqual(4.5);
    }
    // Unsafe or unknown (no browser canvas here to resolve a name): the user's palette colour.
    expect(badgeColors("url(x)", "bob")).toEqual({ background: colorFor("bob"), text: PALETTE_TEXT });
    expect(badgeColors("rebeccapurple", "bob")).toEqual({ background: colorFor("bob"), text: PALETTE_TEXT });
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

describe("badges and keyed lists", () => {
  it("setStateBadge sets the text and exactly one tone", () => {
    const badge = document.createElement("span");
    setStateBadge(badge, "reconnecting");
    expect(badge.textContent).toBe("reconnecting");
    expect([...badge.classList]).toEqual(["rtw-tone-warn"]);
    setStateBadge(badge, "connected");
    expect([...badge.classList]).toEqual(["rtw-tone-success"]);
  });
  it("userBadge paints the user's colour with readable text", () => {
    const el = userBadge("span", { class: "x", color: "#ffff00", userId: "u", title: "t" }, "Ann");
    expect(el.className).toBe("x rtw-user-badge");
    expect(el.style.background).toBe("rgb(255, 255, 0)");
    expect(el.style.color).toBe("rgb(0, 0, 0)");
    expect(el.textContent).toBe("Ann");
  });
  it("createKeyedList reuses nodes per key, keeps order, skips duplicates and non-objects", () => {
    const ul = document.createElement("ul");
    let created = 0;
    const rows = createKeyedList(ul, {
      keyOf: (item) => String(item.id),
      create: () => {
        created += 1;
        return { row: document.createElement("li") };
      },
      update: (parts, item) => {
        parts.row.textContent = item.text;
      },
    });
    expect(rows.render([{ id: 1, text: "a" }, null, { id: 2, text: "b" }, { id: 1, text: "dup" }])).toBe(2);
    const [first, second] = ul.children;
    expect([...ul.children].map((li) => li.textContent)).toEqual(["a", "b"]);
    rows.render([{ id: 2, text: "B" }, { id: 1, text: "A" }, { id: 3, text: "c" }]);
    expect([...ul.children].map((li) => li.textContent)).toEqual(["B", "A", "c"]);
    expect(ul.children[0]).toBe(second);
    expect(ul.children[1]).toBe(first);
    expect(created).toBe(3);
    rows.render([{ id: 3, text: "c" }]);
    expect(rows.get("1")).toBeUndefined();
    expect(ul.children.length).toBe(1);
    expect(rows.render("not a list")).toBe(0);
    expect(ul.children.length).toBe(0);
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
