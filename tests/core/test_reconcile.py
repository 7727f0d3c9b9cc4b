"""Unit tests and hypothesis properties for rtwidgets.core.reconcile (pure logic, no I/O)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.core.reconcile import (
    ReconcileError,
    ReconciliationConfig,
    StateReconciler,
)

CH = "room"


# ---------------------------------------------------------------- helpers
def apply_kv(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Keyed last-write-wins: data None deletes the key (the gateway's keyed-state rule)."""
    new = dict(state)
    if event["data"] is None:
        new.pop(event["key"], None)
    else:
        new[event["key"]] = event["data"]
    return new


def apply_log(state: tuple[Any, ...], event: dict[str, Any]) -> tuple[Any, ...]:
    """Order-sensitive state: an append-only log, to check that ops are (re)applied in order."""
    return (*state, event["data"])


def ids(prefix: str = "op") -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def msg(offset: int, data: Any, *, key: str | None = None, msg_id: str | None = None, epoch: str = "e1"):
    frame: dict[str, Any] = {
        "type": "message",
        "id": f"evt{offset}",
        "eventId": f"evt{offset}",
        "channel": CH,
        "data": data,
        "senderId": "u",
        "clientId": "c",
        "timestamp": 1000 + offset,
        "offset": offset,
        "epoch": epoch,
    }
    if key is not None:
        frame["key"] = key
    if msg_id is not None:
        frame["msgId"] = msg_id
    return frame


def log_reconciler(**kw: Any) -> StateReconciler[tuple[Any, ...]]:
    return StateReconciler(CH, apply_log, (), new_id=ids(), **kw)


def kv_reconciler(**kw: Any) -> StateReconciler[dict[str, Any]]:
    return StateReconciler(CH, apply_kv, {}, new_id=ids(), **kw)


def delta(events: list[dict[str, Any]], version: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sync_response",
        "channel": CH,
        "syncType": "delta",
        "events": events,
        "latestEventId": f"evt{version}" if version else None,
        "version": version,
        "epoch": "e1",
        **extra,
    }


def snapshot(state: dict[str, dict[str, Any]], version: int, epoch: str = "e2", **extra: Any):
    return {
        "type": "sync_response",
        "channel": CH,
        "syncType": "snapshot",
        "events": [],
        "state": state,
        "latestEventId": f"evt{version}",
        "version": version,
        "epoch": epoch,
        **extra,
    }


# ---------------------------------------------------------------- config
def test_config_defaults_and_validation() -> None:
    cfg = ReconciliationConfig()
    assert (cfg.max_delta_events, cfg.conflict_resolution, cfg.on_conflict) == (1000, "client-wins", None)
    with pytest.raises(ValueError, match="max_delta_events"):
        ReconciliationConfig(max_delta_events=0)
    with pytest.raises(TypeError, match="max_delta_events"):
        ReconciliationConfig(max_delta_events=True)
    with pytest.raises(ValueError, match="conflict_resolution"):
        ReconciliationConfig(conflict_resolution="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_conflict"):
        ReconciliationConfig(conflict_resolution="merge")


def test_constructor_rejects_empty_channel() -> None:
    with pytest.raises(ValueError, match="channel"):
        StateReconciler("", apply_kv, {})


# ---------------------------------------------------------------- local operations
def test_perform_operation_applies_optimistically_and_returns_publish() -> None:
    seen: list[Any] = []
    r = kv_reconciler(on_state=seen.append)
    frame = r.perform_operation("v", 5.0, key="k")
    assert frame == {"type": "publish", "channel": CH, "data": "v", "msgId": "op1", "_id": "op1", "key": "k"}
    assert r.state == {"k": "v"}
    assert r.confirmed_state == {}
    assert r.pending_count == 1
    assert [(p.msg_id, p.operation, p.key, p.timestamp) for p in r.pending_operations] == [
        ("op1", "v", "k", 5.0)
    ]
    assert seen == [{"k": "v"}]


def test_perform_operation_without_key_omits_key_and_rejects_bad_key() -> None:
    r = log_reconciler()
    assert "key" not in r.perform_operation("a", 0.0)
    with pytest.raises(ValueError, match="key"):
        r.perform_operation("b", 0.0, key="")


