// PresenceBar: one avatar per user (initials in the user's colour), a "me" ring, a typing dot,
// "N here", and transient "alice joined" / "bob left" lines that fade ~5 s after their ts.
import { userBadge } from "./lib/badge.js";
import { initials } from "./lib/color.js";
import { h, setAttr, setText } from "./lib/dom.js";
import { createKeyedList } from "./lib/keyed_list.js";
import { list, num, str } from "./lib/traits.js";
import { widgetRender } from "./lib/widget.js";

/** How long a join/leave line stays visible after its ts. */
export const RECENT_VISIBLE_MS = 5000;
/** At most this many join/leave lines at once (newest first). */
export const RECENT_MAX_SHOWN = 3;

const CSS = `
.rtw-presence_bar { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.rtw-presence_bar .rtw-pb-avatars { display: flex; gap: 4px; list-style: none; margin: 0; padding: 0; flex-wrap: wrap; }
.rtw-presence_bar .rtw-avatar {
  position: relative; width: 28px; height: 28px; border-radius: 50%;
  display: inline-flex; align-items: center; justify-content: center; padding: 0;
  font-weight: 600; font-size: 12px; user-select: none;
  border: 2px solid var(--jp-layout-color0, #fff);
}
.rtw-presence_bar .rtw-avatar.rtw-me { box-shadow: 0 0 0 2px var(--jp-brand-color1, #1976d2); }
.rtw-presence_bar .rtw-typing-dot {
  position: absolute; right: -3px; bottom: -3px; width: 10px; height: 10px; border-radius: 50%;
  background: var(--jp-warn-color1, #f57c00); border: 2px solid var(--jp-layout-color0, #fff);
  animation: rtw-pulse 1s ease-in-out infinite alternate;
}
.rtw-presence_bar .rtw-devices {
  position: absolute; left: -3px; bottom: -3px; min-width: 14px; height: 14px; border-radius: 7px;
  font-size: 9px; line-height: 10px; text-align: center;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #222);
  border: 2px solid var(--jp-layout-color0, #fff);
}
.rtw-presence_bar .rtw-pb-recent { list-style: none; margin: 0; padding: 0; font-size: 0.9em; }
.rtw-presence_bar .rtw-recent { animation: rtw-fade ${RECENT_VISIBLE_MS}ms ease-in forwards; }
@keyframes rtw-pulse { from { opacity: 0.4; } to { opacity: 1; } }
@keyframes rtw-fade { 0%, 70% { opacity: 1; } 100% { opacity: 0; } }
@media (prefers-reduced-motion: reduce) {
  .rtw-presence_bar .rtw-typing-dot, .rtw-presence_bar .rtw-recent { animation: none; }
}
`;

/** Join/leave events still visible at `now`, newest first (pure; exported for tests). */
export function visibleRecent(recent, now) {
  return list(recent)
    .filter((e) => e && typeof e === "object" && now - num(e.ts, -Infinity) < RECENT_VISIBLE_MS)
    .sort((a, b) => num(b.ts) - num(a.ts))
    .slice(0, RECENT_MAX_SHOWN);
}

function avatarFor(member, me) {
  const userId = str(member.userId);
  const name = str(member.name) || userId || "?";
  const devices = Math.max(1, Math.trunc(num(member.devices, 1)));
  const typing = member.typing === true;
  const isMe = userId !== "" && userId === me;
  const label = `${name}${isMe ? " (you)" : ""}${devices > 1 ? `, ${devices} devices` : ""}${typing ? ", typing" : ""}`;
  const avatar = userBadge(
    "li",
    {
      class: ["rtw-avatar", isMe && "rtw-me", typing && "rtw-typing"],
      title: `${name}${isMe ? " (you)" : ""} · ${devices} device${devices === 1 ? "" : "s"}`,
      "aria-label": label,
      dataset: { userId },
      color: member.color,
      userId,
    },
    initials(name),
    devices > 1 && h("span", { class: "rtw-devices", "aria-hidden": "true", text: devices }),
    typing && h("span", { class: "rtw-typing-dot", "aria-hidden": "true" }),
  );
  return avatar;
}

function build({ model, scope }) {
  const avatars = h("ul", { class: "rtw-pb-avatars", "aria-label": "People here" });
  const count = h("span", { class: "rtw-pb-count rtw-muted" });
  const recentList = h("ul", { class: "rtw-pb-recent rtw-muted", "aria-live": "polite" });
  const root = h("div", { class: "rtw-widget rtw-presence_bar" }, avatars, count, recentList);

  function renderMembers() {
    const me = str(model.get("me"));
    const members = list(model.get("members")).filter((m) => m && typeof m === "object");
    // Avatars are small and few: rebuilding them is simpler than diffing and just as cheap.
    avatars.replaceChildren(...members.map((m) => avatarFor(m, me)));
    setText(count, `${members.length} here`);
    const channel = str(model.get("channel"));
    setAttr(root, "aria-label", channel ? `Presence in ${channel}` : "Presence");
    root.dataset.count = String(members.length);
  }

  let expiryTimer;
  /** One <li> per join/leave line, reused while it stays visible (its fade keeps running). */
  const recentRows = createKeyedList(recentList, {
    keyOf: (e) => `${e.kind === "leave" ? "leave" : "join"}|${str(e.userId)}|${num(e.ts)}`,
    create: (_key, e) => {
      const kind = e.kind === "leave" ? "leave" : "join";
      const name = str(e.name) || str(e.userId) || "someone";
      return { row: h("li", { class: ["rtw-recent", `rtw-recent-${kind}`] }, `${name} ${kind === "leave" ? "left" : "joined"}`) };
    },
    update: () => {},
  });

  function renderRecent() {
    scope.clearTimeout(expiryTimer);
    expiryTimer = undefined;
    const now = Date.now();
    const shown = visibleRecent(model.get("recent"), now);
    recentRows.render(shown);
    // One timer, for the earliest expiry; it re-renders and schedules the next.
    if (shown.length > 0) {
      const earliest = Math.min(...shown.map((e) => num(e.ts) + RECENT_VISIBLE_MS));
      expiryTimer = scope.timeout(renderRecent, Math.max(0, earliest - now) + 1);
    }
  }

  scope.onModel("change:members", renderMembers);
  scope.onModel("change:me", renderMembers);
  scope.onModel("change:channel", renderMembers);
  scope.onModel("change:recent", renderRecent);

  renderMembers();
  renderRecent();
  return root;
}

export default { render: widgetRender({ name: "presence_bar", css: CSS }, build) };
