"""Unit tests for the sans-I/O connection core (no sockets, explicit clock, seeded RNG)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.connection import (
    AckReceived,
    CloseSocket,
    Connected,
    ConnectionCore,
    ConnectionState,
    Error,
    HeartbeatConfig,
    Message,
    OpenSocket,
    OpStatus,
    QueueOverflow,
    ReconnectConfig,
    RttMeasured,
    SendFailed,
    Sent,
    StateChanged,
)
from rtwidgets.protocol import NO_RECONNECT_CODES, CloseCode

S = ConnectionState


def make(**kw: Any) -> ConnectionCore:
    kw.setdefault("rng", random.Random(1234))
    return ConnectionCore(kw.pop("reconnect", None), kw.pop("heartbeat", None), **kw)


def of_type(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def states(events: list[Any]) -> list[ConnectionState]:
    return [e.current for e in events if isinstance(e, StateChanged)]


def open_connected(core: ConnectionCore, now: float = 0.0, client_id: str = "c1") -> list[Any]:
    """Drive connect -> open -> 'connected' frame; return all events."""
    core.connect(now)
    core.on_open(now)
    core.on_frame({"type": "connected", "clientId": client_id, "userId": "alice"}, now)
    return core.events()


# ----------------------------------------------------------------------------- transitions


def _to_disconnected(c: ConnectionCore) -> None:
    pass


def _to_connecting(c: ConnectionCore) -> None:
    c.connect(0.0)


def _to_connected(c: ConnectionCore) -> None:
    open_connected(c)


def _to_reconnecting(c: ConnectionCore) -> None:
    open_connected(c)
    c.on_close(1006, "abnormal", 1.0)


def _to_failed(c: ConnectionCore) -> None:
    c.reconnect = ReconnectConfig(max_attempts=0)
    open_connected(c)
    c.on_close(1006, "abnormal", 1.0)


SETUP = {
    S.DISCONNECTED: _to_disconnected,
    S.CONNECTING: _to_connecting,
    S.CONNECTED: _to_connected,
    S.RECONNECTING: _to_reconnecting,
    S.FAILED: _to_failed,
}


def _inp_connect(c: ConnectionCore) -> None:
    c.connect(2.0)


def _inp_disconnect(c: ConnectionCore) -> None:
    c.disconnect(2.0)


def _inp_connected_frame(c: ConnectionCore) -> None:
    c.on_open(2.0)
    c.on_frame({"type": "connected", "clientId": "x"}, 2.0)


def _inp_close_abnormal(c: ConnectionCore) -> None:
    c.on_close(1006, "abnormal", 2.0)


def _inp_close_auth(c: ConnectionCore) -> None:
    c.on_close(4001, "Authentication failed", 2.0)


def _inp_open_failed(c: ConnectionCore) -> None:
    c.on_open_failed("refused", 2.0)


def _inp_tick_far(c: ConnectionCore) -> None:
    c.tick(10_000.0)


INPUTS = {
    "connect": _inp_connect,
    "disconnect": _inp_disconnect,
    "connected_frame": _inp_connected_frame,
    "close_1006": _inp_close_abnormal,
    "close_4001": _inp_close_auth,
    "open_failed": _inp_open_failed,
    "tick_far": _inp_tick_far,
}

# (start state, input) -> end state. Reports about a socket that is not open are ignored, so
# e.g. a close in RECONNECTING changes nothing.
TRANSITIONS = {
    (S.DISCONNECTED, "connect"): S.CONNECTING,
    (S.DISCONNECTED, "disconnect"): S.DISCONNECTED,
    (S.DISCONNECTED, "connected_frame"): S.DISCONNECTED,
    (S.DISCONNECTED, "close_1006"): S.DISCONNECTED,
    (S.DISCONNECTED, "close_4001"): S.DISCONNECTED,
    (S.DISCONNECTED, "open_failed"): S.DISCONNECTED,
    (S.DISCONNECTED, "tick_far"): S.DISCONNECTED,
    (S.CONNECTING, "connect"): S.CONNECTING,
    (S.CONNECTING, "disconnect"): S.DISCONNECTED,
    (S.CONNECTING, "connected_frame"): S.CONNECTED,
    (S.CONNECTING, "close_1006"): S.RECONNECTING,
    (S.CONNECTING, "close_4001"): S.DISCONNECTED,
    (S.CONNECTING, "open_failed"): S.RECONNECTING,
    # open timeout (10 s) -> close 4000 -> reconnect scheduled
    (S.CONNECTING, "tick_far"): S.RECONNECTING,
    (S.CONNECTED, "connect"): S.CONNECTED,
    (S.CONNECTED, "disconnect"): S.DISCONNECTED,
    (S.CONNECTED, "connected_frame"): S.CONNECTED,
    (S.CONNECTED, "close_1006"): S.RECONNECTING,
    (S.CONNECTED, "close_4001"): S.DISCONNECTED,
    (S.CONNECTED, "open_failed"): S.CONNECTED,  # not opening: ignored
    # no pong after the ping -> heartbeat timeout -> reconnecting
    (S.CONNECTED, "tick_far"): S.RECONNECTING,
    (S.RECONNECTING, "connect"): S.CONNECTING,
    (S.RECONNECTING, "disconnect"): S.DISCONNECTED,
    (S.RECONNECTING, "connected_frame"): S.RECONNECTING,
    (S.RECONNECTING, "close_1006"): S.RECONNECTING,
    (S.RECONNECTING, "close_4001"): S.RECONNECTING,
    (S.RECONNECTING, "open_failed"): S.RECONNECTING,
    (S.RECONNECTING, "tick_far"): S.CONNECTING,
    (S.FAILED, "connect"): S.CONNECTING,
    (S.FAILED, "disconnect"): S.DISCONNECTED,
    (S.FAILED, "connected_frame"): S.FAILED,
    (S.FAILED, "close_1006"): S.FAILED,
    (S.FAILED, "close_4001"): S.FAILED,
    (S.FAILED, "open_failed"): S.FAILED,
    (S.FAILED, "tick_far"): S.FAILED,
}


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in SETUP for i in INPUTS}


@pytest.mark.parametrize(("start", "inp"), sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1])))
def test_transition(start: ConnectionState, inp: str) -> None:
    core = make(heartbeat=HeartbeatConfig(interval=5.0, timeout=1.0))
    SETUP[start](core)
    assert core.state is start
    core.events()
    INPUTS[inp](core)
    if inp == "tick_far" and start is S.CONNECTED:
        core.tick(10_001.0)  # first tick sends the ping, the next one sees no pong
    assert core.state is TRANSITIONS[(start, inp)]


def test_connected_only_after_connected_frame() -> None:
    core = make()
    core.connect(0.0)
    events = core.events()
    assert states(events) == [S.CONNECTING]
    assert of_type(events, OpenSocket) == [OpenSocket(1, 0)]
    core.on_open(0.1)
    assert core.state is S.CONNECTING  # socket open, but the gateway has not accepted us yet
    core.on_frame({"type": "connected", "clientId": "abc", "userId": "alice"}, 0.2)
    events = core.events()
    assert states(events) == [S.CONNECTED]
    (connected,) = of_type(events, Connected)
    assert (connected.client_id, connected.user_id, connected.resumed) == ("abc", "alice", False)
    assert core.stats(0.3).client_id == "abc"


# ----------------------------------------------------------------------------- backoff


def test_backoff_formula_with_seeded_rng() -> None:
    cfg = ReconnectConfig(max_attempts=8, base_delay=1.0, max_delay=30.0, jitter_factor=0.3)
    core = make(reconnect=cfg, rng=random.Random(7))
    expected_rng = random.Random(7)
    open_connected(core)
    now = 0.0
    observed: list[float] = []
    core.on_close(1006, "lost", now)
    for attempt in range(cfg.max_attempts):
        retry_at = core.stats(now).next_retry_at
        assert retry_at is not None
        delay = retry_at - now
        exponential = min(1.0 * 2**attempt, 30.0)
        expected = exponential * (1 + (expected_rng.random() - 0.5) * 0.3)
        assert delay == pytest.approx(expected)
        assert exponential * 0.85 <= delay <= exponential * 1.15
        observed.append(delay)
        assert core.next_deadline() == pytest.approx(retry_at)
        now = retry_at
        core.tick(now)
        assert core.state is S.CONNECTING
        assert core.stats(now).attempts == attempt + 1
        core.on_open_failed("refused", now)
        core.events()
    # The 9th loss exhausts the 8 attempts.
    assert core.state is S.FAILED
    assert observed[-1] <= 30.0 * 1.15


def test_same_seed_same_delays() -> None:
    def delays(seed: int) -> list[float]:
        core = make(rng=random.Random(seed))
        open_connected(core)
        out = []
        now = 0.0
        core.on_close(1006, "x", now)
        for _ in range(5):
            retry_at = core.stats(now).next_retry_at
            assert retry_at is not None
            out.append(retry_at - now)
            now = retry_at
            core.tick(now)
            core.on_open_failed("x", now)
        return out

    assert delays(3) == delays(3)
    assert delays(3) != delays(4)


@given(
    attempt=st.integers(0, 60),
    rnd=st.floats(0, 1, exclude_max=True),
    base=st.floats(0.01, 10),
    cap=st.floats(0.01, 100),
    jitter=st.floats(0, 1),
)
@settings(max_examples=200)
def test_delay_bounds(attempt: int, rnd: float, base: float, cap: float, jitter: float) -> None:
    cfg = ReconnectConfig(base_delay=base, max_delay=cap, jitter_factor=jitter)
    d = cfg.delay(attempt, rnd)
    exponential = min(base * 2.0**attempt, cap)
    assert exponential * (1 - jitter / 2) - 1e-9 <= d <= exponential * (1 + jitter / 2) + 1e-9


def test_attempts_reset_after_successful_reconnect() -> None:
    core = make()
    open_connected(core)
    core.on_close(1006, "lost", 1.0)
    t = core.next_deadline()
    assert t is not None
    core.tick(t)
    core.on_open_failed("refused", t)
    t2 = core.next_deadline()
    assert t2 is not None
    core.tick(t2)
    assert core.stats(t2).attempts == 2
    core.on_open(t2)
    core.on_frame({"type": "connected", "clientId": "c2"}, t2)
    events = core.events()
    assert core.state is S.CONNECTED
    assert of_type(events, Connected)[0].resumed is True
    stats = core.stats(t2)
    assert (stats.attempts, stats.reconnects, stats.client_id) == (0, 1, "c2")


def test_max_attempts_reached_fails_and_reports() -> None:
    core = make(reconnect=ReconnectConfig(max_attempts=2))
    open_connected(core)
    now = 0.0
    core.on_close(1006, "lost", now)
    for _ in range(2):
        t = core.next_deadline()
        assert t is not None
        core.tick(t)
        now = t
        core.on_open_failed("refused", now)
    events = core.events()
    assert core.state is S.FAILED
    assert [e.code for e in of_type(events, Error)][-1] == "max_attempts"
    assert core.next_deadline() is None  # nothing scheduled: terminal until connect()
    core.connect(now)
    assert core.state is S.CONNECTING
    assert core.stats(now).attempts == 0


def test_reconnect_disabled_goes_disconnected() -> None:
    core = make(reconnect=ReconnectConfig(enabled=False))
    open_connected(core)
    core.on_close(1006, "lost", 1.0)
    assert core.state is S.DISCONNECTED
    assert core.next_deadline() is None


# ----------------------------------------------------------------------------- close codes


@pytest.mark.parametrize("code", sorted(int(c) for c in NO_RECONNECT_CODES))
def test_no_reconnect_codes(code: int) -> None:
    core = make()
    open_connected(core)
    core.on_close(code, "bye", 1.0)
    events = core.events()
    assert core.state is S.DISCONNECTED
    assert core.next_deadline() is None
    errors = of_type(events, Error)
    assert errors and errors[-1].close_code == code
    if code == CloseCode.AUTH_FAILED:
        assert errors[-1].code == "auth_failed"
        assert "authentication failed" in errors[-1].message


@pytest.mark.parametrize("code", [1006, 1011, 4000, 4002, 4008, 4009, None])
def test_reconnect_codes(code: int | None) -> None:
    core = make()
    open_connected(core)
    core.on_close(code, "lost", 1.0)
    assert core.state is S.RECONNECTING
    assert core.stats(1.0).last_close_code == code


def test_auth_refused_at_handshake_does_not_retry() -> None:
    core = make()
    core.connect(0.0)
    core.on_open_failed("HTTP 401", 0.1, close_code=4001)
    events = core.events()
    assert core.state is S.DISCONNECTED
    assert of_type(events, Error)[-1].code == "auth_failed"


def test_initial_open_failure_is_retried() -> None:
    core = make()
    core.connect(0.0)
    core.on_open_failed("connection refused", 0.1)
    events = core.events()
    assert core.state is S.RECONNECTING
    assert of_type(events, Error)[0].code == "open_failed"


# ----------------------------------------------------------------------------- heartbeat


def test_heartbeat_ping_schedule_and_rtt() -> None:
    core = make(heartbeat=HeartbeatConfig(interval=30.0, timeout=10.0))
    open_connected(core, now=100.0)
    core.data_to_send()
    assert core.next_deadline() == pytest.approx(130.0)
    core.tick(129.9)
    assert core.data_to_send() == []
    core.tick(130.0)
    (ping,) = core.data_to_send()
    assert ping["type"] == "ping"
    assert ping["t"] == pytest.approx(130_000.0)
    assert core.next_deadline() == pytest.approx(140.0)  # pong deadline
    core.on_frame({"type": "pong", "t": ping["t"]}, 130.25)
    assert core.stats(130.25).rtt == pytest.approx(0.25)
    (measured,) = core.events()
    assert isinstance(measured, RttMeasured) and measured.rtt == pytest.approx(0.25)
    assert core.next_deadline() == pytest.approx(160.0)  # next ping
    core.tick(145.0)
    assert core.state is S.CONNECTED


def test_heartbeat_timeout_closes_4000_and_reconnects() -> None:
    core = make(heartbeat=HeartbeatConfig(interval=30.0, timeout=10.0))
    open_connected(core, now=0.0)
    gen = core.generation
    core.tick(30.0)
    core.data_to_send()
    core.tick(40.0)
    events = core.events()
    assert CloseSocket(gen, 4000, "heartbeat timeout") in events
    assert of_type(events, Error)[0].code == "heartbeat_timeout"
    assert core.state is S.RECONNECTING
    # The I/O layer's late report of that close is ignored (no double reconnect schedule).
    retry_at = core.stats(40.0).next_retry_at
    core.on_close(4000, "heartbeat timeout", 40.5, generation=gen)
    assert core.stats(40.5).next_retry_at == retry_at
    assert core.events() == []


def test_any_frame_resets_heartbeat_timeout() -> None:
    core = make(heartbeat=HeartbeatConfig(interval=30.0, timeout=10.0))
    open_connected(core, now=0.0)
    core.tick(30.0)
    core.on_frame({"type": "message", "channel": "a", "data": 1}, 35.0)
    core.tick(41.0)
    assert core.state is S.CONNECTED


def test_open_timeout() -> None:
    core = make(open_timeout=10.0)
    core.connect(0.0)
    assert core.next_deadline() == pytest.approx(10.0)
    core.on_open(1.0)  # socket open but no 'connected' frame
    core.tick(10.0)
    events = core.events()
    assert of_type(events, CloseSocket)[0].code == 4000
    assert of_type(events, Error)[0].code == "open_timeout"
    assert core.state is S.RECONNECTING


def test_stale_generation_ignored() -> None:
    core = make()
    core.connect(0.0)
    old = core.generation
    core.on_open_failed("x", 0.0, generation=old)
    t = core.next_deadline()
    assert t is not None
    core.tick(t)
    assert core.generation == old + 1
    core.on_open(t, generation=old)  # the old attempt's late success
    core.on_frame({"type": "connected", "clientId": "zombie"}, t, generation=old)
    assert core.state is S.CONNECTING


# ----------------------------------------------------------------------------- sending


def test_send_while_connected_without_ack() -> None:
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0)
    assert core.data_to_send() == [{"type": "publish", "channel": "a", "data": 1}]
    assert core.events() == [Sent(op)]
    assert op.status is OpStatus.DONE


def test_sent_only_when_the_io_layer_takes_the_frame() -> None:
    """``Sent`` means "handed to the I/O layer": nothing is reported before data_to_send()."""
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0)
    assert core.events() == []
    assert op.status is OpStatus.INFLIGHT
    assert core.stats(1.0).frames_sent == 0
    assert core.data_to_send() == [{"type": "publish", "channel": "a", "data": 1}]
    assert core.events() == [Sent(op)]
    assert core.stats(1.0).frames_sent == 1


def test_frames_never_taken_fail_when_the_socket_closes() -> None:
    """An I/O layer with no socket leaves frames in the core; the close reports every op."""
    core = make(heartbeat=HeartbeatConfig(interval=1.0, timeout=10.0))
    open_connected(core)
    core.tick(1.0)  # a ping, never taken
    plain = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0)
    once = core.send({"type": "publish", "channel": "a", "data": 2}, now=1.0, ack=True)
    again = core.send(
        {"type": "publish", "channel": "a", "data": 3, "msgId": "m"}, now=1.0, ack=True, retry=True
    )
    core.on_close(1006, "gone", 1.5)
    failed = of_type(core.events(), SendFailed)
    assert {(e.op, e.code) for e in failed} == {(plain, "connection_closed"), (once, "connection_closed")}
    assert plain.status is OpStatus.FAILED
    assert again.status is OpStatus.QUEUED
    # The next connection carries only the requeued retryable op: no stale ping, no failed frame.
    core.tick(core.next_deadline() or 0.0)
    core.on_open(5.0)
    core.on_frame({"type": "connected", "clientId": "c2"}, 5.0)
    frames = core.data_to_send()
    assert [f.get("data") for f in frames] == [3]
    assert frames[0]["_id"] == again.wire_id


def test_frames_never_taken_fail_on_disconnect() -> None:
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0)
    core.disconnect(1.0)
    (failed,) = of_type(core.events(), SendFailed)
    assert failed.op is op and failed.code == "connection_closed"
    assert core.data_to_send() == []


def test_cancel_a_frame_not_yet_taken() -> None:
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0)
    assert core.cancel(op) is True
    assert op.status is OpStatus.CANCELLED
    assert core.data_to_send() == []
    assert core.events() == []
    assert core.cancel(op) is False


def test_send_with_ack_and_ack_fields() -> None:
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0, ack=True)
    (frame,) = core.data_to_send()
    assert frame["_id"] == op.wire_id
    assert core.stats(1.0).pending_acks == 1
    ack = {"type": "ack", "id": op.wire_id, "eventId": "e1", "offset": 1}
    core.on_frame(ack, 1.1)
    assert core.events() == [AckReceived(op, ack)]
    assert op.status is OpStatus.DONE
    assert core.stats(1.1).pending_acks == 0


def test_ack_timeout() -> None:
    core = make(ack_timeout=5.0)
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0, ack=True)
    assert core.next_deadline() == pytest.approx(6.0)
    core.tick(5.9)
    assert core.events() == []
    core.tick(6.0)
    (failed,) = core.events()
    assert isinstance(failed, SendFailed)
    assert (failed.op, failed.code) == (op, "ack_timeout")
    assert "ack timeout" in failed.reason
    # A late ack is counted, not delivered twice.
    core.on_frame({"type": "ack", "id": op.wire_id}, 7.0)
    assert core.events() == []
    assert core.stats(7.0).late_acks == 1
    assert core.stats(7.0).ack_timeouts == 1


def test_error_frame_fails_matching_op() -> None:
    core = make()
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0, ack=True)
    core.on_frame({"type": "error", "id": op.wire_id, "code": "forbidden", "reason": "nope"}, 1.1)
    (failed,) = core.events()
    assert isinstance(failed, SendFailed)
    assert (failed.code, failed.reason) == ("forbidden", "nope")
    assert op.status is OpStatus.FAILED


def test_error_frame_without_id_is_reported() -> None:
    core = make()
    open_connected(core)
    frame = {"type": "error", "code": "bad_json", "reason": "frame is not valid JSON"}
    core.on_frame(frame, 1.0)
    assert core.events() == [Error("bad_json", "frame is not valid JSON", frame)]


def test_bad_frame_is_reported() -> None:
    core = make()
    open_connected(core)
    core.on_frame(["not", "an", "object"], 1.0)
    (err,) = core.events()
    assert isinstance(err, Error) and err.code == "bad_frame"


def test_other_frames_are_messages() -> None:
    core = make()
    open_connected(core)
    frame = {"type": "message", "channel": "a", "data": 1, "offset": 1}
    core.on_frame(frame, 1.0)
    assert core.events() == [Message(frame)]


def test_send_rejects_non_frames() -> None:
    core = make()
    with pytest.raises(ValueError, match="string 'type'"):
        core.send({"channel": "a"}, now=0.0)


def test_queue_while_offline_then_flush_in_order_priority_first() -> None:
    core = make()
    a = core.send({"type": "publish", "channel": "a", "data": 1}, now=0.0, ack=True)
    b = core.send({"type": "publish", "channel": "a", "data": 2}, now=0.0)
    sub = core.send({"type": "subscribe", "channel": "a"}, now=0.0, ack=True, priority=True)
    assert core.queued() == 3
    assert core.data_to_send() == []
    open_connected(core)
    frames = core.data_to_send()
    assert [f["type"] for f in frames] == ["subscribe", "publish", "publish"]
    assert [f["data"] for f in frames[1:]] == [1, 2]
    assert a.status is OpStatus.INFLIGHT and sub.status is OpStatus.INFLIGHT
    assert b.status is OpStatus.DONE


def test_queue_overflow_is_reported_and_op_fails() -> None:
    core = make(queue_limit=2)
    core.send({"type": "publish", "channel": "a", "data": 1}, now=0.0)
    core.send({"type": "publish", "channel": "a", "data": 2}, now=0.0)
    op = core.send({"type": "publish", "channel": "a", "data": 3}, now=0.0)
    events = core.events()
    assert QueueOverflow(op, 2) in events
    (failed,) = of_type(events, SendFailed)
    assert (failed.op, failed.code) == (op, "queue_full")
    assert op.status is OpStatus.FAILED
    # Priority ops (resubscriptions) are never refused.
    core.send({"type": "subscribe", "channel": "a"}, now=0.0, priority=True)
    assert core.queued() == 3
    assert core.stats(0.0).queue_overflows == 1


def test_pending_acks_fail_on_close_unless_retry() -> None:
    core = make()
    open_connected(core)
    plain = core.send({"type": "presence_update", "channel": "a", "data": {}}, now=1.0, ack=True)
    retried = core.send(
        {"type": "publish", "channel": "a", "data": 1, "msgId": "m1"}, now=1.0, ack=True, retry=True
    )
    later = core.send({"type": "publish", "channel": "a", "data": 2}, now=1.0, ack=True)
    core.data_to_send()
    first_wire = retried.wire_id
    core.on_close(1006, "lost", 2.0)
    events = core.events()
    failed = {e.op.op_id: e.code for e in of_type(events, SendFailed)}
    assert failed == {plain.op_id: "connection_closed", later.op_id: "connection_closed"}
    assert retried.status is OpStatus.QUEUED
    queued_after = core.send({"type": "publish", "channel": "a", "data": 3}, now=2.0)
    t = core.next_deadline()
    assert t is not None
    core.tick(t)
    core.on_open(t)
    core.on_frame({"type": "connected", "clientId": "c2"}, t)
    frames = core.data_to_send()
    # The retried publish goes out again (new _id, same msgId) before what was queued later.
    assert [f.get("msgId") for f in frames] == ["m1", None]
    assert frames[0]["_id"] != first_wire
    assert retried.attempts == 2
    assert queued_after.status is OpStatus.DONE


def test_disconnect_fails_everything() -> None:
    core = make()
    open_connected(core)
    gen = core.generation
    inflight = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0, ack=True, retry=True)
    core.on_close(1006, "lost", 1.5)
    queued = core.send({"type": "publish", "channel": "a", "data": 2}, now=2.0, ack=True)
    core.events()
    core.disconnect(3.0)
    events = core.events()
    assert {e.op.op_id for e in of_type(events, SendFailed)} == {inflight.op_id, queued.op_id}
    assert core.state is S.DISCONNECTED
    assert core.next_deadline() is None
    assert not of_type(events, CloseSocket)  # socket gen was already gone
    core2 = make()
    open_connected(core2)
    core2.disconnect(1.0)
    assert CloseSocket(core2.generation, 1000, "client disconnect") in core2.events()
    assert gen == 1


def test_cancel_queued_and_inflight() -> None:
    core = make()
    q = core.send({"type": "subscribe", "channel": "a"}, now=0.0, ack=True, priority=True)
    assert core.cancel(q) is True
    assert core.queued() == 0
    open_connected(core)
    op = core.send({"type": "publish", "channel": "a", "data": 1}, now=1.0, ack=True)
    assert core.cancel(op) is True
    core.on_frame({"type": "ack", "id": op.wire_id}, 1.1)
    assert not of_type(core.events(), AckReceived)
    assert core.cancel(op) is False


# ----------------------------------------------------------------------------- property


@given(
    st.lists(
        st.sampled_from(
            ["send", "send_ack", "send_retry", "close", "tick", "connect", "ack", "disconnect", "hold"]
        ),
        max_size=40,
    )
)
@settings(max_examples=150, deadline=None)
def test_every_op_completes_exactly_once(actions: list[str]) -> None:
    """Whatever happens, no op is reported twice and none is left hanging after disconnect()."""
    core = make(queue_limit=5, ack_timeout=1.0)
    now = 0.0
    ops = []
    completions: dict[int, int] = {}

    def count(events: list[Any]) -> None:
        for e in events:
            if isinstance(e, (AckReceived, SendFailed, Sent)):
                completions[e.op.op_id] = completions.get(e.op.op_id, 0) + 1

    def collect(take: bool) -> None:
        count(core.events())
        if take:  # "hold": an I/O layer with no socket leaves the frames in the core
            core.data_to_send()
            count(core.events())

    for action in actions:
        now += 0.7
        if action.startswith("send"):
            ops.append(
                core.send(
                    {"type": "publish", "channel": "a", "data": 1},
                    now=now,
                    ack=action != "send",
                    retry=action == "send_retry",
                )
            )
        elif action == "close":
            core.on_close(1006, "x", now)
        elif action == "tick":
            core.tick(now)
            if core.state is S.CONNECTING:
                core.on_open(now)
                core.on_frame({"type": "connected", "clientId": "c"}, now)
        elif action == "connect":
            core.connect(now)
            core.on_open(now)
            core.on_frame({"type": "connected", "clientId": "c"}, now)
        elif action == "ack":
            for op in ops:
                if op.status is OpStatus.INFLIGHT:
                    core.on_frame({"type": "ack", "id": op.wire_id}, now)
                    break
        elif action == "disconnect":
            core.disconnect(now)
        collect(take=action != "hold")
    core.disconnect(now + 1)
    collect(take=True)
    assert all(n == 1 for n in completions.values()), completions
    assert {op.op_id for op in ops} == set(completions)
