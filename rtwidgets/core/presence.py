"""Sans-I/O presence state for one channel: who is here, keyed by client id.

Rules of this module:

* A *member* is one connection (``clientId``); a *user* (``userId``) may have several members
  (two tabs, a notebook and a phone) and counts once in :meth:`PresenceCore.users`.
* ``presence_sync`` replaces the whole map (the gateway's view after a (re)subscribe);
  join/leave/update are deltas. Every change yields an event; frames that change nothing yield none.
* Member dicts are stored as received (``userId``, ``clientId``, ``data``, ``joinedAt``, ...).
* Grouping members into users (and merging their devices) is :func:`group_by_user`, the one place
  that does it: the core's :meth:`PresenceCore.users` and the widgets build on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "MemberJoined",
    "MemberLeft",
    "MemberUpdated",
    "PresenceCore",
    "PresenceEvent",
    "PresenceSynced",
    "UserGroup",
    "group_by_user",
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


@dataclass(frozen=True)
class UserGroup:
    """One user's connections on a channel, merged by :func:`group_by_user`.

    ``members`` are the user's valid members in input order (oldest device first);
    ``joined_at`` is the earliest known ``joinedAt`` (``None`` if no device has one);
    ``typing`` is true if any device's data has ``typing is True``; ``data`` is a copy of the
    newest device's non-empty ``data`` (``{}`` if every device's data is empty or missing).
    """

    user_id: str
    members: tuple[Mapping[str, Any], ...]
    joined_at: int | float | None
    typing: bool
    data: dict[str, Any]

    @property
    def devices(self) -> int:
        """Number of connections (members) of this user; always >= 1."""
        return len(self.members)

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The devices' ``clientId`` values that are non-empty strings, in input order."""
        return tuple(cid for m in self.members if (cid := _client_id(m)) is not None)

    def latest(self, key: str) -> Any:
        """The newest device's truthy ``data[key]``, or ``None`` if no device sets one.

        Unlike :attr:`data` this looks past newer devices that do not set ``key``: a phone that
        only announces ``{"typing": true}`` does not erase the name the laptop announced.
        """
        for m in reversed(self.members):
            value = _data(m).get(key)
            if value:
                return value
        return None


def _data(member: Mapping[str, Any]) -> Mapping[str, Any]:
    data = member.get("data")
    return data if isinstance(data, Mapping) else {}


def _joined_at(member: Mapping[str, Any]) -> int | float | None:
    # bool is an int subclass and NaN/inf do not order: none of them is a usable time.
    value = member.get("joinedAt")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def _user_id(member: Any) -> str | None:
    if isinstance(member, Mapping):
        uid = member.get("userId")
        if isinstance(uid, str) and uid:
            return uid
    return None


def group_by_user(members: Iterable[Any]) -> list[UserGroup]:
    """Group per-connection presence members into one :class:`UserGroup` per user. Pure.

    Rules:

    * A member is *valid* if it is a mapping with a non-empty string ``userId``; anything else
      (non-mappings, missing/empty/non-string ``userId``) is skipped. ``clientId`` is not required
      here (:class:`PresenceCore` already refuses members without one), and each input entry is
      one device: duplicates are not merged by ``clientId``.
    * Groups come in the order of each user's first member in ``members``; inside a group,
      members keep their input order, so "newest device" means "last in the input" (for
      :meth:`PresenceCore.members` that is the most recently joined connection).
    * ``joined_at``: the smallest finite numeric ``joinedAt`` of the user's members (bools, NaN,
      infinities and non-numbers are ignored); ``None`` if none has one.
    * ``typing``: true if any member's ``data["typing"] is True`` (truthy non-bools do not count).
    * ``data``: a shallow copy of the last member's ``data`` that is a non-empty mapping; members
      with empty or non-mapping ``data`` do not overwrite it. ``{}`` if none.
    * ``devices`` (= ``len(members)``) sums to the number of valid input members.
    """
    members_of: dict[str, list[Mapping[str, Any]]] = {}  # insertion order == first appearance
    for m in members:
        uid = _user_id(m)
        if uid is not None:
            members_of.setdefault(uid, []).append(m)
    groups: list[UserGroup] = []
    for uid, ms in members_of.items():
        times = [t for m in ms if (t := _joined_at(m)) is not None]
        data: Mapping[str, Any] = {}
        for m in ms:
            if d := _data(m):
                data = d
        groups.append(
            UserGroup(
                user_id=uid,
                members=tuple(ms),
                joined_at=min(times) if times else None,
                typing=any(_data(m).get("typing") is True for m in ms),
                data=dict(data),
            )
        )
    return groups


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

    def user_groups(self) -> list[UserGroup]:
        """One merged :class:`UserGroup` per user, in order of their first member's join.

        See :func:`group_by_user` for the merge rules; members without a usable ``userId`` are left out.
        """
        return group_by_user(self._members.values())

    def users(self) -> list[str]:
        """Distinct user ids present, in order of their first member's join."""
        return [g.user_id for g in self.user_groups()]

    def members_by_user(self) -> dict[str, list[dict[str, Any]]]:
        """user id -> that user's members (connections), in join order.

        Members without a usable ``userId`` are left out, as in :meth:`users`.
        """
        # The groups hold the stored member dicts themselves (no copies), so the cast is exact.
        return {g.user_id: cast(list[dict[str, Any]], list(g.members)) for g in self.user_groups()}

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
