// Chat: message feed (pending / failed marks), typing line, input with Enter-to-send.
// Intents: {action:"send", text, localId}, {action:"typing", typing}. Python answers with traits.
import { paintUserBadge, setStateBadge, stateBadge } from "./lib/badge.js";
import { h, isAtBottom, setAttr, setText } from "./lib/dom.js";
import { createKeyedList } from "./lib/keyed_list.js";
import { formatClock } from "./lib/time.js";
import { list, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

/** Send typing:true at most this often while the user keeps typing. */
export const TYPING_THROTTLE_MS = 1500;
/** After this much input silence, send typing:false. */
export const TYPING_IDLE_MS = 2000;

const CSS = `
.rtw-chat { display: flex; flex-direction: column; gap: 6px; }
.rtw-chat .rtw-chat-feed {
  list-style: none; margin: 0; padding: 4px; overflow-y: auto; max-height: 320px; min-height: 80px;
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px;
  background: var(--jp-layout-color1, transparent);
}
.rtw-chat .rtw-msg { padding: 2px 0; }
.rtw-chat .rtw-msg-head { display: flex; gap: 6px; align-items: baseline; }
.rtw-chat .rtw-msg-user { font-size: 0.9em; }
.rtw-chat .rtw-msg-time { font-size: 0.85em; color: var(--jp-ui-font-color2, #777); }
.rtw-chat .rtw-msg-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.rtw-chat .rtw-msg.rtw-pending { opacity: 0.6; }
.rtw-chat .rtw-msg.rtw-failed .rtw-msg-text { text-decoration: line-through wavy var(--jp-error-color1, #d32f2f); }
.rtw-chat .rtw-msg-mark { font-size: 0.85em; }
/* The tone mixed 20% toward the theme's strongest text colour: AA in light and dark themes. */
.rtw-chat .rtw-msg.rtw-failed .rtw-msg-mark {
  color: color-mix(in srgb, var(--jp-error-color1, #d32f2f) 80%, var(--jp-ui-font-color0, #000));
}
.rtw-chat .rtw-chat-typing { min-height: 1.2em; font-style: italic; font-size: 0.9em; }
.rtw-chat .rtw-chat-compose { display: flex; gap: 6px; align-items: flex-end; }
.rtw-chat .rtw-chat-input { flex: 1; resize: vertical; min-height: 2em; }
.rtw-chat .rtw-chat-offline:empty { display: none; }
`;

let localCounter = 0;

/** A client-unique id for an optimistic message (Python shows it under this id while pending). */
export function newLocalId() {
  localCounter += 1;
  const rand =
    typeof crypto !== "undefined" && typeof crypto.randomUUID === "function"
      ? crypto.randomUUID().slice(0, 8)
      : Math.random().toString(36).slice(2, 10);
  return `local-${Date.now().toString(36)}-${localCounter}-${rand}`;
}

/** "bob is typing…", "bob and carol are typing…", "4 people are typing…", "" for none. */
export function typingText(users) {
  if (users.length === 0) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  if (users.length === 3) return `${users[0]}, ${users[1]} and ${users[2]} are typing…`;
  return `${users.length} people are typing…`;
}

function buildRow() {
  const user = h("span", { class: "rtw-msg-user" });
  const time = h("time", { class: "rtw-msg-time" });
  const mark = h("span", { class: "rtw-msg-mark" });
  const text = h("div", { class: "rtw-msg-text" });
  const row = h("li", { class: "rtw-msg" }, h("div", { class: "rtw-msg-head" }, user, time, mark), text);
  return { row, user, time, mark, text };
}

function updateRow(parts, msg, me) {
  const { row, user, time, mark, text } = parts;
  const userId = str(msg.user);
  const pending = msg.pending === true;
  const failed = msg.failed === true;
  row.dataset.id = str(msg.id);
  row.classList.toggle("rtw-pending", pending && !failed);
  row.classList.toggle("rtw-failed", failed);
  row.classList.toggle("rtw-mine", userId === me);
  setText(user, userId || "?");
  // A badge in the user's colour (text readable on it), not coloured text: a user colour as
  // text on the theme background cannot be readable in both light and dark themes.
  paintUserBadge(user, msg.color, userId);
  const ts = num(msg.ts, NaN);
  setText(time, formatClock(ts));
  setAttr(time, "datetime", Number.isFinite(ts) ? new Date(ts).toISOString() : null);
  // textContent, never innerHTML: message text is other users' data.
  setText(text, str(msg.text));
  if (failed) {
    setText(mark, "⚠ not sent");
    setAttr(mark, "title", "The server refused this message");
  } else if (pending) {
    setText(mark, "sending…"); // plain text: an emoji clock renders as tofu without emoji fonts
    setAttr(mark, "title", "Sending…");
  } else {
    setText(mark, "");
    setAttr(mark, "title", null);
  }
  setAttr(mark, "aria-label", failed ? "not sent" : pending ? "sending" : null);
}

function build({ model, scope }) {
  const title = h("span", { class: "rtw-chat-channel" });
  const badge = stateBadge();
  const offline = h("span", { class: "rtw-chat-offline rtw-muted", "aria-live": "polite" });
  const feed = h("ol", {
    class: "rtw-chat-feed",
    role: "log",
    "aria-live": "polite",
    "aria-relevant": "additions",
    "aria-label": "Messages",
    tabindex: "0",
  });
  const typing = h("div", { class: "rtw-chat-typing rtw-muted", "aria-live": "polite" });
  const input = h("textarea", { class: "rtw-chat-input", rows: "1", "aria-label": "Message" });
  const sendButton = h("button", { type: "button", class: "rtw-chat-send", text: "Send" });
  const root = h(
    "div",
    { class: "rtw-widget rtw-chat" },
    h("div", { class: "rtw-row" }, title, badge, offline),
    feed,
    typing,
    h("div", { class: "rtw-chat-compose" }, input, sendButton),
  );

  /** id -> row parts: rows are reused across updates (cheap, keeps the DOM stable). */
  let me = "";
  const rows = createKeyedList(feed, {
    keyOf: (msg) => str(msg.id),
    create: buildRow,
    update: (parts, msg) => updateRow(parts, msg, me),
  });

  function renderMessages() {
    me = str(model.get("me"));
    const stick = isAtBottom(feed);
    rows.render(list(model.get("messages")));
    if (stick) feed.scrollTop = feed.scrollHeight;
  }

  function renderHeader() {
    const channel = str(model.get("channel"));
    const state = str(model.get("state"), "disconnected");
    root.dataset.state = state;
    setText(title, channel ? `#${channel}` : "");
    setStateBadge(badge, state);
    setText(offline, state === "connected" ? "" : "offline: messages are sent when the connection is back");
    setAttr(input, "placeholder", str(model.get("placeholder")) || "Type a message");
  }

  function renderTyping() {
    const me = str(model.get("me"));
    const users = list(model.get("typing"))
      .map((u) => str(u))
      .filter((u) => u && u !== me);
    setText(typing, typingText(users));
  }

  // --- typing intent: throttled true, false after idle or when the box is emptied / sent.
  let typingActive = false;
  let lastTypingSent = -Infinity;
  let idleTimer;

  function stopTyping() {
    scope.clearTimeout(idleTimer);
    idleTimer = undefined;
    if (typingActive) {
      typingActive = false;
      lastTypingSent = -Infinity;
      model.send({ action: "typing", typing: false });
    }
  }

  function onInput() {
    if (input.value.trim() === "") {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (!typingActive || now - lastTypingSent >= TYPING_THROTTLE_MS) {
      typingActive = true;
      lastTypingSent = now;
      model.send({ action: "typing", typing: true });
    }
    scope.clearTimeout(idleTimer);
    idleTimer = scope.timeout(stopTyping, TYPING_IDLE_MS);
  }

  function send() {
    const text = input.value.trim();
    if (text === "") return;
    stopTyping();
    model.send({ action: "send", text, localId: newLocalId() });
    input.value = "";
    // Sending is an explicit "take me to the newest": the echo (pending) appears at the bottom.
    feed.scrollTop = feed.scrollHeight;
  }

  scope.listen(input, "input", onInput);
  scope.listen(input, "keydown", (event) => {
    // Enter sends, Shift+Enter inserts a newline; never send mid IME composition.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  scope.listen(sendButton, "click", send);

  scope.onModel("change:messages", renderMessages);
  scope.onModel("change:me", () => {
    renderMessages();
    renderTyping();
  });
  scope.onModel("change:typing", renderTyping);
  for (const trait of ["channel", "state", "placeholder"]) scope.onModel(`change:${trait}`, renderHeader);

  renderHeader();
  renderMessages();
  renderTyping();
  // A view going away while typing must not leave "alice is typing…" on other screens.
  scope.add(() => {
    if (typingActive) {
      try {
        model.send({ action: "typing", typing: false });
      } catch {
        // the model (comm) may already be closed: nothing more can be sent from here
      }
    }
  });
  return root;
}

export default { render: widgetRender({ name: "chat", css: CSS }, build) };
