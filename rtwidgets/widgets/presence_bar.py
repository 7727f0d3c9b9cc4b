"""``PresenceBar``: who is on a channel, one avatar per user (devices grouped).

The avatars follow the channel's ``members``; the "alice joined" / "bob left" lines follow the
presence core's events (``MemberJoined`` / ``MemberLeft`` / ``PresenceSynced``, via
:meth:`Channel.on_presence`), never a diff of two member lists recomputed here. A user joins
with their first device and leaves with their last.
"""

from __future__ import annotations

import time
from typing import Any

from traitlets import List, Unicode

from rtwidgets.core.presence import MemberJoined, MemberLeft, PresenceSynced, group_by_user
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
    """Avatars of the users on a :class:`Presence` (or a presence-enabled :class:`Channel`).

    Args:
        presence_or_channel: a :class:`Presence`, or a :class:`Channel` created with presence.
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: neither a :class:`Presence` nor a :class:`Channel`.
        ValueError: a :class:`Channel` created without presence.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

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
        self._recent: list[dict[str, Any]] = []  # runtime thread only, newest first
        super().__init__(channel=channel.name, me=self.connection.user_id, members=grouped, **kwargs)
        self._observe(channel, self._on_members, ["members"])
        self._observe(self.connection, self._on_me, ["user_id"])
        self._on_close(channel.on_presence(self._on_presence))
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
        self._sync.set(members=group_members(members))

    def _on_presence(self, event: Any) -> None:
        """Runtime thread: a presence core event; the channel's ``members`` are already updated."""
        if self.closed:
            return
        if isinstance(event, MemberJoined):
            joined, left = [event.member], []
        elif isinstance(event, MemberLeft):
            joined, left = [], [event.member]
        elif isinstance(event, PresenceSynced):
            joined, left = list(event.joined), list(event.left)
        else:
            return  # MemberUpdated: nobody came or went
        now = time.time() * 1000.0
        members = list(self.model.members)
        new_clients = {m.get("clientId") for m in joined}
        names = {m["userId"]: m["name"] for m in group_members(members)}
        lines: list[dict[str, Any]] = []
        for uid in dict.fromkeys(_user(m) for m in joined):
            # Only a user's first device is a join (a second tab is the same person).
            earlier = [m for m in members if _user(m) == uid and m.get("clientId") not in new_clients]
            if uid and uid in names and not earlier:
                lines.append({"kind": "join", "userId": uid, "name": names[uid], "ts": now})
        for member in left:
            uid = _user(member)
            if uid and uid not in names and all(line["userId"] != uid for line in lines):
                lines.append({"kind": "leave", "userId": uid, "name": _name(member), "ts": now})
        if not lines:
            return
        self._recent[:0] = lines[::-1]
        del self._recent[MAX_RECENT:]
        self._sync.set(recent=[dict(e) for e in self._recent])


def _user(member: Any) -> str:
    uid = member.get("userId") if isinstance(member, dict) else None
    return uid if isinstance(uid, str) else ""


def _name(member: dict[str, Any]) -> str:
    data = member.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return str(name or _user(member))
