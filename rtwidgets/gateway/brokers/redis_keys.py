"""What the Redis broker stores where, and in which format (names and value encodings).

Layout (``P`` is ``key_prefix``, ``{c}`` the channel name; the braces are literal and
double as a Redis Cluster hash tag so one channel's keys share a slot):

* ``P:{c}:offset`` (INCR counter), ``P:{c}:epoch`` (random hex, created when missing),
  ``P:{c}:events`` (stream: history; the stream id *is* the event id),
  ``P:{c}:state`` (hash key -> latest frame), ``P:{c}:msgids`` + ``P:{c}:msgq``
  (hash msgId -> event id and its FIFO, bounded to ``history_size``: the dedupe window),
  ``P:{c}:presence`` (hash clientId -> ``"gw\\njoin_ms\\nmember_json"``);
* ``P:gw:{id}`` liveness key (TTL ``presence_ttl``), ``P:gw:{id}:owned`` (set of the
  (channel, clientId) pairs that gateway added), ``P:gateways`` (set of gateway ids);
* pub/sub channel ``P:ch:{c}`` carries every fan-out frame, already encoded;
  ``P:ctl:{id}`` is the gateway's own control channel (always subscribed).

Rules of this module:

* Every key and pub/sub name is built here; the Lua scripts (``lua/*.lua``) get them as
  KEYS, except the presence scripts, which build ``P:gw:{id}`` names from the prefix.
* A stream entry stores the frame's JSON without its leading ``id``/``eventId``;
  :func:`splice_id` puts them back exactly as the Lua scripts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = [
    "CHANNEL_KEYS",
    "KeyLayout",
    "owned_pair",
    "parse_presence_record",
    "safe_redis_url",
    "splice_id",
]

# The per-channel keys the publish script takes, in its KEYS order (see lua/publish.lua).
CHANNEL_KEYS = ("offset", "epoch", "events", "state", "msgids", "msgq")


@dataclass(frozen=True)
class KeyLayout:
    """Key and pub/sub channel names for one ``key_prefix`` and one gateway."""

    prefix: str
    gateway_id: str

    def channel_key(self, channel: str, what: str) -> str:
        """``P:{channel}:what`` (``what`` one of :data:`CHANNEL_KEYS` or ``"presence"``)."""
        return f"{self.prefix}:{{{channel}}}:{what}"

    def pubsub(self, channel: str) -> str:
        """The pub/sub channel carrying ``channel``'s frames."""
        return f"{self.prefix}:ch:{channel}"

    def channel_of(self, pubsub_channel: str) -> str | None:
        """The channel a pub/sub name carries, or None if it is not one of ours."""
        head = f"{self.prefix}:ch:"
        return pubsub_channel[len(head) :] if pubsub_channel.startswith(head) else None

    def gateway(self, gateway_id: str) -> str:
        """The liveness key of ``gateway_id``."""
        return f"{self.prefix}:gw:{gateway_id}"

    def owned(self, gateway_id: str) -> str:
        """The set of (channel, clientId) pairs ``gateway_id`` added to presence."""
        return f"{self.prefix}:gw:{gateway_id}:owned"

    @property
    def gateways(self) -> str:
        """The set of every gateway id that registered under this prefix."""
        return f"{self.prefix}:gateways"

    @property
    def control(self) -> str:
        """This gateway's control channel: always subscribed, so the pub/sub connection
        exists (and proves liveness) even with no channel attached."""
        return f"{self.prefix}:ctl:{self.gateway_id}"


def safe_redis_url(url: str) -> str:
    """``scheme://host:port/db`` of ``url`` without user name or password (for messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        db = (parts.path or "/0").lstrip("/") or "0"
        return f"{parts.scheme or 'redis'}://{host}:{port}/{db}"
    except ValueError:
        return "<invalid redis url>"


def owned_pair(channel: str, client_id: str) -> str:
    """The member of an owned set for ``client_id`` on ``channel`` (a JSON pair)."""
    return orjson.dumps([channel, client_id]).decode()


def parse_presence_record(value: str) -> tuple[str, int, dict[str, Any]]:
    """Split a presence record ``gw\\njoin_ms\\nmember_json`` into its parts.

    Raises:
        ValueError: fewer than three parts (``orjson.JSONDecodeError``, a ``ValueError``,
            for member JSON that does not decode). A non-numeric join time reads as 0.
    """
    gw, t, member_json = value.split("\n", 2)
    try:
        joined = int(t)
    except ValueError:
        joined = 0
    member: dict[str, Any] = orjson.loads(member_json)
    return gw, joined, member


def splice_id(sid: str, stored: str) -> str:
    """Rebuild a full frame's JSON from a stream entry (the same splice the Lua scripts do)."""
    return f'{{"id":"{sid}","eventId":"{sid}",{stored}'