def test_perform_operation_refuses_reused_id() -> None:
    r = StateReconciler(CH, apply_log, (), new_id=lambda: "same")
    r.perform_operation("a", 0.0)
    with pytest.raises(ValueError, match="fresh"):
        r.perform_operation("b", 0.0)
    assert r.state == ("a",)


def test_perform_operation_refused_by_apply_event_leaves_nothing_pending() -> None:
    def strict(state: int, event: dict[str, Any]) -> int:
        if not isinstance(event["data"], int):
            raise TypeError("operation must be an int")
        return state + event["data"]

    r = StateReconciler(CH, strict, 0, new_id=ids())
    with pytest.raises(TypeError, match="must be an int"):
        r.perform_operation("x", 0.0)
    with pytest.raises(ValueError, match="now"):
        r.perform_operation(1, float("nan"))
    assert (r.state, r.pending_count) == (0, 0)
    r.perform_operation(2, 0.0)
    assert r.state == 2


def test_optimistic_event_shape_passed_to_apply_event() -> None:
    events: list[dict[str, Any]] = []

    def record(state: int, event: dict[str, Any]) -> int:
        events.append(event)
        return state + 1

    r = StateReconciler(CH, record, 0, new_id=lambda: "x1")
    r.perform_operation({"n": 1}, 7.0, key="k")
    assert events == [
        {
            "type": "message",
            "id": "x1",
            "eventId": "x1",
            "msgId": "x1",
            "channel": CH,
            "data": {"n": 1},
            "timestamp": 7.0,
            "offset": None,
            "optimistic": True,
            "key": "k",
        }
    ]


def test_fail_operation_rolls_back_exactly_even_after_later_events() -> None:
    r = log_reconciler()
    r.perform_operation("mine1", 0.0)
    r.perform_operation("mine2", 0.0)
    assert r.on_message(msg(1, "theirs"))
    # Pending ops are rebased on top of the confirmed state, in performed order.
    assert r.state == ("theirs", "mine1", "mine2")
    assert r.fail_operation("op1") is True
    assert r.state == ("theirs", "mine2")
    assert r.confirmed_state == ("theirs",)
    assert r.fail_operation("op1") is False  # already gone: reported, not raised
    assert r.fail_operation("nope") is False


# ---------------------------------------------------------------- live server events
def test_server_event_from_others_is_applied_and_tracked() -> None:
    r = kv_reconciler()
    assert r.on_message(msg(1, "a", key="k"))
    assert (r.state, r.confirmed_state, r.version, r.last_event_id, r.epoch) == (
        {"k": "a"},
        {"k": "a"},
        1,
        "evt1",
        "e1",
    )


def test_own_event_confirms_pending_operation_with_server_version() -> None:
    r = log_reconciler()
    r.perform_operation("mine", 0.0)
    # The server's version of the op (here transformed) replaces the optimistic one.
    assert r.on_message(msg(1, "mine-as-stored", msg_id="op1"))
    assert r.pending_count == 0
    assert r.state == ("mine-as-stored",)
    assert r.confirmed_state == ("mine-as-stored",)


def test_duplicate_and_old_offsets_are_ignored() -> None:
    r = log_reconciler()
    assert r.on_message(msg(1, "a"))
    assert r.on_message(msg(1, "a")) is False
    assert r.state == ("a",)


def test_gap_is_not_applied_and_asks_for_sync() -> None:
    r = log_reconciler()
    _sync(r, delta([], 0))
    assert r.needs_sync is False
    assert r.on_message(msg(2, "b")) is False
    assert r.needs_sync is True
    assert r.state == ()
    assert r.version == 0


def test_epoch_change_is_not_applied_and_asks_for_sync() -> None:
    r = log_reconciler()
    r.on_message(msg(1, "a"))
    assert r.on_message(msg(2, "b", epoch="other")) is False
    assert r.needs_sync is True
    assert r.state == ("a",)


