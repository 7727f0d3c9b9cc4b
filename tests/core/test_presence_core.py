"""Unit tests for the sans-I/O presence core."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.presence import (
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    PresenceCore,
    PresenceSynced,
    UserGroup,
    group_by_user,
)


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


def test_members_by_user_and_users_skip_members_without_user_id() -> None:
    p = PresenceCore("room")
    p.join(member("c1", "alice"))
    p.join({"clientId": "c2", "data": {}})  # no userId: a member, but nobody's
    p.join({"clientId": "c3", "userId": "", "data": {}})
    p.join({"clientId": "c4", "userId": 7, "data": {}})
    assert len(p) == 4
    assert p.users() == ["alice"]
    assert list(p.members_by_user()) == ["alice"]
    assert [g.user_id for g in p.user_groups()] == ["alice"]


def test_members_by_user_returns_the_stored_members() -> None:
    p = PresenceCore("room")
    a = member("c1", "alice", {"typing": True})
    p.join(a)
    assert p.members_by_user()["alice"][0] is a


# ---------------------------------------------------------------------------- group_by_user


def test_group_by_user_empty() -> None:
    assert group_by_user([]) == []
    assert group_by_user(iter([])) == []


def test_group_by_user_orders_by_first_appearance_and_keeps_device_order() -> None:
    ms = [
        member("b1", "bob", joined=1),
        member("a1", "alice", joined=2),
        member("c1", "carol", joined=3),
        member("a2", "alice", joined=4),
        member("b2", "bob", joined=5),
    ]
    groups = group_by_user(ms)
    assert [g.user_id for g in groups] == ["bob", "alice", "carol"]
    assert [g.client_ids for g in groups] == [("b1", "b2"), ("a1", "a2"), ("c1",)]
    assert [g.devices for g in groups] == [2, 2, 1]
    # The groups hold the input members themselves, not copies.
    assert groups[0].members[1] is ms[4]


def test_group_by_user_order_follows_input_not_join_time() -> None:
    # A sync may list a late joiner first; order is the input order (the core's join order).
    groups = group_by_user([member("b1", "bob", joined=50), member("a1", "alice", joined=1)])
    assert [g.user_id for g in groups] == ["bob", "alice"]


def test_group_by_user_single_member() -> None:
    (g,) = group_by_user([member("c1", "alice", {"name": "Alice"}, joined=9)])
    assert g == UserGroup(
        user_id="alice",
        members=(member("c1", "alice", {"name": "Alice"}, joined=9),),
        joined_at=9,
        typing=False,
        data={"name": "Alice"},
    )
    assert g.devices == 1
    assert g.latest("name") == "Alice"
    assert g.latest("color") is None


def test_group_by_user_joined_at_is_earliest_known() -> None:
    ms = [
        member("a1", "alice", joined=30),
        {"clientId": "a2", "userId": "alice", "data": {}},  # no joinedAt
        member("a3", "alice", joined=10),
        member("a4", "alice", joined=20),
    ]
    (g,) = group_by_user(ms)
    assert g.joined_at == 10
    # Zero and negative times are real values, not "unknown".
    (g0,) = group_by_user([member("a1", "alice", joined=5), member("a2", "alice", joined=0)])
    assert g0.joined_at == 0
    # Floats compare with ints and keep their type.
    (gf,) = group_by_user([member("a1", "alice", joined=5), {**member("a2", "alice"), "joinedAt": 2.5}])
    assert gf.joined_at == 2.5


@pytest.mark.parametrize("bad", [None, "10", True, False, math.nan, math.inf, -math.inf, [1], {"t": 1}])
def test_group_by_user_ignores_unusable_joined_at(bad: Any) -> None:
    (only_bad,) = group_by_user([{**member("a1", "alice"), "joinedAt": bad}])
    assert only_bad.joined_at is None
    (mixed,) = group_by_user([{**member("a1", "alice"), "joinedAt": bad}, member("a2", "alice", joined=7)])
    assert mixed.joined_at == 7
    (after,) = group_by_user([member("a1", "alice", joined=7), {**member("a2", "alice"), "joinedAt": bad}])
    assert after.joined_at == 7


def test_group_by_user_typing_true_if_any_device_types() -> None:
    (g,) = group_by_user(
        [
            member("a1", "alice", {"typing": False}),
            member("a2", "alice", {"typing": True}),
            member("a3", "alice", {}),
        ]
    )
    assert g.typing is True
    (quiet,) = group_by_user([member("a1", "alice", {"typing": False}), member("a2", "alice")])
    assert quiet.typing is False


@pytest.mark.parametrize("truthy", [1, "yes", "true", [True], {"on": True}])
def test_group_by_user_typing_needs_boolean_true(truthy: Any) -> None:
    (g,) = group_by_user([member("a1", "alice", {"typing": truthy})])
    assert g.typing is False


def test_group_by_user_newest_non_empty_data_wins() -> None:
    ms = [
        member("a1", "alice", {"name": "Alice", "color": "#f00"}),
        member("a2", "alice", {"name": "Alice (phone)", "typing": True}),
        member("a3", "alice", {}),  # empty data does not erase what the others announced
        {"clientId": "a4", "userId": "alice", "data": "not a mapping"},
        {"clientId": "a5", "userId": "alice"},  # no data at all
    ]
    (g,) = group_by_user(ms)
    assert g.data == {"name": "Alice (phone)", "typing": True}
    assert g.devices == 5
    # data is a copy: mutating it does not touch the member.
    g.data["name"] = "changed"
    assert ms[1]["data"]["name"] == "Alice (phone)"


def test_group_by_user_data_empty_when_no_device_has_data() -> None:
    (g,) = group_by_user([member("a1", "alice"), {"clientId": "a2", "userId": "alice", "data": None}])
    assert g.data == {}
    assert g.latest("name") is None


def test_latest_looks_past_devices_that_do_not_set_the_key() -> None:
    (g,) = group_by_user(
        [
            member("a1", "alice", {"name": "Alice", "color": "#f00"}),
            member("a2", "alice", {"color": "#0f0"}),
            member("a3", "alice", {"typing": True, "name": ""}),  # falsy name does not count
        ]
    )
    assert g.data == {"typing": True, "name": ""}
    assert g.latest("name") == "Alice"
    assert g.latest("color") == "#0f0"
    assert g.latest("typing") is True
    assert g.latest("missing") is None


@pytest.mark.parametrize(
    "bad",
    [
        None,
        42,
        "alice",
        ["alice"],
        {"clientId": "c9"},  # no userId
        {"clientId": "c9", "userId": ""},
        {"clientId": "c9", "userId": None},
        {"clientId": "c9", "userId": 5},
        {"clientId": "c9", "userId": ["alice"]},
    ],
)
def test_group_by_user_skips_malformed_members(bad: Any) -> None:
    groups = group_by_user([member("a1", "alice", joined=3), bad, member("b1", "bob", joined=4)])
    assert [(g.user_id, g.devices) for g in groups] == [("alice", 1), ("bob", 1)]


def test_group_by_user_does_not_require_client_id_and_keeps_duplicates() -> None:
    # Each input entry is one device; PresenceCore is where clientIds are unique.
    ms = [{"userId": "alice", "data": {}}, member("a1", "alice"), member("a1", "alice")]
    (g,) = group_by_user(ms)
    assert g.devices == 3
    assert g.client_ids == ("a1", "a1")


def test_group_by_user_accepts_any_mapping() -> None:
    m = MappingProxyType(
        {"clientId": "a1", "userId": "alice", "data": MappingProxyType({"typing": True}), "joinedAt": 4}
    )
    (g,) = group_by_user([m])
    assert (g.user_id, g.typing, g.data, g.joined_at) == ("alice", True, {"typing": True}, 4)
    assert isinstance(g.data, dict)


# Members as the gateway sends them, plus junk the grouping must skip.
_user_ids = st.sampled_from(["alice", "bob", "carol", "dave"])
_joined = st.one_of(
    st.integers(-10, 10**13), st.floats(allow_nan=True), st.none(), st.booleans(), st.text(max_size=2)
)
_data = st.one_of(
    st.dictionaries(
        st.sampled_from(["name", "color", "typing", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(-1, 1), st.text(max_size=3)),
        max_size=3,
    ),
    st.none(),
    st.integers(),
)
_valid_member = st.fixed_dictionaries(
    {"userId": _user_ids, "clientId": st.text(min_size=1, max_size=3)},
    optional={"data": _data, "joinedAt": _joined},
)
_junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=3),
    st.fixed_dictionaries(
        {"clientId": st.text(max_size=2)}, optional={"userId": st.sampled_from(["", None, 3])}
    ),
)


def _is_valid(m: Any) -> bool:
    return isinstance(m, Mapping) and isinstance(m.get("userId"), str) and m["userId"] != ""


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_valid_member, _junk), max_size=12))
def test_group_by_user_properties(ms: list[Any]) -> None:
    groups = group_by_user(ms)
    valid = [m for m in ms if _is_valid(m)]
    # Every valid member's user appears exactly once, in order of first appearance.
    assert [g.user_id for g in groups] == list(dict.fromkeys(m["userId"] for m in valid))
    # Device counts sum to the number of valid members; each group holds exactly its user's members.
    assert sum(g.devices for g in groups) == len(valid)
    for g in groups:
        mine = [m for m in valid if m["userId"] == g.user_id]
        assert g.devices >= 1
        assert len(g.members) == len(mine) and all(a is b for a, b in zip(g.members, mine, strict=True))
        assert g.typing == any(
            isinstance(m.get("data"), dict) and m["data"].get("typing") is True for m in mine
        )
        times = [
            t
            for m in mine
            if isinstance(t := m.get("joinedAt"), (int, float))
            and not isinstance(t, bool)
            and math.isfinite(t)
        ]
        assert g.joined_at == (min(times) if times else None)
        datas = [m["data"] for m in mine if isinstance(m.get("data"), dict) and m["data"]]
        assert g.data == (datas[-1] if datas else {})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3", "c4", "c5"]), _user_ids), max_size=10))
def test_core_users_agree_with_group_by_user(joins: list[tuple[str, str]]) -> None:
    p = PresenceCore("room")
    for cid, uid in joins:
        p.join(member(cid, uid))
    assert p.users() == [g.user_id for g in group_by_user(p.members())]
    by_user = p.members_by_user()
    assert list(by_user) == p.users()
    assert sum(len(v) for v in by_user.values()) == len(p)
