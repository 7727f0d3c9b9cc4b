"""What a :class:`~rtwidgets.client.RealtimeConnection` does with its core's events.

The connection core (:class:`~rtwidgets.core.connection.ConnectionCore`) decides; these functions
carry its events out on the connection's loop: state changes (resubscribe on connect, fail what
can never get through), frames to their channel's subscription, acks and failures to the futures
and subscriptions waiting for them, socket opens and closes to :mod:`rtwidgets.client_socket`.
Kept apart from the connection's public API (:mod:`rtwidgets.client`) so each stays readable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtwidgets.client_errors import _call, _error_from_event, _error_from_failed, _settle
from rtwidgets.client_socket import close_socket, run_socket
from rtwidgets.core.connection_events import (  # the core's vocabulary, defined there
    AckReceived,
    CloseSocket,
    ConnectionEvent,
    ConnectionState,
    Error,
    Message,
    OpenSocket,
    QueueOverflow,
    SendFailed,
    Sent,
    StateChanged,
)
from rtwidgets.errors import ConnectionClosedError, QueueFullError, RealtimeError

if TYPE_CHECKING:
    from rtwidgets.client import RealtimeConnection

__all__ = ["handle_event"]


def handle_event(conn: RealtimeConnection, ev: ConnectionEvent) -> None:
    """Act on one event of the connection core (the connection's ``_drain`` calls this)."""
    _call(conn._on_event, ev)
    if isinstance(ev, StateChanged):
        _on_state_changed(conn, ev)
    elif isinstance(ev, Message):
        _on_message_frame(conn, ev.frame)
    elif isinstance(ev, AckReceived):
        _on_ack(conn, ev)
    elif isinstance(ev, Sent):
        _settle(conn._futures.get(ev.op.op_id), None)
    elif isinstance(ev, SendFailed):
        _on_send_failed(conn, ev)
    elif isinstance(ev, QueueOverflow):
        conn._report(QueueFullError(f"offline queue full ({ev.limit} frames); {ev.op.type} refused"))
    elif isinstance(ev, Error):
        error = _error_from_event(ev)
        name = ev.frame.get("channel") if ev.frame is not None else None
        sub = conn._subscriptions.get(name) if isinstance(name, str) else None
        for handle in list(sub.handles.values()) if sub is not None else ():
            _call(handle._on_error, error)
        conn._report(error)
    elif isinstance(ev, OpenSocket):
        conn._opening = (ev.generation, conn._spawn(run_socket(conn, ev.generation)))
    elif isinstance(ev, CloseSocket):
        ws = conn._ws
        if ws is not None and conn._ws_generation == ev.generation:
            conn._spawn(close_socket(ws, ev.code, ev.reason))
        elif conn._opening is not None and conn._opening[0] == ev.generation:
            conn._opening[1].cancel()  # still authenticating or handshaking: abandon it

def _on_state_changed(conn: RealtimeConnection, ev: StateChanged) -> None:
    current = ev.current
    if ev.previous is ConnectionState.CONNECTED or current in (
        ConnectionState.RECONNECTING,
        ConnectionState.DISCONNECTED,
        ConnectionState.FAILED,
    ):
        for ch_ev in conn._channels.on_connection_lost():
            sub = conn._subscriptions.get(ch_ev.channel)
            if sub is not None:
                sub.dispatch([ch_ev])
    if current is ConnectionState.CONNECTING:
        # Resubscribe every channel that has no subscribe queued, ahead of queued publishes.
        for sub in list(conn._subscriptions.values()):
            if sub._sub_op is None and not sub._closing:
                sub.send_subscribe(priority=True)
    _call(conn._on_state, current, ev.previous, ev.reason)
    if current is ConnectionState.CONNECTED:
        for waiter in conn._connect_waiters:
            _settle(waiter, None)
    elif current in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
        error = conn.last_error or ConnectionClosedError(f"connection {current.value}: {ev.reason}")
        if isinstance(error, RealtimeError) and error.code not in (
            "auth_failed",
            "max_attempts",
            "closed_by_server",
        ):
            error = ConnectionClosedError(f"connection {current.value}: {ev.reason}")
        for waiter in conn._connect_waiters:
            _settle(waiter, exc=error)
        for sub in list(conn._subscriptions.values()):
            if not sub._ever_subscribed:
                # Never got through: fail the subscribe() awaits and forget the channel.
                for handle in list(sub.handles.values()):
                    handle._close(error)
                conn._drop_channel(sub)
    _notify_state(conn)

def _notify_state(conn: RealtimeConnection) -> None:
    for states, fut in conn._state_waiters:
        if conn.state in states:
            _settle(fut, None)

def _on_message_frame(conn: RealtimeConnection, frame: dict[str, Any]) -> None:
    name = frame.get("channel")
    sub = conn._subscriptions.get(name) if isinstance(name, str) else None
    if sub is None:
        return  # late frame for a channel we left, or a frame type without a channel
    sub.on_frame(frame)

def _on_ack(conn: RealtimeConnection, ev: AckReceived) -> None:
    kind_sub = conn._op_channel.pop(ev.op.op_id, None)
    if kind_sub is not None:
        kind, sub = kind_sub
        sub.on_ack(kind, ev.op, ev.frame)
    _settle(conn._futures.get(ev.op.op_id), ev.frame)

def _on_send_failed(conn: RealtimeConnection, ev: SendFailed) -> None:
    kind_sub = conn._op_channel.pop(ev.op.op_id, None)
    if kind_sub is not None:
        kind, sub = kind_sub
        sub.on_send_failed(kind, ev)
        return
    fut = conn._futures.get(ev.op.op_id)
    if fut is None:
        return
    _settle(fut, exc=_error_from_failed(ev))
