"""Per-connection state of the gateway: who the client is and what it subscribed to.

Plain data holders; the gateway (``server.py``) owns all behaviour and I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rtwidgets.auth import Claims

from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .server import GatewayConnection

__all__ = ["Session", "Subscription"]


@dataclass(eq=False)
class Subscription:
    """One channel subscription of one connection.

    ``held`` is not None while the subscription is catching up: live frames for the
    channel are parked there (``(frame, encoded)``) until the snapshot has been sent,
    so the client sees history then live frames with no gap and no duplicate.
    """

    channel: str
    member: dict[str, Any] | None = None  # our presence entry, when subscribed with presence
    held: list[tuple[dict[str, Any], bytes]] | None = None
    held_bytes: int = 0


@dataclass(eq=False)
class Session:
    """An authenticated client connection."""

    client_id: str
    claims: Claims
    conn: GatewayConnection
    bucket: TokenBucket
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    closing: bool = False  # set once the gateway decided to close it (slow, idle, expired)

    @property
    def user_id(self) -> str:
        return self.claims.user_id
