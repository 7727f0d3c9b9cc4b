"""``ConnectionStatus``: badge, retry countdown, last error, user and rtt of a Connection."""

from __future__ import annotations

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
    "retry_at": "retry_at",
    "error": "last_error",
    "rtt_ms": "rtt_ms",
}


class ConnectionStatus(RealtimeWidget):
    """Shows a :class:`~rtwidgets.models.connection.Connection`; buttons reconnect/disconnect it."""

    _bundle = "connection_status"

    state = Unicode("disconnected").tag(sync=True)
    url = Unicode("").tag(sync=True)
    user_id = Unicode("").tag(sync=True)
    client_id = Unicode("").tag(sync=True)
    attempt = Int(0).tag(sync=True)
    max_attempts = Int(0).tag(sync=True)
    retry_at = Float(0.0).tag(sync=True)
    last_error = Unicode("").tag(sync=True)
    rtt_ms = Float(-1.0).tag(sync=True)

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(
                f"ConnectionStatus needs an rtwidgets Connection, got {type(connection).__name__}"
            )
        initial = {mine: getattr(connection, theirs) for theirs, mine in _MIRRORED.items()}
        super().__init__(**initial, **kwargs)
        self.connection = connection
        self._observe(connection, self._on_change, list(_MIRRORED))
        # Catch changes made between reading the initial state and installing the observer.
        self._sync.refresh(lambda: {mine: getattr(connection, theirs) for theirs, mine in _MIRRORED.items()})

    def _on_change(self, change: dict[str, Any]) -> None:
        self._sync.set(**{_MIRRORED[change["name"]]: change["new"]})

    def _intent_reconnect(self, _content: dict[str, Any]) -> None:
        if self.connection.closed:
            raise IntentError("the connection is closed; create a new one")
        self.connection.reconnect_now()

    def _intent_disconnect(self, _content: dict[str, Any]) -> None:
        self.connection.disconnect(wait=False)

    def __repr__(self) -> str:
        return f"<ConnectionStatus state={self.state!r} user={self.user_id!r}>"
