// Refused intents reach the user: the kernel's {type: "intent_error"} custom message becomes a
// transient role=alert notice inside every widget, removed after INTENT_ERROR_MS and on teardown.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import chat from "../src/chat.js";
import collabText from "../src/collab_text.js";
import connectionStatus from "../src/connection_status.js";
import inspector from "../src/inspector.js";
import { INTENT_ERROR_MS, intentErrorText, showIntentErrors } from "../src/lib/intent_errors.js";
import { h } from "../src/lib/dom.js";
import { createScope } from "../src/lib/scope.js";
import liveChart from "../src/live_chart.js";
import presenceBar from "../src/presence_bar.js";
import todoList from "../src/todo_list.js";
import { FakeModel } from "./fake_model.js";

const refusal = (action, message) => ({ type: "intent_error", action, message });

describe("intent_errors helper", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  function setup() {
    const model = new FakeModel({});
    const scope = createScope(model);
    const root = h("div", { class: "rtw-widget" });
    document.body.append(root);
    const { notice } = showIntentErrors(scope, root);
    return { model, scope, root, notice };
  }

  it("formats the action and message as plain text", () => {
    expect(intentErrorText(refusal("send", "intent 'send' has an empty 'text'"))).toBe(
      "Action \"send\" was not applied: intent 'send' has an empty 'text'",
    );
    expect(intentErrorText({ action: null, message: "an intent must be an object" })).toBe(
      "Action was not applied: an intent must be an object",
    );
    expect(intentErrorText({})).toBe("Action was not applied: refused by the kernel");
  });

  it("shows an accessible notice and hides it after the timeout", () => {
    const { model, root } = setup();
    expect(root.querySelector(".rtw-intent-error")).toBeNull();
    model.emit("msg:custom", refusal("explode", "Chat has no action 'explode'"), []);
    const shown = root.querySelector(".rtw-intent-error");
    expect(shown).not.toBeNull();
    expect(shown.getAttribute("role")).toBe("alert");
    expect(shown.textContent).toBe("Action \"explode\" was not applied: Chat has no action 'explode'");
    vi.advanceTimersByTime(INTENT_ERROR_MS - 1);
    expect(root.querySelector(".rtw-intent-error")).not.toBeNull();
    vi.advanceTimersByTime(1);
    expect(root.querySelector(".rtw-intent-error")).toBeNull();
  });

  it("keeps markup as text and lets a newer error replace the older one", () => {
    const { model, root } = setup();
    model.emit("msg:custom", refusal("a", "first"));
    vi.advanceTimersByTime(INTENT_ERROR_MS - 100);
    model.emit("msg:custom", refusal("b", "<img src=x onerror=alert(1)>"));
    const notices = root.querySelectorAll(".rtw-intent-error");
    expect(notices.length).toBe(1);
    expect(notices[0].textContent).toContain("<img src=x onerror=alert(1)>");
    expect(notices[0].querySelector("img")).toBeNull();
    vi.advanceTimersByTime(200); // the first error's timer would have fired by now
    expect(root.querySelector(".rtw-intent-error")).not.toBeNull();
    vi.advanceTimersByTime(INTENT_ERROR_MS);
    expect(root.querySelector(".rtw-intent-error")).toBeNull();
  });

  it("ignores other custom messages", () => {
    const { model, root } = setup();
    model.emit("msg:custom", { type: "update" }, [new Uint8Array([0])]);
    model.emit("msg:custom", null);
    model.emit("msg:custom", "intent_error");
    expect(root.querySelector(".rtw-intent-error")).toBeNull();
  });

  it("dispose removes the listener, the timer and the notice", () => {
    const { model, scope, root } = setup();
    model.emit("msg:custom", refusal("x", "no"));
    expect(vi.getTimerCount()).toBe(1);
    scope.dispose();
    expect(model.listenerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(root.querySelector(".rtw-intent-error")).toBeNull();
  });
});

const WIDGETS = {
  chat,
  collab_text: collabText,
  connection_status: connectionStatus,
  inspector,
  live_chart: liveChart,
  presence_bar: presenceBar,
  todo_list: todoList,
};

describe("every widget shows refused intents", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    // jsdom has no canvas: live_chart draws nothing (it accepts a missing context).
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(() => null);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  for (const [name, widget] of Object.entries(WIDGETS)) {
    it(`${name}: notice inside the widget root, gone after the timeout and on cleanup`, () => {
      const model = new FakeModel({});
      const el = document.createElement("div");
      document.body.append(el);
      const cleanup = widget.render({ model, el });
      const root = el.querySelector(`.rtw-widget.rtw-${name}`);
      expect(root).not.toBeNull();
      model.emit("msg:custom", refusal("explode", `no action 'explode'`), []);
      const notice = root.querySelector(".rtw-intent-error[role='alert']");
      expect(notice?.textContent).toBe("Action \"explode\" was not applied: no action 'explode'");
      vi.advanceTimersByTime(INTENT_ERROR_MS);
      expect(root.querySelector(".rtw-intent-error")).toBeNull();
      model.emit("msg:custom", refusal(null, "still refused"), []);
      expect(root.querySelector(".rtw-intent-error")).not.toBeNull();
      cleanup();
      expect(model.listenerCount()).toBe(0);
      expect(el.querySelector(".rtw-intent-error")).toBeNull();
      expect(el.childElementCount).toBe(0);
    });
  }
});
