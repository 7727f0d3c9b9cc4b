"""Gateway configuration: one frozen dataclass, every limit in one place.

All sizes are bytes, all durations seconds, all rates per second. ``Gateway(**overrides)``
builds one with :meth:`GatewayConfig.replace`; unknown names raise ``TypeError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["GatewayConfig"]


@dataclass(frozen=True)
class GatewayConfig:
    """Limits and timings of a :class:`~rtwidgets.gateway.Gateway`.

    Every parameter is also the (read-only) attribute of the same name.

    Args:
        history_size: stored messages retained per channel (resume window).
        max_message_bytes: soft frame limit; bigger client frames get ``error too_large``
            and the connection stays open.
        hard_max_bytes: websockets' ``max_size``; frames above it close the
            connection with 1009.
        max_presence_bytes: encoded size limit of one member's presence ``data``.
        max_channels_per_connection: subscriptions one connection may hold.
        publish_rate: sustained publishes per second per connection (token bucket).
        publish_burst: bucket capacity (publishes allowed in a burst).
        outbound_limit_bytes: per-connection unsent bytes above which the client is
            closed with 4008 (slow consumer); it reconnects and recovers from history.
        heartbeat_timeout: a connection from which nothing (no frame, no pong) arrived
            for this long is closed with 4009.
        ping_interval: seconds between websockets protocol keepalive pings (None disables).
        ping_timeout: seconds to wait for the pong to a keepalive ping (None disables).
        close_timeout: how long a closing handshake may take before the TCP
            connection is dropped.
        allowed_origins: if set, WebSocket handshakes whose ``Origin`` is not listed
            get HTTP 403. ``None`` accepts any origin (and none).
        state_max_keys: keys of keyed channel state per channel (``error state_full``).
        dedupe_window: msgIds remembered per channel for de-duplication; ``None``
            means the same as ``history_size``.
        compression: ``"deflate"`` enables permessage-deflate; off by default because
            it costs CPU per subscriber on every fan-out frame.
        channel_ttl: Redis broker (``redis=``) only: a channel's history, offsets and keyed
            state expire this many seconds after its last publish (afterwards it starts
            over with a new epoch, as after an empty Redis restart). ``None`` (default)
            keeps them until deleted. Set with the in-memory broker it is an error.

    Raises:
        ValueError: a value out of range or of the wrong type (the message names the field),
            ``max_message_bytes`` above ``hard_max_bytes``, or ``allowed_origins`` given as a
            str.
    """

    history_size: int = 1000
    max_message_bytes: int = 65536
    hard_max_bytes: int = 1_048_576
    max_presence_bytes: int = 4096
    max_channels_per_connection: int = 256
    publish_rate: float = 200.0
    publish_burst: int = 400
    outbound_limit_bytes: int = 1_048_576
    heartbeat_timeout: float = 60.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 10.0
    allowed_origins: tuple[str, ...] | None = None
    state_max_keys: int = 10000
    dedupe_window: int | None = None
    compression: str | None = None
    channel_ttl: float | None = None

    def __post_init__(self) -> None:
        positive_ints = (
            "history_size",
            "max_message_bytes",
            "hard_max_bytes",
            "max_presence_bytes",
            "max_channels_per_connection",
            "publish_burst",
            "outbound_limit_bytes",
            "state_max_keys",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GatewayConfig.{name} must be a positive integer, got {value!r}")
        for name in ("publish_rate", "heartbeat_timeout", "close_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"GatewayConfig.{name} must be a positive number, got {value!r}")
        for name in ("ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"GatewayConfig.{name} must be a positive number or None, got {value!r}")
        if self.max_message_bytes > self.hard_max_bytes:
            raise ValueError("GatewayConfig.max_message_bytes must not exceed hard_max_bytes")
        if self.dedupe_window is not None and (
            isinstance(self.dedupe_window, bool) or self.dedupe_window <= 0
        ):
            raise ValueError("GatewayConfig.dedupe_window must be a positive integer or None")
        if self.allowed_origins is not None:
            origins: object = self.allowed_origins  # untyped callers may pass anything
            if isinstance(origins, str):
                # A bare string would be iterated character by character: refuse it.
                raise ValueError("GatewayConfig.allowed_origins must be a tuple of origins, not a string")
            object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        if self.channel_ttl is not None and (
            isinstance(self.channel_ttl, bool)
            or not isinstance(self.channel_ttl, (int, float))
            or not 0.001 <= self.channel_ttl < 2**31
        ):
            raise ValueError(
                f"GatewayConfig.channel_ttl must be None or seconds >= 0.001, got {self.channel_ttl!r}"
            )
        if self.compression not in (None, "deflate"):
            raise ValueError("GatewayConfig.compression must be None or 'deflate'")

    @property
    def effective_dedupe_window(self) -> int:
        """msgIds remembered per channel (``dedupe_window`` or ``history_size``)."""
        return self.dedupe_window if self.dedupe_window is not None else self.history_size

    def replace(self, **changes: Any) -> GatewayConfig:
        """A copy with ``changes`` applied; unknown names raise ``TypeError``.

        Args:
            **changes: field name -> new value.

        Raises:
            TypeError: a name that is not a field.
            ValueError: a new value out of range (as for the constructor).
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown GatewayConfig option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)
