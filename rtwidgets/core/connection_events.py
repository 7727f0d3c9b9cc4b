"""What the connection core speaks: its states, configuration, operations, events and stats.

The vocabulary of :class:`rtwidgets.core.connection.ConnectionCore` (the machine itself lives
there; every name here is re-exported from :mod:`rtwidgets.core.connection`, its documented home).

Rules of this module:

* Plain values only: enums, frozen configuration and event dataclasses, and the mutable
  :class:`Operation` handle the core updates in place. No logic beyond validating a config and
  the backoff formula.
* Events are frozen and compared by value; an :class:`Operation` is compared by identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "AckReceived",
    "CloseSocket",
    "Connected",
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


class ConnectionState(str, Enum):
    """Where the connection is in its lifecycle (the design's states plus ``failed``)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"  # gave up after max_attempts; only connect() leaves it


@dataclass(frozen=True)
class ReconnectConfig:
    """Automatic reconnection with exponential backoff and jitter (the design's defaults, seconds)."""

    enabled: bool = True
    max_attempts: int = 10
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter_factor: float = 0.3

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")
        if not 0 <= self.jitter_factor <= 2:
            raise ValueError("jitter_factor must be in [0, 2] (the delay must stay >= 0)")

    def delay(self, attempt: int, rnd: float) -> float:
        """The design's formula: ``min(base * 2**attempt, max) * (1 + (rnd - 0.5) * jitter)``.

        ``rnd`` is a uniform sample in [0, 1); the result lies within
        ``exp * (1 ± jitter/2)`` where ``exp = min(base * 2**attempt, max)``.
        """
        # Cap the exponent so 2**attempt cannot overflow a float for absurd attempt counts.
        exponential = min(self.base_delay * 2.0 ** min(attempt, 1000), self.max_delay)
        return exponential * (1 + (rnd - 0.5) * self.jitter_factor)


@dataclass(frozen=True)
class HeartbeatConfig:
    """Client heartbeat: a ``ping`` every ``interval`` s; no frame within ``timeout`` s -> close 4000.

    ``interval <= 0`` disables the heartbeat.
    """

    interval: float = 30.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("heartbeat timeout must be > 0")


class OpStatus(str, Enum):
    """Where an outbound operation is."""

    QUEUED = "queued"  # waiting for the connection
    # Transmitted: waiting for its ack, or (ack=False) for the I/O layer to take the frame.
    INFLIGHT = "inflight"
    DONE = "done"  # acked, or (ack=False) handed to the I/O layer by data_to_send()
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class Operation:
    """Handle for one frame given to :meth:`ConnectionCore.send`.

    Compare by identity. ``wire_id`` is the ``_id`` of the latest transmission (a retried
    op gets a fresh one on each connection).
    """

    op_id: int
    frame: dict[str, Any]
    ack: bool
    retry: bool
    priority: bool
    status: OpStatus = OpStatus.QUEUED
    wire_id: int | None = None
    deadline: float | None = None
    attempts: int = 0  # how many times it was written to a socket

    @property
    def type(self) -> str:
        return str(self.frame.get("type"))


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class StateChanged:
    previous: ConnectionState
    current: ConnectionState
    reason: str | None = None


@dataclass(frozen=True)
class Connected:
    """The gateway's ``connected`` frame arrived; ``resumed`` is True after a reconnect."""

    client_id: str | None
    user_id: str | None
    resumed: bool
    frame: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """A server frame for the application (anything but connected/pong/ack/error-with-id)."""

    frame: dict[str, Any]


@dataclass(frozen=True)
class AckReceived:
    op: Operation
    frame: dict[str, Any]


@dataclass(frozen=True)
class Sent:
    """An ``ack=False`` op's frame was handed to the I/O layer by ``data_to_send()`` (its only
    success). At-most-once: the frame may still be lost if the socket dies before writing it."""

    op: Operation


@dataclass(frozen=True)
class SendFailed:
    """An op ended without success. ``code`` is an ``ErrorCode`` value from the gateway or one
    of ``ack_timeout``, ``connection_closed``, ``queue_full``. ``frame``: the gateway's ``error``
    frame when there was one (e.g. its ``retryAfter``)."""

    op: Operation
    reason: str
    code: str
    frame: dict[str, Any] | None = None


@dataclass(frozen=True)
class QueueOverflow:
    """The offline queue was full; ``op`` was refused (a ``SendFailed`` follows)."""

    op: Operation
    limit: int


@dataclass(frozen=True)
class Error:
    """Something the user should hear about. ``code``: ``auth_failed``, ``max_attempts``,
    ``open_failed``, ``open_timeout``, ``heartbeat_timeout``, ``closed_by_server``, ``bad_frame``,
    or a gateway ``ErrorCode`` value for ``error`` frames not tied to an op."""

    code: str
    message: str
    frame: dict[str, Any] | None = None
    close_code: int | None = None


@dataclass(frozen=True)
class RttMeasured:
    """A ``pong`` answered our ``ping``: ``rtt`` seconds round trip (for inspectors)."""

    rtt: float


@dataclass(frozen=True)
class OpenSocket:
    """The I/O layer must authenticate and open a socket, then report with ``generation``."""

    generation: int
    attempt: int


@dataclass(frozen=True)
class CloseSocket:
    """The I/O layer must close socket ``generation`` with ``code``; the core already treats it as
    closed, so later reports about that socket are ignored."""

    generation: int
    code: int
    reason: str


ConnectionEvent = (
    StateChanged
    | Connected
    | Message
    | AckReceived
    | Sent
    | SendFailed
    | QueueOverflow
    | Error
    | RttMeasured
    | OpenSocket
    | CloseSocket
)


@dataclass(frozen=True)
class ConnectionStats:
    """A snapshot for inspectors and dashboards (times in the caller's clock, seconds)."""

    state: ConnectionState
    client_id: str | None
    user_id: str | None
    attempts: int
    rtt: float | None  # last ping -> pong round trip
    queue_size: int
    pending_acks: int
    next_retry_at: float | None
    next_retry_in: float | None
    connected_since: float | None
    frames_received: int
    frames_sent: int
    reconnects: int
    ack_timeouts: int
    queue_overflows: int
    late_acks: int
    last_close_code: int | None
    last_close_reason: str | None
