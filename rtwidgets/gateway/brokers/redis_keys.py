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

With ``cluster=True`` (the Redis Cluster broker, :mod:`.redis_cluster`) every name a script
or a transaction touches together shares one hash slot:

* a channel's keys are ``P:{t}:what`` where the hash tag ``t`` is the channel name when it
  is not empty and has no braces, else ``#`` + the SHA-1 hex of the name (``}x`` would otherwise
  end the tag early, and an empty tag hashes the whole key: the keys would scatter);
  ``P:{t}:lineage`` (the replication id of the shard that last wrote the channel, see
  ``lua/publish.lua``) joins them;
* the sharded pub/sub channel is ``P:{t}:ch:{c}`` (SPUBLISH'd by the publish script, so it
  must hash like the keys);
* the gateway-wide keys share the tag ``{gateways}``: ``P:{gateways}:gw:{id}``,
  ``P:{gateways}:gw:{id}:owned`` and ``P:{gateways}:all``, so a sweep's script and a
  heartbeat's pipeline stay on one node (their traffic is a few commands per gateway every
  ``presence_ttl / 3``, far from making that slot hot).

Rules of this module:

* Every key and pub/sub name is built here; the Lua scripts (``lua/*.lua``) get them as
  KEYS, except the presence scripts on one Redis, which build ``P:gw:{id}`` names from the
  prefix (on a cluster they run in split mode and touch only their KEYS).
* A stream entry stores the frame's JSON without its leading ``id``/``eventId``;
  :func:`splice_id` puts them back exactly as the Lua scripts do.
"""

from __future__ import annotations

import hashlib
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
    """Key and pub/sub channel names for one ``key_prefix`` and one gateway.

    ``cluster``: the Redis Cluster layout (see the module docstring); ``key_prefix`` must
    then have no braces, or it would become every key's hash tag.
    """

    prefix: str
    gateway_id: str
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.prefix or "}" in self.prefix):
            raise ValueError(f"key_prefix must not contain braces on Redis Cluster, got {self.prefix!r}")

    def tag(self, channel: str) -> str:
        """The hash tag of ``channel``'s names (the name itself on one Redis)."""
        if self.cluster and (not channel or "{" in channel or "}" in channel):
            return "#" + hashlib.sha1(channel.encode(), usedforsecurity=False).hexdigest()
        return channel

    def channel_key(self, channel: str, what: str) -> str:
        """``P:{channel}:what`` (``what`` one of :data:`CHANNEL_KEYS` or ``"presence"``)."""
        return f"{self.prefix}:{{{self.tag(channel)}}}:{what}"

    def pubsub(self, channel: str) -> str:
        """The pub/sub channel carrying ``channel``'s frames."""
        if self.cluster:
            return f"{self.prefix}:{{{self.tag(channel)}}}:ch:{channel}"
        return f"{self.prefix}:ch:{channel}"

    def channel_of(self, pubsub_channel: str) -> str | None:
        """The channel a pub/sub name carries, or None if it is not one of ours."""
        if self.cluster:
            head = f"{self.prefix}:{{"
            end = pubsub_channel.find("}:ch:", len(head))
            if not pubsub_channel.startswith(head) or end < 0:
                return None
            channel = pubsub_channel[end + 5 :]
            return channel if self.tag(channel) == pubsub_channel[len(head) : end] else None
        head = f"{self.prefix}:ch:"
        return pubsub_channel[len(head) :] if pubsub_channel.startswith(head) else None

    def gateway(self, gateway_id: str) -> str:
        """The liveness key of ``gateway_id``."""
        return f"{self._gateway_head}:gw:{gateway_id}"

    def owned(self, gateway_id: str) -> str:
        """The set of (channel, clientId) pairs ``gateway_id`` added to presence."""
        return f"{self._gateway_head}:gw:{gateway_id}:owned"

    @property
    def gateways(self) -> str:
        """The set of every gateway id that registered under this prefix."""
        return f"{self.prefix}:{{gateways}}:all" if self.cluster else f"{self.prefix}:gateways"

    @property
    def _gateway_head(self) -> str:
        return f"{self.prefix}:{{gateways}}" if self.cluster else self.prefix

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
