"""Every exception class rtwidgets raises on purpose, in one place.

Rules of this module:

* Imports nothing from rtwidgets at run time, so any layer (cores, protocol, client, gateway,
  models, widgets) can import it without a cycle.
* One class per failure, never two names for one failure: where an older name is public API it
  stays as an alias of the same class (``AuthError is AuthenticationError``), so ``except`` clauses
  written against either name keep working.
* The modules users import from today re-export their classes (``rtwidgets.client``,
  ``rtwidgets.client_errors``, ``rtwidgets.auth``, ``rtwidgets.protocol``, the cores,
  ``rtwidgets.models``, and the top-level ``rtwidgets``), so moving a class here never breaks
  user code. A class keeps its base classes when it moves (``StoreError`` is still a
  ``ValueError``), so does every ``except ValueError`` around it.
* Each class says who raises it and what its attributes mean.

The gateway's broker errors, the collaborative document's and the widgets' live here too,
re-exported from ``rtwidgets.gateway.brokers.base``, ``rtwidgets.models.collab`` and
``rtwidgets.widgets._base``. The Redis adapter's ``RespError`` and ``NotSentError`` stay private
to it: they extend redis-py's own classes, which this module must not import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - annotations only (protocol imports this module)
    from rtwidgets.protocol import ErrorCode

__all__ = [
    "AckTimeoutError",
    "AuthError",
    "AuthenticationError",
    "BrokerUnavailable",
    "BundleMissingError",
    "ChannelClosedError",
    "CollabError",
    "CollabProtocolError",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "IntentError",
    "OperationRolledBack",
    "ProtocolError",
    "QueueFullError",
    "RealtimeError",
    "ReconcileError",
    "ServerError",
    "SharedGatewayError",
    "StateFull",
    "StoreError",
]


# --------------------------------------------------------------------------- client errors


class RealtimeError(Exception):
    """Base class of every client error. ``code`` is machine-readable.

    Args:
        message: the human-readable text (``str(error)``).
        code: overrides the class's default ``code`` (e.g. a gateway ``ErrorCode`` value).
    """

    code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class AuthenticationError(RealtimeError):
    """A token was refused. Not retried.

    Raised by the client when the gateway refuses its token (close 4001 or HTTP 401/403), and by
    :func:`rtwidgets.auth.verify_token` (also as ``AuthError``) when a token is missing, expired,
    badly signed or malformed. The message never contains the token itself.
    """

    code = "auth_failed"


# The gateway-side name of the same failure (rtwidgets.auth has always exported it).
AuthError = AuthenticationError


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
    """The gateway answered with an ``error`` frame; ``code`` is its ``ErrorCode`` value.

    Args:
        code: the frame's ``code``.
        reason: the frame's human-readable ``reason`` (also :attr:`reason`).
        frame: the whole ``error`` frame, when there was one (also :attr:`frame`).
    """

    def __init__(self, code: str, reason: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {reason}", code)
        self.reason = reason
        self.frame = frame

    @property
    def retry_after(self) -> float | None:
        """Seconds after which the refused frame would be accepted (``rate_limited``), if said."""
        value = (self.frame or {}).get("retryAfter")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return None
        return float(value) / 1000.0


# --------------------------------------------------------------------------- wire protocol


class ProtocolError(Exception):
    """A frame was refused (raised by :mod:`rtwidgets.protocol` and the gateway).

    Args:
        code: the ``ErrorCode`` that goes on the wire (also :attr:`code`).
        reason: for humans (also :attr:`reason`).
        msg_id: the refused frame's ``_id``, when it had one, so the error answers it.
        retry_after: seconds after which the same frame would be accepted (``rate_limited``);
            sent as ``retryAfter`` (milliseconds).
    """

    def __init__(
        self, code: ErrorCode, reason: str, msg_id: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason
        self.msg_id = msg_id
        self.retry_after = retry_after


# --------------------------------------------------------------------------- cores


class StoreError(ValueError):
    """A frame handed to :class:`~rtwidgets.core.optimistic.OptimisticStore` is malformed or does
    not describe an item."""


class ReconcileError(ValueError):
    """A server frame handed to :class:`~rtwidgets.core.reconcile.StateReconciler` is malformed or
    was not expected."""


class CollabProtocolError(ValueError):
    """A collaborative-document payload was malformed (wrong shape, bad base64, bad bytes).

    Raised by :mod:`rtwidgets.core.crdt_sync`."""


# --------------------------------------------------------------------------- models


class ChannelClosedError(RuntimeError):
    """The channel model was closed (or its subscription refused) before the operation ran."""


class OperationRolledBack(RuntimeError):
    """An optimistic operation was refused by the gateway or not acknowledged in time.

    Args:
        op_id: the operation's id (also :attr:`op_id`).
        kind: ``"create"``, ``"update"`` or ``"delete"`` (also :attr:`kind`).
        item_id: the item it changed (also :attr:`item_id`).
        reason: why it was rolled back: the gateway's error code or ``ack_timeout``.
    """

    def __init__(self, op_id: str, kind: str, item_id: str, reason: str) -> None:
        super().__init__(f"{kind} of item {item_id!r} rolled back: {reason}")
        self.op_id = op_id
        self.kind = kind
        self.item_id = item_id
        self.reason = reason


class CollabError(RuntimeError):
    """An operation on a :class:`~rtwidgets.models.collab.CollabDoc` failed (closed document,
    bad index, ...)."""


# --------------------------------------------------------------------------- gateway brokers


class BrokerUnavailable(Exception):
    """The backing store cannot be reached (the gateway answers ``unavailable``)."""


class StateFull(ValueError):
    """A keyed publish would grow a channel's state beyond the broker's ``state_max_keys``.

    Raised by :meth:`~rtwidgets.gateway.brokers.base.Broker.publish` before anything is stored;
    the gateway answers it (and only it) with ``error state_full``. A ``ValueError`` for
    compatibility with callers that caught the bound that way.
    """


# --------------------------------------------------------------------------- widgets


class BundleMissingError(FileNotFoundError):
    """The widget's JavaScript bundle has not been built (a source checkout without
    ``npm run build``); the message says how to build it."""


class IntentError(ValueError):
    """A browser intent (custom message) was malformed or unknown."""


class SharedGatewayError(RuntimeError):
    """The shared gateway cannot be found or started; the message says why and what to do.

    Raised by :func:`~rtwidgets.gateway.discovery.shared_gateway` (a bad environment, an unsafe
    runtime file, a gateway that failed to start, a lock held too long) and by the runtime-file
    helpers.
    """
