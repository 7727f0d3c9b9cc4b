"""Errors of the realtime client, and the small callback helpers its layers share.

Every error is a :class:`RealtimeError` with a machine-readable ``code``; :class:`ServerError`
carries the gateway's ``ErrorCode`` value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rtwidgets.core.connection import Error, SendFailed

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


class RealtimeError(Exception):
    """Base class of every client error. ``code`` is machine-readable."""

    code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class AuthenticationError(RealtimeError):
    """The gateway refused the token (close 4001 or HTTP 401/403). Not retried."""

    code = "auth_failed"


class ConnectionClosedError(RealtimeError):
    """The connection closed (or was never open) before the operation completed."""

    code = "connection_closed"


class ConnectionFailedError(RealtimeError):
    """Reconnection gave up (max attempts) or the gateway closed for good."""

    code = "connection_failed"


class QueueFullError(RealtimeError):
    """The offline queue is full; the frame was not queued."""

    code = "queue_full"


class AckTimeoutError(RealtimeError, TimeoutError):
    """No ack arrived within ``ack_timeout``; the gateway may or may not have applied it."""

    code = "ack_timeout"


class ServerError(RealtimeError):
    """The gateway answered with an ``error`` frame; ``code`` is its ``ErrorCode`` value."""

    def __init__(self, code: str, reason: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {reason}", code)
        self.reason = reason
        self.frame = frame


def _error_from_failed(ev: SendFailed) -> RealtimeError:
    if ev.code == "ack_timeout":
        return AckTimeoutError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "queue_full":
        return QueueFullError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "connection_closed":
        return ConnectionClosedError(f"{ev.op.type}: {ev.reason}")
    return ServerError(ev.code, ev.reason)


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
