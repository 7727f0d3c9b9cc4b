"""``ConnectionStatus``: badge, retry countdown, last error, user and rtt of a Connection.

The browser counts down on its own clock: the widget syncs ``retry_in_ms``, the delay until the
next attempt measured when the update is flushed, never the kernel clock's instant (a browser
whose clock differs from the kernel's would count to the wrong moment).
"""

from __future__ import annotations

import time
from typing import Any

from traitlets import Float, Int, Unicode

from rtwidgets.models.connection import Connection
from rtwidgets.widgets._base import IntentError, RealtimeWidget

__all__ = ["ConnectionStatus"]

# Connection trait -> widget trait (the contract calls the error ``last_error``).
_MIRRORED = {
    "state": "state",
    "url": "url",
    "user_id": "user_id",
    "client_id": "client_id",
    "attempt": "attempt",
    "max_attempts": "max_attempts",
    "error": "last_error",
    "rtt_ms": "rtt_ms",
}


class ConnectionStatus(RealtimeWidget):
    """Shows a :class:`~rtwidgets.models.connection.Connection`; buttons reconnect/disconnect it.

    Args:
        connection: the connection to show.
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``connection`` is not a ``Connection``.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "connection_status"

    state = Unicode("disconnected").tag(sync=True)
    url = Unicode("").tag(sync=True)
    user_id = Unicode("").tag(sync=True)
    client_id = Unicode("").tag(sync=True)
    attempt = Int(0).tag(sync=True)
    max_attempts = Int(0).tag(sync=True)
    retry_at = Float(0.0, help="epoch ms (kernel clock) of the next attempt; 0 = none; not synced")
    retry_in_ms = Float(0.0, help="ms to the next attempt, measured at flush time; 0 = none").tag(sync=True)
    last_error = Unicode("").tag(sync=True)
    rtt_ms = Float(-1.0).tag(sync=True)

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(
                f"ConnectionStatus needs an rtwidgets Connection, got {type(connection).__name__}"
            )
        initial = {mine: getattr(connection, theirs) for theirs, mine in _MIRRORED.items()}
        super().__init__(**initial, retry_at=connection.retry_at, **kwargs)
        self.connection = connection
        self._observe(connection, self._on_change, list(_MIRRORED))
        self._observe(connection, self._on_retry, ["retry_at", "state"])
        # Catch changes made between reading the initial state and installing the observer.
        self._sync.refresh(lambda: {mine: getattr(connection, theirs) for theirs, mine in _MIRRORED.items()})
        self._sync.set_later(self._retry_delay)

    def _on_change(self, change: dict[str, Any]) -> None:
        self._sync.set(**{_MIRRORED[change["name"]]: change["new"]})

    def _on_retry(self, change: dict[str, Any]) -> None:
        if change["name"] == "retry_at":
            self.retry_at = change["new"]
        self._sync.set_later(self._retry_delay)

    def _retry_delay(self, _now: float) -> dict[str, Any]:
        """Flush-time value of ``retry_in_ms``: measured as late as possible, so the browser's
        countdown (started when the update arrives) is off by the delivery time only."""
        retry_at = self.connection.retry_at
        if self.connection.state != "reconnecting" or retry_at <= 0:
            return {"retry_in_ms": 0.0}
        # At least 1 ms: 0 means "no retry scheduled" (the attempt is due now).
        return {"retry_in_ms": max(1.0, round(retry_at - time.time() * 1000.0))}

    def _intent_reconnect(self, _content: dict[str, Any]) -> None:
        if self.connection.closed:
            raise IntentError("the connection is closed; create a new one")
        self.connection.reconnect_now()

    def _intent_disconnect(self, _content: dict[str, Any]) -> None:
        self.connection.disconnect(wait=False)

    def __repr__(self) -> str:
        return f"<ConnectionStatus state={self.state!r} user={self.user_id!r}>"