def test_handle_server_event_rejects_bad_frames() -> None:
    r = log_reconciler()
    with pytest.raises(ReconcileError, match="'message'"):
        r.on_message({"type": "ack", "id": 1})
    with pytest.raises(ReconcileError, match="'message'"):
        r.on_message("message")  # type: ignore[arg-type]
    with pytest.raises(ReconcileError, match="channel"):
        r.on_message({**msg(1, "a"), "channel": "elsewhere"})
    with pytest.raises(ReconcileError, match="offset"):
        r.on_message({**msg(1, "a"), "offset": None})
    with pytest.raises(ReconcileError, match="offset"):
        r.on_message({**msg(1, "a"), "offset": True})
    assert r.state == ()


def test_on_state_only_called_on_change() -> None:
    seen: list[Any] = []
    r = log_reconciler(on_state=seen.append)
    r.perform_operation("a", 0.0)
    r.on_message(msg(1, "a", msg_id="op1"))  # confirmation: visible state unchanged
    assert seen == [("a",)]


# ---------------------------------------------------------------- sync request / response
def _sync(r: StateReconciler[Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    r.sync_request()
    return r.on_sync_response(response)


def test_sync_request_shape() -> None:
    r = log_reconciler(config=ReconciliationConfig(max_delta_events=50))
    assert r.needs_sync is True
    first = r.sync_request()
    assert first == {"type": "sync", "channel": CH, "version": 0, "pendingOps": [], "maxEvents": 50}
    assert r.sync_in_flight
    r.on_message(msg(1, "a"))
    r.perform_operation("b", 0.0)
    assert r.sync_request(CH) == {
        "type": "sync",
        "channel": CH,
        "version": 1,
        "pendingOps": ["op1"],
        "maxEvents": 50,
        "lastEventId": "evt1",
        "epoch": "e1",
    }
    with pytest.raises(ValueError, match="not 'other'"):
        r.sync_request("other")


def test_delta_applies_sorted_confirms_own_and_resends_rest() -> None:
    r = log_reconciler()
    r.on_message(msg(1, "a"))
    r.perform_operation("m1", 0.0)
    r.perform_operation("m2", 0.0)
    r.sync_request()
    events = [msg(3, "m1", msg_id="op1"), msg(1, "a"), msg(2, "x")]  # out of order, one already seen
    resend = r.on_sync_response(delta(events, 3))
    assert r.confirmed_state == ("a", "x", "m1")
    assert r.state == ("a", "x", "m1", "m2")
    assert resend == [{"type": "publish", "channel": CH, "data": "m2", "msgId": "op2", "_id": "op2"}]
    assert (r.version, r.last_event_id, r.needs_sync, r.sync_in_flight) == (3, "evt3", False, False)


def test_confirmed_ops_are_dropped_from_pending() -> None:
    r = log_reconciler()
    r.on_message(msg(1, "m1", msg_id="zz"))
    r.perform_operation("m1", 0.0)
    resend = _sync(r, delta([], 1, confirmedOps=["op1"]))
    assert resend == []
    assert r.pending_count == 0
    assert r.state == ("m1",)


def test_live_events_during_sync_are_not_applied_twice() -> None:
    r = log_reconciler()
    r.sync_request()
    r.on_message(msg(1, "a"))
    r.on_message(msg(2, "b"))
    r.on_sync_response(delta([msg(1, "a")], 1))
    assert r.state == ("a", "b")
    assert r.version == 2


def test_delta_errors() -> None:
    r = log_reconciler()
    with pytest.raises(ReconcileError, match="no sync request in flight"):
        r.on_sync_response(delta([], 0))
    r.sync_request()
    with pytest.raises(ReconcileError, match="expected a 'sync_response'"):
        r.on_sync_response({"type": "message"})
    with pytest.raises(ReconcileError, match="expected a 'sync_response'"):
        r.on_sync_response([])  # type: ignore[arg-type]
    with pytest.raises(ReconcileError, match="channel"):
        r.on_sync_response({**delta([], 0), "channel": "x"})
    with pytest.raises(ReconcileError, match="syncType"):
        r.on_sync_response({**delta([], 0), "syncType": "full"})
    with pytest.raises(ReconcileError, match="version"):
        r.on_sync_response({**delta([], 0), "version": "3"})
    with pytest.raises(ReconcileError, match="epoch"):
        r.on_sync_response({**delta([], 0), "epoch": 5})
    with pytest.raises(ReconcileError, match="events"):
        r.on_sync_response({**delta([], 0), "events": [1]})
    with pytest.raises(ReconcileError, match="confirmedOps"):
        r.on_sync_response({**delta([], 0), "confirmedOps": [1]})
    with pytest.raises(ReconcileError, match=r"skips offsets 1\.\.1"):
        r.on_sync_response(delta([msg(2, "b")], 2))
    with pytest.raises(ReconcileError, match="claims version 4"):
        r.on_sync_response(delta([msg(1, "a"), msg(2, "b")], 4))


def test_delta_from_other_epoch_is_refused() -> None:
    r = log_reconciler()
    r.on_message(msg(1, "a"))
    r.sync_request()
    with pytest.raises(ReconcileError, match="epoch"):
        r.on_sync_response({**delta([], 5), "epoch": "e9"})


def _kv_with_pending() -> StateReconciler[dict[str, Any]]:
    r = kv_reconciler()
    r.on_message(msg(1, "old", key="a"))
    r.perform_operation("mine", 0.0, key="b")
    r.perform_operation("mine2", 0.0, key="c")
    r.sync_request()
    return r


SNAP = {"a": msg(4, "new", key="a", epoch="e2"), "z": msg(3, "zz", key="z", epoch="e2")}


def test_snapshot_client_wins_rebases_and_resends_pending() -> None:
    r = _kv_with_pending()
    resend = r.on_sync_response(snapshot(SNAP, 4, confirmedOps=["op2"]))
    assert r.confirmed_state == {"a": "new", "z": "zz"}
    assert r.state == {"a": "new", "z": "zz", "b": "mine"}
    assert [f["msgId"] for f in resend] == ["op1"]
    assert (r.version, r.epoch, r.last_event_id) == (4, "e2", "evt4")
    assert r.dropped() == []


def test_snapshot_server_wins_drops_pending() -> None:
    r = kv_reconciler(config=ReconciliationConfig(conflict_resolution="server-wins"))
    r.perform_operation("mine", 0.0, key="b")
    r.perform_operation("mine2", 0.0, key="c")
    resend = _sync(r, snapshot(SNAP, 4, confirmedOps=["op2"]))
    assert resend == []
    assert r.state == {"a": "new", "z": "zz"}
    assert r.pending_count == 0
    assert r.dropped() == ["op1"]
    assert r.dropped() == []


def test_snapshot_merge_uses_confirmed_client_state_then_rebases() -> None:
    calls: list[tuple[Any, Any]] = []

    def merge(server: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
        calls.append((server, client))
        return {**client, **server}

    r = kv_reconciler(config=ReconciliationConfig(conflict_resolution="merge", on_conflict=merge))
    r.on_message(msg(1, "keep", key="local"))
    r.perform_operation("mine", 0.0, key="b")
    resend = _sync(r, snapshot(SNAP, 4))
    assert calls == [({"a": "new", "z": "zz"}, {"local": "keep"})]
    assert r.confirmed_state == {"local": "keep", "a": "new", "z": "zz"}
    assert r.state == {"local": "keep", "a": "new", "z": "zz", "b": "mine"}
    assert [f["msgId"] for f in resend] == ["op1"]


def test_snapshot_events_confirm_own_ops() -> None:
    r = kv_reconciler()
    r.perform_operation("mine", 0.0, key="b")
    own = msg(2, "mine", key="b", msg_id="op1", epoch="e2")
    resend = _sync(r, {**snapshot({"b": own}, 2), "events": [own]})
    assert resend == []
    assert r.state == {"b": "mine"}


def test_stale_snapshot_in_same_epoch_keeps_newer_state() -> None:
    r = log_reconciler()
    for off in (1, 2, 3):
        r.on_message(msg(off, off))
    r.sync_request()
    r.on_sync_response(snapshot({}, 2, epoch="e1"))
    assert r.state == (1, 2, 3)
    assert r.version == 3
    assert r.needs_sync is False


def test_snapshot_custom_from_snapshot_and_bad_state() -> None:
    r = StateReconciler(CH, apply_kv, {}, from_snapshot=lambda frames: {"n": len(frames)})
    r.sync_request()
    r.on_sync_response(snapshot(SNAP, 4))
    assert r.state == {"n": 2}
    r.sync_request()
    with pytest.raises(ReconcileError, match="state"):
        r.on_sync_response(snapshot({"a": 1}, 5, epoch="e3"))  # type: ignore[dict-item]


def test_snapshot_default_fold_is_in_offset_order() -> None:
    r = log_reconciler()
    frames = {"x": msg(9, "late", key="x"), "y": msg(2, "early", key="y")}
    _sync(r, snapshot(frames, 9))
    assert r.state == ("early", "late")


# ---------------------------------------------------------------- property: convergence
class FakeServer:
    """The server modelled as an ordered event list with bounded history and keyed state."""

    def __init__(self, retention: int) -> None:
        self.retention = retention
        self.epoch_n = 1
        self.events: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}
        self.msg_ids: set[str] = set()

    @property
    def epoch(self) -> str:
        return f"e{self.epoch_n}"

    @property
    def offset(self) -> int:
        return self.events[-1]["offset"] if self.events else 0

    def values(self) -> dict[str, Any]:
        return {k: f["data"] for k, f in self.state.items()}

    def store(self, key: str, data: Any, msg_id: str | None = None) -> dict[str, Any] | None:
        if msg_id is not None:
            if msg_id in self.msg_ids:
                return None  # duplicate retry: stored once only
            self.msg_ids.add(msg_id)
        frame = msg(self.offset + 1, data, key=key, msg_id=msg_id, epoch=self.epoch)
        self.events.append(frame)
        if data is None:
            self.state.pop(key, None)
        else:
            self.state[key] = frame
        return frame

    def lose_history(self) -> None:
        self.epoch_n += 1
        self.events, self.state, self.msg_ids = [], {}, set()

    def sync(self, req: dict[str, Any]) -> dict[str, Any]:
        version = req["version"]
        retained = self.events[-self.retention :]
        first = retained[0]["offset"] if retained else self.offset + 1
        confirmed = [m for m in req["pendingOps"] if m in self.msg_ids]
        base = {"type": "sync_response", "channel": CH, "version": self.offset, "epoch": self.epoch}
        base["latestEventId"] = f"evt{self.offset}" if self.offset else None
        base["confirmedOps"] = confirmed
        after = [e for e in retained if e["offset"] > version]
        if req.get("epoch") == self.epoch and version >= first - 1 and len(after) <= req["maxEvents"]:
            return {**base, "syncType": "delta", "events": after}
        return {**base, "syncType": "snapshot", "events": retained, "state": dict(self.state)}


KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.one_of(st.none(), st.integers(0, 9))
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("remote"), KEYS, VALUES, st.booleans()),
        st.tuples(st.just("local"), KEYS, VALUES, st.sampled_from(["accept", "refuse", "lost", "no-echo"])),
        st.tuples(st.just("disconnect")),
        st.tuples(st.just("reconnect")),
        st.tuples(st.just("lose-history")),
    ),
    max_size=40,
)


