"""``PresenceBar``: who is on a channel, one avatar per user (devices grouped)."""

from __future__ import annotations

import time
from typing import Any

from traitlets import List, Unicode

from rtwidgets.models.channel import Channel
from rtwidgets.models.presence import Presence
from rtwidgets.widgets._base import RealtimeWidget, color_for

__all__ = ["MAX_RECENT", "PresenceBar", "group_members"]

MAX_RECENT = 10


def group_members(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per user from per-client members, in order of each user's first join.

    ``name``/``color`` come from the newest device's presence data (``name``, ``color``)
    or fall back to the user id and a stable colour; ``typing`` is true if any device types.
    """
    users: dict[str, dict[str, Any]] = {}
    for member in members:
        if not isinstance(member, dict) or not isinstance(member.get("userId"), str):
            continue
        uid = member["userId"]
        data = member.get("data") if isinstance(member.get("data"), dict) else {}
        joined = member.get("joinedAt") if isinstance(member.get("joinedAt"), (int, float)) else 0
        entry = users.get(uid)
        if entry is None:
            users[uid] = {
                "userId": uid,
                "clientId": str(member.get("clientId", "")),
                "name": str(data.get("name") or uid),
                "color": str(data.get("color") or color_for(uid)),
                "typing": data.get("typing") is True,
                "joinedAt": joined,
                "data": dict(data),
                "devices": 1,
            }
            continue
        entry["devices"] += 1
        entry["typing"] = entry["typing"] or data.get("typing") is True
        entry["joinedAt"] = min(entry["joinedAt"], joined) if entry["joinedAt"] else joined
        if data:
            entry["data"] = dict(data)
            entry["name"] = str(data.get("name") or entry["name"])
            entry["color"] = str(data.get("color") or entry["color"])
    return list(users.values())


class PresenceBar(RealtimeWidget):
    """Avatars of the users on a :class:`Presence` (or a presence-enabled :class:`Channel`)."""

    _bundle = "presence_bar"

    channel = Unicode("").tag(sync=True)
    me = Unicode("").tag(sync=True)
    members = List().tag(sync=True)
    recent = List().tag(sync=True)

    def __init__(self, presence_or_channel: Presence | Channel, **kwargs: Any) -> None:
        if isinstance(presence_or_channel, Presence):
            channel = presence_or_channel.channel
        elif isinstance(presence_or_channel, Channel):
            channel = presence_or_channel
            if not channel.presence:
                raise ValueError(f"channel {channel.name!r} was created without presence=True")
        else:
            raise TypeError(
                f"PresenceBar needs a Presence or a Channel, got {type(presence_or_channel).__name__}"
            )
        self.model = channel
        self.connection = channel.connection
        grouped = group_members(list(channel.members))
        self._known: dict[str, str] = {m["userId"]: m["name"] for m in grouped}
        self._recent: list[dict[str, Any]] = []
        super().__init__(channel=channel.name, me=self.connection.user_id, members=grouped, **kwargs)
        self._observe(channel, self._on_members, ["members"])
        self._observe(self.connection, self._on_me, ["user_id"])
        # Catch changes made between reading the initial state and installing the observers.
        self._run(lambda: self._apply(list(channel.members)))
        self._sync.refresh(lambda: {"me": self.connection.user_id})

    @property
    def users(self) -> list[str]:
        """User ids shown, in join order."""
        return [m["userId"] for m in self.members]

    def __repr__(self) -> str:
        return f"<PresenceBar channel={self.channel!r} users={len(self.members)}>"

    def _on_me(self, change: dict[str, Any]) -> None:
        self._sync.set(me=change["new"])

    def _on_members(self, change: dict[str, Any]) -> None:
        # Runs where the channel changed (the runtime thread); hand over to keep one writer.
        self._run(self._apply, list(change["new"]))

    def _apply(self, members: list[dict[str, Any]]) -> None:
        if self.closed:
            return
        grouped = group_members(members)
        now = time.time() * 1000.0
        current = {m["userId"]: m["name"] for m in grouped}
        for uid, name in current.items():
            if uid not in self._known:
                self._recent.insert(0, {"kind": "join", "userId": uid, "name": name, "ts": now})
        for uid, name in self._known.items():
            if uid not in current:
                self._recent.insert(0, {"kind": "leave", "userId": uid, "name": name, "ts": now})
        del self._recent[MAX_RECENT:]
        self._known = current
        self._sync.set(members=grouped, recent=[dict(e) for e in self._recent])
