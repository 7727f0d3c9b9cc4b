"""Sans-I/O connection state machine: the logic of the design's ``RealtimeConnection``.

The design is summarised in docs/design.md#connection-state-machine.

Rules of this module:

* No I/O, no asyncio, no clock, no global RNG: every input carries ``now`` (seconds, any
  monotonic clock) and randomness comes from an injected ``random.Random``.
* The I/O layer feeds inputs (:meth:`ConnectionCore.connect`, :meth:`~ConnectionCore.on_open`,
  :meth:`~ConnectionCore.on_frame`, :meth:`~ConnectionCore.on_close`, :meth:`~ConnectionCore.tick`,
  ...) and after each input drains :meth:`~ConnectionCore.events` (frozen dataclasses, in order)
  and, while it has an open socket to write to, :meth:`~ConnectionCore.data_to_send` (frames to
  write, in order), until both are empty; then it sleeps until
  :meth:`~ConnectionCore.next_deadline` or the next input. ``data_to_send`` itself produces
  ``Sent`` events, so drain :meth:`~ConnectionCore.events` again after it.
* An I/O layer with no socket to write to leaves the frames in the core (it never takes frames
  it cannot write): the socket's loss, which it must report (``on_close``), fails them.
* Nothing is lost silently: every :class:`Op` ends in exactly one of ``AckReceived``, ``Sent``
  or ``SendFailed`` (or the caller cancelled it).
* Delivery guarantees: an ``ack=True`` op ends in ``AckReceived`` only when the gateway confirmed
  it. An ``ack=False`` op is **at-most-once**: ``Sent`` means the frame was handed to the I/O
  layer (returned by ``data_to_send``), not that it reached the gateway; a frame handed over but
  not yet written when the socket dies is gone. A frame the I/O layer never took ends in
  ``SendFailed`` with ``connection_closed``.

Lifecycle (states are :class:`ConnectionState`)::

    disconnected --connect--> connecting --'connected' frame--> connected
    connecting --open failed / closed--> reconnecting --backoff timer--> connecting
    connected --closed (code not in NO_RECONNECT_CODES)--> reconnecting
    reconnecting --attempts == max_attempts--> failed (terminal until connect())
    any --disconnect() / close in NO_RECONNECT_CODES--> disconnected

The connection counts as *connected* when the gateway's ``connected`` frame arrives (not
when the socket opens), so a gateway that accepts the socket then closes it with 4001 never
sees queued frames.
"""

from __future__ import annotations

import random
from collections import deque
from enum import Enum
from typing import Any

# The vocabulary (states, configs, operations, events) is defined there and re-exported here.
from rtwidgets.core.connection_events import (
    AckReceived,
    CloseSocket,
    Connected,
    ConnectionEvent,
    ConnectionState,
    ConnectionStats,
    Error,
    HeartbeatConfig,
    Message,
    OpenSocket,
    Operation,
    OpStatus,
    QueueOverflow,
    ReconnectConfig,
    RttMeasured,
    SendFailed,
    Sent,
    StateChanged,
)
from rtwidgets.protocol import NO_RECONNECT_CODES, CloseCode

__all__ = [
    "AckReceived",
    "CloseSocket",
    "Connected",
    "ConnectionCore",
    "ConnectionEvent",
    "ConnectionState",
    "ConnectionStats",
    "Error",
    "HeartbeatConfig",
    "Message",
    "OpStatus",
    "OpenSocket",
    "Operation",
    "QueueOverflow",
    "ReconnectConfig",
    "RttMeasured",
    "SendFailed",
    "Sent",
    "StateChanged",
]


class _Socket(Enum):
    NONE = 0
    OPENING = 1  # OpenSocket emitted, no on_open yet
    OPEN = 2  # open, waiting for or past the 'connected' frame


_CONNECTION_CLOSED = "connection_closed"


