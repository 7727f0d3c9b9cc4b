"""SharedStateCore: a shared dict with per-key conflict policies (pure logic)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from rtwidgets.core.shared_state import SharedStateCore, apply_shared_event

CH = "s"


def ids(prefix: str) -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def stored(offset: int, key: str, value: Any, msg_id: str, delete: bool = False) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": CH,
        "offset": offset,
        "eventId": str(offset),
        "epoch": "e",
        "key": key,
        "data": None if delete else {"v": value},
        "msgId": msg_id,
    }


def delta(events: list[dict[str, Any]], version: int) -> dict[str, Any]:
    return {
        "type": "sync_response",
        "channel": CH,
        "syncType": "delta",
        "events": events,
        "version": version,
        "epoch": "e",
        "latestEventId": str(version),
    }


def snapshot(state: dict[str, dict[str, Any]], version: int) -> dict[str, Any]:
    return {
        "type": "sync_response",
        "channel": CH,
        "syncType": "snapshot",
        "state": state,
        "events": [],
        "version": version,
        "epoch": "e",
        "latestEventId": str(version),
    }


def live_core(conflict: Any = "client-wins") -> SharedStateCore:
    core = SharedStateCore(CH, conflict, new_id=ids("me"))
    core.sync_request()
    core.on_sync_response(snapshot({"x": stored(1, "x", 1, "o1")}, 1))
    assert core.live and core.state == {"x": 1}
    return core


def test_apply_shared_event_sets_deletes_and_ignores_others() -> None:
    assert apply_shared_event({}, stored(1, "a", 5, "m")) == {"a": 5}
    assert apply_shared_event({"a": 5}, stored(2, "a", None, "m", delete=True)) == {}
    assert apply_shared_event({"a": 5}, {"type": "message", "data": {"text": "hi"}}) == {"a": 5}


def test_live_changes_are_sent_and_confirmed_by_their_echo() -> None:
    core = live_core()
    msg_id = core.set("x", 2, now=1.0)
    [frame] = core.data_to_send()
    assert frame == {"type": "publish", "channel": CH, "data": {"v": 2}, "msgId": msg_id, "key": "x"}
    assert core.state == {"x": 2} and core.pending == 1
    core.on_message(stored(2, "x", 2, msg_id))
    assert core.pending == 0 and core.confirmed == {"x": 2}


def test_refusal_rolls_back_exactly() -> None:
    core = live_core()
    msg_id = core.set("x", 9, now=1.0)
    assert core.on_refused(msg_id) and core.state == {"x": 1}
    assert not core.on_refused(msg_id)


def _offline_change(core: SharedStateCore, key: str, value: Any) -> str:
    core.go_offline()
    msg_id = core.set(key, value, now=2.0)
    assert core.data_to_send() == [] and core.state[key] == value  # applied locally, not sent
    return msg_id


@pytest.mark.parametrize("kind", ["delta", "snapshot"])
def test_client_wins_sends_the_offline_change_after_theirs(kind: str) -> None:
    core = live_core("client-wins")
    mine = _offline_change(core, "x", "mine")
    theirs = stored(2, "x", "theirs", "other")
    core.sync_request()
    core.on_sync_response(delta([theirs], 2) if kind == "delta" else snapshot({"x": theirs}, 2))
    assert [f["msgId"] for f in core.data_to_send()] == [mine]
    assert core.state == {"x": "mine"} and core.conflicts == 1


@pytest.mark.parametrize("kind", ["delta", "snapshot"])
def test_server_wins_drops_the_conflicting_change_only(kind: str) -> None:
    core = live_core("server-wins")
    _offline_change(core, "x", "mine")
    free = core.set("y", "untouched", now=3.0)
    theirs = stored(2, "x", "theirs", "other")
    core.sync_request()
    core.on_sync_response(delta([theirs], 2) if kind == "delta" else snapshot({"x": theirs}, 2))
    assert [f["msgId"] for f in core.data_to_send()] == [free]  # y did not conflict
    assert core.state == {"x": "theirs", "y": "untouched"} and core.dropped == [("x", "mine")]


def test_merge_sends_the_merged_value() -> None:
    def merge(key: str, theirs: Any, ours: Any) -> Any:
        return sorted({*theirs, *ours})

    core = SharedStateCore(CH, merge, new_id=ids("me"))
    core.sync_request()
    core.on_sync_response(snapshot({"tags": stored(1, "tags", ["a"], "o1")}, 1))
    _offline_change(core, "tags", ["a", "mine"])
    core.sync_request()
    core.on_sync_response(delta([stored(2, "tags", ["a", "theirs"], "other")], 2))
    [frame] = core.data_to_send()
    assert frame["data"] == {"v": ["a", "mine", "theirs"]} and core.merged == 1
    assert core.state == {"tags": ["a", "mine", "theirs"]}


def test_no_conflict_when_nobody_else_changed_the_key() -> None:
    core = live_core("server-wins")
    sent = core.set("x", 2, now=1.0)
    core.data_to_send()
    mine = _offline_change(core, "x", 3)  # our own earlier change comes back in the delta
    core.sync_request()
    core.on_sync_response(delta([stored(2, "x", 2, sent)], 2))
    assert [f["msgId"] for f in core.data_to_send()] == [mine] and core.dropped == []
    assert core.state == {"x": 3}


def test_a_change_made_after_theirs_was_seen_is_no_conflict() -> None:
    core = live_core("server-wins")
    core.on_message(stored(2, "x", "theirs", "other"))
    mine = _offline_change(core, "x", "mine")  # made on version 2: it knew theirs
    core.sync_request()
    core.on_sync_response(delta([], 2))
    assert [f["msgId"] for f in core.data_to_send()] == [mine]


def test_bad_policy_and_key() -> None:
    with pytest.raises(ValueError, match="conflict must be"):
        SharedStateCore(CH, "last-wins")
    with pytest.raises(ValueError, match="non-empty string"):
        live_core().set("", 1, now=0.0)


def test_their_change_seen_live_before_the_sync_still_conflicts() -> None:
    """After a cut link comes back, the resumed subscription can deliver their change before
    our sync; the sync then has an empty delta, and the conflict must still be found."""
    core = live_core("server-wins")
    _offline_change(core, "x", "mine")
    core.on_message(stored(2, "x", "theirs", "other"))  # resumed stream, before our sync
    core.sync_request()
    core.on_sync_response(delta([], 2))
    assert core.data_to_send() == [] and core.dropped == [("x", "mine")]
    assert core.state == {"x": "theirs"} and core.conflicts == 1
