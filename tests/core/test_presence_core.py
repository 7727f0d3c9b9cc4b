"""Unit tests for the sans-I/O presence core."""

from __future__ import annotations

from typing import Any

import pytest

from rtwidgets.core.presence import MemberJoined, MemberLeft, MemberUpdated, PresenceCore, PresenceSynced


def member(cid: str, uid: str, data: dict[str, Any] | None = None, joined: int = 1) -> dict[str, Any]:
    return {"clientId": cid, "userId": uid, "data": data or {}, "joinedAt": joined}


def frame(ftype: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"type": ftype, "channel": "room", "member": m}


def test_join_leave_update_events() -> None:
    p = PresenceCore("room")
    a = member("c1", "alice")
    assert p.on_frame(frame("presence_join", a)) == [MemberJoined("room", a)]
    a2 = member("c1", "alice", {"typing": True})
    assert p.on_frame(frame("presence_update", a2)) == [MemberUpdated("room", a2, a)]
    assert p.members() == [a2]
    assert p.on_frame(frame("presence_leave", {"clientId": "c1", "userId": "alice"})) == [
        MemberLeft("room", a2)
    ]
    assert p.members() == []


def test_one_user_many_clients() -> None:
    p = PresenceCore("room")
    p.join(member("c1", "alice"))
    p.join(member("c2", "bob"))
    p.join(member("c3", "alice"))
    assert len(p) == 3
    assert p.users() == ["alice", "bob"]
    assert [m["clientId"] for m in p.members_by_user()["alice"]] == ["c1", "c3"]
    p.leave("c1")
    assert p.users() == ["bob", "alice"]  # alice still here through c3
    p.leave("c3")
    assert p.users() == ["bob"]


def test_sync_replaces_map_and_reports_diff() -> None:
    p = PresenceCore("room")
    a, b, c = member("c1", "alice"), member("c2", "bob"), member("c3", "carol")
    p.join(a)
    p.join(b)
    (ev,) = p.on_frame({"type": "presence_sync", "channel": "room", "members": [b, c]})
    assert isinstance(ev, PresenceSynced)
    assert ev.members == (b, c)
    assert ev.joined == (c,)
    assert ev.left == (a,)
    assert p.members() == [b, c]


def test_duplicate_join_is_not_a_second_member() -> None:
    p = PresenceCore("room")
    a = member("c1", "alice")
    p.join(a)
    assert p.join(dict(a)) == []
    a2 = member("c1", "alice", {"x": 1})
    assert p.join(a2) == [MemberUpdated("room", a2, a)]
    assert len(p) == 1


def test_update_for_unknown_member_adds_it_and_keeps_join_time() -> None:
    p = PresenceCore("room")
    a = member("c1", "alice", joined=5)
    assert p.update(a) == [MemberJoined("room", a)]
    (ev,) = p.update(member("c1", "alice", {"x": 1}, joined=99))
    assert isinstance(ev, MemberUpdated)
    assert ev.member["joinedAt"] == 5


def test_leave_unknown_and_malformed_frames_change_nothing() -> None:
    p = PresenceCore("room")
    assert p.leave("nobody") == []
    assert p.on_frame({"type": "presence_join", "channel": "room", "member": {"userId": "x"}}) == []
    assert p.on_frame({"type": "presence_join", "channel": "room"}) == []
    assert p.ignored == 2
    with pytest.raises(ValueError, match="clientId"):
        p.join({"userId": "x"})
