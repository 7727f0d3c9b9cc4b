"""How the client turns core events into its errors, and the small callback helpers its layers share.

The error classes themselves live in :mod:`rtwidgets.errors` and are re-exported here (this was
their home before). Every error is a :class:`RealtimeError` with a machine-readable ``code``;
:class:`ServerError` carries the gateway's ``ErrorCode`` value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rtwidgets.core.connection import Error, SendFailed
from rtwidgets.errors import (
    AckTimeoutError,
    AuthenticationError,
    ConnectionClosedError,
    ConnectionFailedError,
    QueueFullError,
    RealtimeError,
    ServerError,
)

__all__ = [
    "AckTimeoutError",
    "AuthenticationError",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "QueueFullError",
    "RealtimeError",
    "ServerError",
    "Unsubscribe",
]

log = logging.getLogger("rtwidgets.client")

Unsubscribe = Callable[[], None]


def _error_from_failed(ev: SendFailed) -> RealtimeError:
    if ev.code == "ack_timeout":
        return AckTimeoutError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "queue_full":
        return QueueFullError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "connection_closed":
        return ConnectionClosedError(f"{ev.op.type}: {ev.reason}")
    return ServerError(ev.code, ev.reason, ev.frame)


def _error_from_event(ev: Error) -> RealtimeError:
    if ev.code == "auth_failed":
        return AuthenticationError(ev.message)
    if ev.code in ("max_attempts", "closed_by_server"):
        return ConnectionFailedError(ev.message, ev.code)
    if ev.frame is not None and ev.frame.get("type") == "error":
        return ServerError(ev.code, ev.message, ev.frame)
    return RealtimeError(ev.message, ev.code)


def _call(callbacks: list[Callable[..., Any]], *args: Any) -> None:
    for cb in list(callbacks):
        try:
            cb(*args)
        except Exception:  # a broken UI callback must not break the connection
            log.exception("rtwidgets callback %r raised", cb)


def _register(callbacks: list[Callable[..., Any]], cb: Callable[..., Any]) -> Unsubscribe:
    callbacks.append(cb)

    def unsubscribe() -> None:
        if cb in callbacks:
            callbacks.remove(cb)

    return unsubscribe


def _settle(fut: asyncio.Future[Any] | None, result: Any = None, exc: BaseException | None = None) -> None:
    if fut is None or fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
