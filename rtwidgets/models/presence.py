"""``Presence``: the design's ``usePresence`` hook as a traitlets model
(docs/design.md#presence).

A thin layer over a presence-enabled :class:`~rtwidgets.models.channel.Channel`: it joins
with ``user_data`` and mirrors who is here. Unlike the design's hook, :meth:`Presence.update`
really sends the new data (the hook left that effect commented out).
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Dict, HasTraits, List, Unicode

from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection

__all__ = ["Presence"]


class Presence(HasTraits):
    """Membership of ``name`` for this connection, joined with ``user_data``.

    ``members``: one dict per connected client (``userId``, ``clientId``, ``data``,
    ``joinedAt``); ``users``: distinct user ids; ``my_presence``: the data we announced.

    Args:
        connection: the :class:`Connection` to join over.
        name: the channel.
        user_data: the presence data to announce (a dict; ``None``: empty).

    Raises:
        TypeError: ``user_data`` is not a dict.
        ProtocolError: ``name`` is not a valid channel name.
        ValueError: ``user_data`` sets a key another model of this connection on the channel
            set to a different value.
    """

    name = Unicode(read_only=True)
    members: List[dict[str, Any]] = List()
    users: List[str] = List()
    is_joined = Bool(False)
    my_presence = Dict()

    def __init__(self, connection: Connection, name: str, user_data: dict[str, Any] | None = None) -> None:
        if user_data is not None and not isinstance(user_data, dict):
            raise TypeError("user_data must be a dict")
        super().__init__()
        self.set_trait("name", name)
        self.my_presence = dict(user_data or {})
        self.connection = connection
        self.channel = Channel(connection, name, presence=True, presence_data=dict(user_data or {}))
        self._closed = False
        self.channel.observe(self._mirror, names=["members", "users", "is_subscribed"])
        self._mirror(None)

    def _mirror(self, _change: Any) -> None:
        ch = self.channel
        with self.hold_trait_notifications():
            self.members = list(ch.members)
            self.users = list(ch.users)
            self.is_joined = ch.is_subscribed

    def update(self, data: dict[str, Any], *, wait: bool = True, timeout: float = 10.0) -> Any:
        """Replace our presence data (kept across reconnects); returns the ack when ``wait``.

        Args:
            data: the new presence data (a dict).
            wait: block until the gateway took it (``True``) or return a
                ``concurrent.futures.Future`` at once (``False``).
            timeout: seconds to wait when ``wait``.

        Raises:
            TypeError: ``data`` is not a dict.
            RuntimeError: ``wait=True`` on the runtime thread (it would deadlock).
            TimeoutError: not done within ``timeout`` seconds.
            ServerError: the gateway refused the subscription.
            ChannelClosedError: the model is closed.
        """
        if not isinstance(data, dict):
            raise TypeError("presence data must be a dict")
        self.my_presence = dict(data)
        return self.channel.update_presence(dict(data), wait=wait, timeout=timeout)

    def wait_joined(self, timeout: float = 10.0) -> Presence:
        """Block until the presence subscription is acknowledged.

        Args:
            timeout: seconds to wait.

        Returns:
            This presence, for chaining.

        Raises:
            RuntimeError: called on the runtime thread (it would deadlock).
            TimeoutError: not joined within ``timeout`` seconds.
            ServerError: the gateway refused the subscription (e.g. ``forbidden``).
            ChannelClosedError: the model was closed.
        """
        self.channel.wait_subscribed(timeout)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Leave the channel (others see us leave, unless another model of this connection still
        wants presence there) and release listeners. Idempotent.

        Args:
            timeout: seconds to wait for the unsubscribe; past it the model is closed anyway.
        """
        if self._closed:
            return
        self._closed = True
        self.channel.unobserve(self._mirror, names=["members", "users", "is_subscribed"])
        self.channel.close(timeout)
        self._mirror(None)

    def __repr__(self) -> str:
        return f"<Presence {self.name!r} joined={self.is_joined} users={len(self.users)}>"
