"""Sans-I/O presence state for one channel: who is here, keyed by client id.

Rules of this module:

* A *member* is one connection (``clientId``); a *user* (``userId``) may have several members
  (two tabs, a notebook and a phone) and counts once in :meth:`PresenceCore.users`.
* ``presence_sync`` replaces the whole map (the gateway's view after a (re)subscribe);
  join/leave/update are deltas. Every change yields an event; frames that change nothing yield none.
* Member dicts are stored as received (``userId``, ``clientId``, ``data``, ``joinedAt``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "MemberJoined",
    "MemberLeft",
    "MemberUpdated",
    "PresenceCore",
    "PresenceEvent",
    "PresenceSynced",
]


@dataclass(frozen=True)
class MemberJoined:
    channel: str
    member: dict[str, Any]


@dataclass(frozen=True)
class MemberLeft:
    channel: str
    member: dict[str, Any]


@dataclass(frozen=True)
class MemberUpdated:
    channel: str
    member: dict[str, Any]
    previous: dict[str, Any] | None


@dataclass(frozen=True)
class PresenceSynced:
    """The member map was replaced; ``joined``/``left`` are the differences to the old map."""

    channel: str
    members: tuple[dict[str, Any], ...]
    joined: tuple[dict[str, Any], ...]
    left: tuple[dict[str, Any], ...]


PresenceEvent = MemberJoined | MemberLeft | MemberUpdated | PresenceSynced

PRESENCE_TYPES = frozenset({"presence_join", "presence_leave", "presence_update", "presence_sync"})


def _client_id(member: Any) -> str | None:
    if isinstance(member, dict):
        cid = member.get("clientId")
        if isinstance(cid, str) and cid:
            return cid
    return None


class PresenceCore:
    """Member map of one channel. Feed presence frames to :meth:`on_frame`."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._members: dict[str, dict[str, Any]] = {}  # insertion order == join order
        self.ignored = 0  # frames without a usable member (counted, never fatal)

    def members(self) -> list[dict[str, Any]]:
        """Current members, in join order."""
        return list(self._members.values())

    def member(self, client_id: str) -> dict[str, Any] | None:
        return self._members.get(client_id)

    def users(self) -> list[str]:
        """Distinct user ids present, in order of their first member's join."""
        seen: dict[str, None] = {}
        for m in self._members.values():
            uid = m.get("userId")
            if isinstance(uid, str):
                seen.setdefault(uid, None)
        return list(seen)

    def members_by_user(self) -> dict[str, list[dict[str, Any]]]:
        """user id -> that user's members (connections)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for m in self._members.values():
            out.setdefault(str(m.get("userId")), []).append(m)
        return out

    def __len__(self) -> int:
        return len(self._members)

    def clear(self) -> None:
        self._members.clear()

    def on_frame(self, frame: dict[str, Any]) -> list[PresenceEvent]:
        """Apply one ``presence_*`` frame; return the resulting events (possibly none)."""
        ftype = frame.get("type")
        if ftype == "presence_sync":
            members = frame.get("members")
            return self.sync(members if isinstance(members, list) else [])
        member = frame.get("member")
        cid = _client_id(member)
        if cid is None:
            self.ignored += 1
            return []
        assert isinstance(member, dict)
        if ftype == "presence_join":
            return self.join(member)
        if ftype == "presence_leave":
            return self.leave(cid)
        if ftype == "presence_update":
            return self.update(member)
        self.ignored += 1
        return []

    def join(self, member: dict[str, Any]) -> list[PresenceEvent]:
        cid = _client_id(member)
        if cid is None:
            raise ValueError("a presence member needs a non-empty string 'clientId'")
        previous = self._members.get(cid)
        self._members[cid] = member
        if previous is None:
            return [MemberJoined(self.channel, member)]
        # A join for a known client (e.g. replayed after a sync) is an update, not a second member.
        return [] if previous == member else [MemberUpdated(self.channel, member, previous)]

    def leave(self, client_id: str) -> list[PresenceEvent]:
        previous = self._members.pop(client_id, None)
        return [] if previous is None else [MemberLeft(self.channel, previous)]

    def update(self, member: dict[str, Any]) -> list[PresenceEvent]:
        cid = _client_id(member)
        if cid is None:
            raise ValueError("a presence member needs a non-empty string 'clientId'")
        previous = self._members.get(cid)
        if previous is None:
            # An update for a member we never saw join (joined before our sync raced): add it.
            self._members[cid] = member
            return [MemberJoined(self.channel, member)]
        if previous == member:
            return []
        # Keep the original join time when the gateway's update frame re-stamps it.
        if "joinedAt" in previous and "joinedAt" in member and previous["joinedAt"] != member["joinedAt"]:
            member = {**member, "joinedAt": previous["joinedAt"]}
        self._members[cid] = member
        return [MemberUpdated(self.channel, member, previous)]

    def sync(self, members: list[Any]) -> list[PresenceEvent]:
        old = self._members
        new: dict[str, dict[str, Any]] = {}
        for m in members:
            cid = _client_id(m)
            if cid is None:
                self.ignored += 1
                continue
            new[cid] = m
        self._members = new
        joined = tuple(m for cid, m in new.items() if cid not in old)
        left = tuple(m for cid, m in old.items() if cid not in new)
        return [PresenceSynced(self.channel, tuple(new.values()), joined, left)]
