"""``PresenceBar``: who is on a channel, one avatar per user (devices grouped)."""

from __future__ import annotations

import time
from typing import Any

from traitlets import List, Unicode

from rtwidgets.core.presence import group_by_user
from rtwidgets.models.channel import Channel
from rtwidgets.models.presence import Presence
from rtwidgets.widgets._base import RealtimeWidget, color_for

__all__ = ["MAX_RECENT", "PresenceBar", "group_members"]

MAX_RECENT = 10


def group_members(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One display entry per user from per-client members, in order of each user's first join.

    Grouping and merging (``devices``, ``typing``, earliest ``joinedAt``, newest ``data``,
    malformed members skipped) is :func:`rtwidgets.core.presence.group_by_user`; this only adds
    the display fields: ``name``/``color`` are the newest device's truthy ``data["name"]`` /
    ``data["color"]``, falling back to the user id and its stable :func:`color_for` colour;
    ``clientId`` is the user's first device; ``joinedAt`` is 0 when no device has one.
    """
    return [
        {
            "userId": g.user_id,
            "clientId": str(g.members[0].get("clientId", "")),
            "name": str(g.latest("name") or g.user_id),
            "color": str(g.latest("color") or color_for(g.user_id)),
            "typing": g.typing,
            "joinedAt": g.joined_at if g.joined_at is not None else 0,
            "data": g.data,
            "devices": g.devices,
        }
        for g in group_by_user(members)
    ]


class PresenceBar(RealtimeWidget):
    """Avatars of the users on a :class:`Presence` (or a presence-enabled :class:`Channel`)."""

    _bundle = "presence_bar"

    channel = Unicode("").tag(sync=True)
    me = Unicode("").tag(sync=True)
    members: List[dict[str, Any]] = List().tag(sync=True)
    recent: List[dict[str, Any]] = List().tag(sync=True)

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