def _deliver(r: StateReconciler[Any], srv: FakeServer, frame: dict[str, Any], rnd: random.Random) -> None:
    """Send one publish frame to the server with a random outcome."""
    outcome = rnd.choice(["accept", "accept", "refuse", "lost", "no-echo"])
    if outcome == "refuse" and frame["msgId"] not in srv.msg_ids:
        r.fail_operation(frame["msgId"])
    elif outcome in ("accept", "no-echo", "refuse"):
        stored = srv.store(frame["key"], frame["data"], frame["msgId"])
        if stored is not None and outcome != "no-echo":
            r.on_message(stored)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=ACTIONS,
    retention=st.integers(1, 6),
    max_events=st.integers(1, 6),
    policy=st.sampled_from(["client-wins", "server-wins", "merge"]),
    rnd=st.randoms(use_true_random=False),
)
def test_property_converges_to_server_state(
    actions: list[tuple[Any, ...]], retention: int, max_events: int, policy: str, rnd: random.Random
) -> None:
    cfg = ReconciliationConfig(
        max_delta_events=max_events,
        conflict_resolution=policy,  # type: ignore[arg-type]
        # A merge that keeps the server's view: convergence must still hold.
        on_conflict=(lambda server, client: server) if policy == "merge" else None,
    )
    r = StateReconciler(CH, apply_kv, {}, cfg, new_id=ids())
    srv = FakeServer(retention)
    online = True

    def reconnect() -> None:
        for frame in r.on_sync_response(srv.sync(r.sync_request())):
            _deliver(r, srv, frame, rnd)

    for action in actions:
        kind = action[0]
        if kind == "remote":
            _, key, value, delivered = action
            frame = srv.store(key, value)
            if online and delivered and frame is not None:
                r.on_message(frame)
        elif kind == "local":
            _, key, value, outcome = action
            frame = r.perform_operation(value, 0.0, key=key)
            assert r.state.get(key) == value or (value is None and key not in r.state)
            if online:
                if outcome == "refuse":
                    r.fail_operation(frame["msgId"])
                elif outcome in ("accept", "no-echo"):
                    stored = srv.store(key, value, frame["msgId"])
                    if stored is not None and outcome == "accept":
                        r.on_message(stored)
        elif kind == "disconnect":
            online = False
        elif kind == "reconnect":
            online = True
            reconnect()
        else:
            srv.lose_history()
        # Invariant: the confirmed state is always exactly the server's state at `version`.
        if r.epoch == srv.epoch:
            replay: dict[str, Any] = {}
            for event in srv.events:
                if event["offset"] <= r.version:
                    replay = apply_kv(replay, event)
            assert r.confirmed_state == replay

    # Come back online: one sync, the retries reach the server and are echoed, a final sync.
    for frame in r.on_sync_response(srv.sync(r.sync_request())):
        stored = srv.store(frame["key"], frame["data"], frame["msgId"])
        if stored is not None:
            r.on_message(stored)
    assert r.on_sync_response(srv.sync(r.sync_request())) == []
    assert r.pending_count == 0
    assert r.state == srv.values()
    assert r.confirmed_state == srv.values()
    assert r.version == srv.offset
    assert r.epoch == srv.epoch
    assert r.needs_sync is False


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(st.tuples(st.integers(0, 99), st.sampled_from(["confirm", "fail", "pending"])), max_size=15),
    remote=st.lists(st.integers(100, 199), max_size=5),
)
def test_property_rollback_is_exact_for_order_sensitive_state(
    ops: list[tuple[int, str]], remote: list[int]
) -> None:
    """Visible state == confirmed log + surviving pending ops, in performed order."""
    r = log_reconciler()
    frames = [r.perform_operation(value, 0.0) for value, _ in ops]
    offset = 0
    for value in remote:  # others' events interleave before our outcomes arrive
        offset += 1
        r.on_message(msg(offset, value))
    expected_confirmed = list(remote)
    for frame, (value, outcome) in zip(frames, ops, strict=True):
        if outcome == "confirm":
            offset += 1
            r.on_message(msg(offset, value, msg_id=frame["msgId"]))
            expected_confirmed.append(value)
        elif outcome == "fail":
            assert r.fail_operation(frame["msgId"])
    still = [value for value, outcome in ops if outcome == "pending"]
    assert r.confirmed_state == tuple(expected_confirmed)
    assert r.state == (*expected_confirmed, *still)
    assert r.pending_count == len(still)


def test_frames_pass_the_shared_protocol_validation() -> None:
    from rtwidgets.protocol import encode, parse_client_frame

    r = StateReconciler(CH, apply_kv, {})  # default uuid ids
    publish = r.perform_operation({"n": 1}, 0.0, key="k")
    assert parse_client_frame(encode(publish)) == publish
    r.on_message(msg(1, "a", key="j"))
    sync = r.sync_request()
    assert parse_client_frame(encode(sync)) == sync