class ConnectionCore:
    """The connection logic, driven by an I/O layer (see the module docstring).

    ``queue_limit`` bounds frames queued while offline (priority ops are exempt: they are the
    client's own resubscriptions, bounded by the number of channels). ``ack_timeout`` starts when
    a frame is written, not while it waits offline. ``open_timeout`` covers socket open plus the
    ``connected`` frame.
    """

    def __init__(
        self,
        reconnect: ReconnectConfig | None = None,
        heartbeat: HeartbeatConfig | None = None,
        *,
        queue_limit: int = 1000,
        ack_timeout: float = 5.0,
        open_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if queue_limit < 0:
            raise ValueError("queue_limit must be >= 0")
        if ack_timeout <= 0 or open_timeout <= 0:
            raise ValueError("ack_timeout and open_timeout must be > 0")
        self.reconnect = reconnect or ReconnectConfig()
        self.heartbeat = heartbeat or HeartbeatConfig()
        self.queue_limit = queue_limit
        self.ack_timeout = ack_timeout
        self.open_timeout = open_timeout
        self._rng = rng or random.Random()

        self._state = ConnectionState.DISCONNECTED
        self._socket = _Socket.NONE
        self._generation = 0
        self._attempts = 0
        self._ever_connected = False
        self._retry_at: float | None = None
        self._open_deadline: float | None = None
        self._next_ping: float | None = None
        self._pong_deadline: float | None = None

        self._priority: deque[Operation] = deque()
        self._queue: deque[Operation] = deque()
        # Insertion order == transmission order, and every entry has the same timeout, so the
        # first entry always holds the earliest ack deadline.
        self._pending: dict[int, Operation] = {}
        self._next_op_id = 0
        self._next_wire_id = 0

        # Frames transmitted but not yet taken by data_to_send(), with the op they carry (None for
        # pings). Only non-empty while connected: the socket's loss fails or requeues the ops.
        self._out: list[tuple[dict[str, Any], Operation | None]] = []
        self._events: list[ConnectionEvent] = []

        self.client_id: str | None = None
        self.user_id: str | None = None
        self._rtt: float | None = None
        self._connected_since: float | None = None
        self._frames_received = 0
        self._frames_sent = 0
        self._reconnects = 0
        self._ack_timeouts = 0
        self._queue_overflows = 0
        self._late_acks = 0
        self._last_close: tuple[int | None, str | None] = (None, None)

    # ------------------------------------------------------------------ outputs

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def generation(self) -> int:
        """The current socket generation (the one the last ``OpenSocket`` named)."""
        return self._generation

    def events(self) -> list[ConnectionEvent]:
        """Return and clear the events produced since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[dict[str, Any]]:
        """Return and clear the frames to write, in order; the caller takes responsibility for them.

        Call it only while a socket is open to write them to: frames left here are failed
        (``SendFailed``, ``connection_closed``) or, for acked ops, handled like any in-flight op
        when the socket's loss is reported. Each ``ack=False`` op handed out ends in ``Sent``
        (drain :meth:`events` afterwards).
        """
        out, self._out = self._out, []
        frames = []
        for frame, op in out:
            frames.append(frame)
            if op is not None and not op.ack:
                op.status = OpStatus.DONE
                self._events.append(Sent(op))
        self._frames_sent += len(frames)
        return frames

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has work to do, or None."""
        candidates = [self._retry_at, self._open_deadline]
        if self._state is ConnectionState.CONNECTED:
            candidates.append(self._pong_deadline if self._pong_deadline is not None else self._next_ping)
        if self._pending:
            candidates.append(next(iter(self._pending.values())).deadline)
        times = [t for t in candidates if t is not None]
        return min(times) if times else None

    def queued(self) -> int:
        return len(self._priority) + len(self._queue)

    def stats(self, now: float) -> ConnectionStats:
        return ConnectionStats(
            state=self._state,
            client_id=self.client_id,
            user_id=self.user_id,
            attempts=self._attempts,
            rtt=self._rtt,
            queue_size=self.queued(),
            pending_acks=len(self._pending),
            next_retry_at=self._retry_at,
            next_retry_in=None if self._retry_at is None else max(0.0, self._retry_at - now),
            connected_since=self._connected_since,
            frames_received=self._frames_received,
            frames_sent=self._frames_sent,
            reconnects=self._reconnects,
            ack_timeouts=self._ack_timeouts,
            queue_overflows=self._queue_overflows,
            late_acks=self._late_acks,
            last_close_code=self._last_close[0],
            last_close_reason=self._last_close[1],
        )

    # ------------------------------------------------------------------ inputs

    def connect(self, now: float) -> None:
        """Start connecting (no-op while connecting or connected; skips a pending backoff)."""
        if self._state in (ConnectionState.CONNECTED, ConnectionState.CONNECTING):
            return
        if self._state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
            self._attempts = 0
        self._retry_at = None
        self._open(now)

    def disconnect(self, now: float, reason: str = "client disconnect") -> None:
        """Close on purpose (code 1000): no reconnect; every queued and pending op fails."""
        if self._socket is not _Socket.NONE:
            self._events.append(CloseSocket(self._generation, int(CloseCode.NORMAL), reason))
            self._socket = _Socket.NONE
        self._stop_timers()
        self._retry_at = None
        self._drop_unsent()
        self._fail_pending(include_retry=True)
        self._terminal(ConnectionState.DISCONNECTED, reason)

    def on_open(self, now: float, *, generation: int | None = None) -> None:
        """The socket opened (authentication passed at the HTTP level)."""
        if self._stale(generation) or self._socket is not _Socket.OPENING:
            return
        self._socket = _Socket.OPEN

    def on_open_failed(
        self, error: str, now: float, *, close_code: int | None = None, generation: int | None = None
    ) -> None:
        """Opening failed. Pass ``close_code=4001`` when the handshake was refused for auth
        (HTTP 401/403) so the core does not retry."""
        if self._stale(generation) or self._socket is not _Socket.OPENING:
            return  # an open socket reports its end through on_close
        self._socket = _Socket.NONE
        self._last_close = (close_code, error)
        if close_code is None or close_code not in NO_RECONNECT_CODES:
            self._events.append(Error("open_failed", f"could not open the connection: {error}"))
        self._after_loss(now, close_code, error)

    def on_frame(self, frame: Any, now: float, *, generation: int | None = None) -> None:
        """One decoded server frame."""
        if self._stale(generation):
            return
        self._frames_received += 1
        # Any traffic proves the link is alive (as in the design: reset the heartbeat timeout).
        self._pong_deadline = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._events.append(Error("bad_frame", "server frame is not an object with a 'type'"))
            return
        ftype = frame["type"]
        if ftype == "connected":
            self._on_connected(frame, now)
        elif ftype == "pong":
            t = frame.get("t")
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                self._rtt = max(0.0, now - t / 1000.0)
                self._events.append(RttMeasured(self._rtt))
        elif ftype == "ack":
            wire_id = _wire_id(frame.get("id"))
            op = self._pending.pop(wire_id, None) if wire_id is not None else None
            if op is None:
                self._late_acks += 1  # timed out or cancelled earlier: already reported
                return
            op.status = OpStatus.DONE
            self._events.append(AckReceived(op, frame))
        elif ftype == "error":
            wire_id = _wire_id(frame.get("id"))
            op = self._pending.pop(wire_id, None) if wire_id is not None else None
            code = str(frame.get("code", "error"))
            reason = str(frame.get("reason", "error from gateway"))
            if op is not None:
                op.status = OpStatus.FAILED
                self._events.append(SendFailed(op, reason, code, frame))
            else:
                self._events.append(Error(code, reason, frame))
        else:
            self._events.append(Message(frame))

    def on_close(self, code: int | None, reason: str, now: float, *, generation: int | None = None) -> None:
        """The socket closed (``code`` None when it died without a close frame)."""
        if self._stale(generation):
            return
        self._socket = _Socket.NONE
        self._last_close = (code, reason)
        self._after_loss(now, code, reason)

    def send(
        self,
        frame: dict[str, Any],
        *,
        now: float,
        ack: bool = False,
        retry: bool = False,
        priority: bool = False,
    ) -> Operation:
        """Send ``frame`` now if connected, else queue it.

        ``ack``: add an ``_id`` and wait for the gateway's ``ack``/``error``. ``retry``: if the
        connection drops before the ack, resend after reconnecting instead of failing (only
        for idempotent frames, e.g. publish with ``msgId``). ``priority``: queue ahead of ordinary
        ops (resubscriptions, so the gateway sees ``subscribe`` before queued ``publish``).
        """
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise ValueError("a frame must be a dict with a string 'type'")
        self._next_op_id += 1
        op = Operation(self._next_op_id, frame, ack, retry, priority)
        if self._state is ConnectionState.CONNECTED:
            self._transmit(op, now)
        elif not priority and self.queued() - len(self._priority) >= self.queue_limit:
            op.status = OpStatus.FAILED
            self._queue_overflows += 1
            self._events.append(QueueOverflow(op, self.queue_limit))
            self._events.append(
                SendFailed(op, f"offline queue is full ({self.queue_limit} frames)", "queue_full")
            )
        else:
            (self._priority if priority else self._queue).append(op)
        return op

    def cancel(self, op: Operation) -> bool:
        """Forget ``op`` (queued, not yet taken by ``data_to_send``, or awaiting its ack). Returns
        False if it already finished."""
        if op.status is OpStatus.INFLIGHT and not op.ack:
            for i, (_, queued) in enumerate(self._out):
                if queued is op:
                    del self._out[i]
                    op.status = OpStatus.CANCELLED
                    return True
            return False
        if op.status is OpStatus.QUEUED:
            for q in (self._priority, self._queue):
                if op in q:
                    q.remove(op)
                    op.status = OpStatus.CANCELLED
                    return True
        elif op.status is OpStatus.INFLIGHT and op.wire_id in self._pending:
            del self._pending[op.wire_id]
            op.status = OpStatus.CANCELLED
            return True
        return False

    def tick(self, now: float) -> None:
        """Run every timer due at ``now``: backoff, open timeout, heartbeat, ack timeouts."""
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._attempts += 1
            self._open(now)
        if self._open_deadline is not None and now >= self._open_deadline:
            self._kill_socket(now, int(CloseCode.HEARTBEAT_TIMEOUT), "connection timeout", "open_timeout")
        if self._state is ConnectionState.CONNECTED:
            if self._pong_deadline is not None and now >= self._pong_deadline:
                self._kill_socket(
                    now, int(CloseCode.HEARTBEAT_TIMEOUT), "heartbeat timeout", "heartbeat_timeout"
                )
            elif self._next_ping is not None and now >= self._next_ping:
                self._out.append(({"type": "ping", "t": now * 1000.0}, None))
                self._pong_deadline = now + self.heartbeat.timeout
                self._next_ping = now + self.heartbeat.interval
        while self._pending:
            wire_id, op = next(iter(self._pending.items()))
            if op.deadline is None or op.deadline > now:
                break
            del self._pending[wire_id]
            op.status = OpStatus.FAILED
            self._ack_timeouts += 1
            self._events.append(
                SendFailed(op, f"ack timeout: no ack within {self.ack_timeout:g} s", "ack_timeout")
            )

    # ------------------------------------------------------------------ internals

    def _stale(self, generation: int | None) -> bool:
        # Reports about a socket the core already gave up on (or an older one) are ignored.
        if generation is not None and generation != self._generation:
            return True
        return self._socket is _Socket.NONE

    def _set_state(self, state: ConnectionState, reason: str | None = None) -> None:
        if state is not self._state:
            previous, self._state = self._state, state
            self._events.append(StateChanged(previous, state, reason))

    def _open(self, now: float) -> None:
        self._generation += 1
        self._socket = _Socket.OPENING
        self._open_deadline = now + self.open_timeout
        self._set_state(ConnectionState.CONNECTING)
        self._events.append(OpenSocket(self._generation, self._attempts))

    def _on_connected(self, frame: dict[str, Any], now: float) -> None:
        if self._state is not ConnectionState.CONNECTING:
            return  # a repeated 'connected' frame changes nothing
        self._socket = _Socket.OPEN
        self._open_deadline = None
        self._attempts = 0
        client_id, user_id = frame.get("clientId"), frame.get("userId")
        self.client_id = client_id if isinstance(client_id, str) else None
        self.user_id = user_id if isinstance(user_id, str) else None
        self._connected_since = now
        resumed = self._ever_connected
        if resumed:
            self._reconnects += 1
        self._ever_connected = True
        if self.heartbeat.interval > 0:
            self._next_ping = now + self.heartbeat.interval
        self._set_state(ConnectionState.CONNECTED)
        self._events.append(Connected(self.client_id, self.user_id, resumed, frame))
        # Priority ops (resubscriptions) go first, then ordinary ops in FIFO order. _transmit
        # only queues frames (the core does no I/O), so the state stays CONNECTED throughout.
        while self._priority:
            self._transmit(self._priority.popleft(), now)
        while self._queue:
            self._transmit(self._queue.popleft(), now)

    def _transmit(self, op: Operation, now: float) -> None:
        frame = dict(op.frame)
        op.attempts += 1
        if op.ack:
            self._next_wire_id += 1
            op.wire_id = self._next_wire_id
            frame["_id"] = op.wire_id
            op.deadline = now + self.ack_timeout
            op.status = OpStatus.INFLIGHT
            self._pending[op.wire_id] = op
        else:
            # Sent is reported when data_to_send() hands the frame over, not here: a frame still
            # in the core when the socket dies must be failed, not already reported as sent.
            op.status = OpStatus.INFLIGHT
        self._out.append((frame, op))

    def _stop_timers(self) -> None:
        self._open_deadline = None
        self._next_ping = None
        self._pong_deadline = None
        self._connected_since = None

    def _kill_socket(self, now: float, code: int, reason: str, error_code: str) -> None:
        self._events.append(CloseSocket(self._generation, code, reason))
        self._events.append(Error(error_code, reason, close_code=code))
        self._socket = _Socket.NONE
        self._last_close = (code, reason)
        self._after_loss(now, code, reason)

    def _drop_unsent(self) -> None:
        """The socket is gone: forget frames the I/O layer never took.

        Pings need nothing (the heartbeat restarts on the next connection); acked ops are in
        ``_pending`` and handled by :meth:`_fail_pending`; ``ack=False`` ops fail here.
        """
        out, self._out = self._out, []
        for _, op in out:
            if op is not None and not op.ack:
                op.status = OpStatus.FAILED
                self._events.append(
                    SendFailed(op, "connection closed before the frame was written", _CONNECTION_CLOSED)
                )

    def _fail_pending(self, *, include_retry: bool) -> None:
        """Fail in-flight ops; with ``include_retry`` False, retryable ones are requeued in order."""
        pending = list(self._pending.values())
        self._pending.clear()
        retry_front: dict[bool, list[Operation]] = {True: [], False: []}
        for op in pending:
            if op.retry and not include_retry:
                op.status = OpStatus.QUEUED
                op.wire_id = None
                op.deadline = None
                retry_front[op.priority].append(op)
            else:
                op.status = OpStatus.FAILED
                self._events.append(SendFailed(op, "connection closed before the ack", _CONNECTION_CLOSED))
        # They were sent before anything still queued, so they go back in front, order kept.
        self._priority.extendleft(reversed(retry_front[True]))
        self._queue.extendleft(reversed(retry_front[False]))
        if include_retry:
            self._fail_queued("connection closed")

    def _fail_queued(self, reason: str) -> None:
        for q in (self._priority, self._queue):
            while q:
                op = q.popleft()
                op.status = OpStatus.FAILED
                self._events.append(SendFailed(op, reason, _CONNECTION_CLOSED))

    def _terminal(self, state: ConnectionState, reason: str | None) -> None:
        self._fail_queued(f"connection {state.value}: {reason}" if reason else f"connection {state.value}")
        self._attempts = 0 if state is ConnectionState.DISCONNECTED else self._attempts
        self._set_state(state, reason)

    def _after_loss(self, now: float, code: int | None, reason: str) -> None:
        self._stop_timers()
        self._drop_unsent()
        if code is not None and code in NO_RECONNECT_CODES:
            self._fail_pending(include_retry=True)
            if code == CloseCode.AUTH_FAILED:
                message = f"authentication failed: {reason or 'token refused'}"
                self._events.append(Error("auth_failed", message, close_code=code))
            else:
                self._events.append(
                    Error("closed_by_server", f"closed by the gateway ({code} {reason})", close_code=code)
                )
            self._terminal(ConnectionState.DISCONNECTED, reason or f"closed with code {code}")
            return
        if not self.reconnect.enabled:
            self._fail_pending(include_retry=True)
            self._terminal(ConnectionState.DISCONNECTED, reason or "connection lost")
            return
        self._fail_pending(include_retry=False)
        self._schedule_reconnect(now, reason)

    def _schedule_reconnect(self, now: float, reason: str) -> None:
        if self._attempts >= self.reconnect.max_attempts:
            self._fail_pending(include_retry=True)
            message = f"max reconnection attempts reached ({self.reconnect.max_attempts})"
            self._events.append(Error("max_attempts", message))
            self._terminal(ConnectionState.FAILED, message)
            return
        delay = self.reconnect.delay(self._attempts, self._rng.random())
        self._retry_at = now + delay
        self._set_state(ConnectionState.RECONNECTING, reason or "connection lost")


def _wire_id(value: object) -> int | None:
    """``value`` if it can be one of our wire ids (an int, not a bool), else None.

    Wire ids are the ints :meth:`_transmit` assigns; anything else in a frame's ``id``
    (a string, a list, ``true``) matches no pending op.
    """
    return value if isinstance(value, int) and not isinstance(value, bool) else None
