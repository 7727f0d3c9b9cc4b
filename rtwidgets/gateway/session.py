"""Per-connection state of the gateway: who the client is and what it subscribed to.

Plain data holders; behaviour and I/O live in the modules that use them (``hub.py``,
``handlers.py``, ``subscribe.py``). This module imports only the connection class
(``fastpath.py``) and the rate limiter, never the modules that use it, so there is no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtwidgets.auth import Action, Claims
from rtwidgets.core.catchup import CatchUp

from .fastpath import GatewayConnection
from .ratelimit import TokenBucket

__all__ = ["Session", "Subscription"]

# Distinct (action, channel) permission answers remembered per session. A client that
# cycles through more channels than this only loses the cache, never a check.
CAN_CACHE_SIZE = 256

# Bit per action, for the per-session "pattern '*' allows every channel" mask.
_ACTION_BITS: dict[Action, int] = {"subscribe": 1, "publish": 2, "presence": 4}


@dataclass(eq=False)
class Subscription:
    """One channel subscription of one connection.

    ``catchup`` is not None while the subscription is catching up (a subscribe in flight):
    live frames for the channel are held there (:class:`~rtwidgets.core.catchup.CatchUp`)
    until the snapshot has been sent, so the client sees history then live frames with no
    gap and no duplicate.
    """

    channel: str
    member: dict[str, Any] | None = None  # our presence entry, when subscribed with presence
    catchup: CatchUp | None = None


@dataclass(eq=False)
class Session:
    """An authenticated client connection."""

    client_id: str
    claims: Claims
    conn: GatewayConnection
    bucket: TokenBucket
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    closing: bool = False  # set once the gateway decided to close it (slow, idle, expired)
    # Memo of claims.can; created on the first miss (idle connections never pay for it).
    _can: dict[tuple[Action, str], bool] | None = field(default=None, repr=False)
    # Actions whose patterns include '*' (allowed on every channel), as _ACTION_BITS.
    _allow_all: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        patterns = self.claims.patterns
        self._allow_all = sum(bit for action, bit in _ACTION_BITS.items() if "*" in patterns.get(action, ()))

    @property
    def user_id(self) -> str:
        return self.claims.user_id

    def can(self, action: Action, channel: str) -> bool:
        """``claims.can(action, channel)``, memoised: claims do not change during a session,
        and pattern matching on every publish costs more than a dict lookup. A ``'*'``
        pattern allows every channel without a lookup."""
        if self._allow_all & _ACTION_BITS[action]:
            return True
        cache = self._can
        if cache is None:
            cache = self._can = {}
        key = (action, channel)
        allowed = cache.get(key)
        if allowed is None:
            allowed = self.claims.can(action, channel)
            if len(cache) >= CAN_CACHE_SIZE:
                cache.clear()  # bounded; simpler than LRU and just as correct
            cache[key] = allowed
        return allowed
