"""``Connection``: the design's ``useRealtimeConnection`` hook as a traitlets
model (docs/design.md#connection-state-machine).

The asyncio :class:`rtwidgets.client.RealtimeConnection` lives on the runtime loop; this
model mirrors its state into traits (set on the runtime thread) and offers thread-safe,
by-default non-blocking methods for notebook cells and widget handlers.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from traitlets import Bool, Float, HasTraits, Int, Unicode

from rtwidgets.auth import redact
from rtwidgets.client import RealtimeConnection, ReconnectConfig
from rtwidgets.models._binding import DeadlineTimer, on_runtime, run_blocking, submit
from rtwidgets.runtime import get_runtime

__all__ = ["Connection"]

# How often attempt / retry_at / rtt_ms are refreshed from the client's stats (seconds).
STATS_INTERVAL = 0.5


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def _stat(stats: Any, name: str, default: Any = None) -> Any:
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


class Connection(HasTraits):
    """A realtime connection to a gateway, observable from Python and by widgets.

    ``url`` is the gateway's ``ws://`` URL without a token; pass ``token=`` (a string) or
    ``auth=`` (a callable returning one, re-run on every reconnect). Extra keyword
    arguments go to :class:`~rtwidgets.client.RealtimeConnection` (``reconnect=``,
    ``heartbeat=``, ``queue_limit=``, ``ack_timeout=``). ``user`` is only a label shown
    until the gateway reports the real user id.

    Nothing connects until :meth:`connect`.

    Args:
        url: the gateway's ``ws://`` or ``wss://`` URL (shown redacted in :attr:`url`).
        token: the token to authenticate with.
        auth: a callable returning a token (sync or async), called before every connection
            attempt; instead of ``token``.
        user: a label for :attr:`user_id` until the gateway reports the real one.
        **client_kw: passed to :class:`~rtwidgets.client.RealtimeConnection` (``reconnect``,
            ``heartbeat``, ``queue_limit``, ``ack_timeout``, ``open_timeout``,
            ``max_messages``, ``rng``).

    Raises:
        ValueError: ``url`` is not a ``ws://``/``wss://`` URL, both ``token`` and ``auth`` are
            given, or a client option is out of range.
        TypeError: an unknown keyword argument.
    """

    url = Unicode(help="gateway URL (never contains the token)")
    state = Unicode("disconnected", help="disconnected|connecting|connected|reconnecting|failed")
    error = Unicode("", help="the last error, human readable; '' when none")
    is_connected = Bool(False)
    client_id = Unicode("")
    user_id = Unicode("")
    attempt = Int(0, help="reconnect attempts since the last successful connect")
    max_attempts = Int(0)
    retry_at = Float(0.0, help="epoch ms of the next reconnect attempt; 0 = none scheduled")
    rtt_ms = Float(-1.0, help="last ping round trip in ms; -1 = unknown")

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth: Callable[[], Any] | None = None,
        user: str | None = None,
        **client_kw: Any,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must be a ws:// or wss:// URL, got {redact(str(url))!r}")
        super().__init__(url=redact(url), user_id=user or "")
        self._runtime = get_runtime()
        self._client = RealtimeConnection(url, token=token, auth=auth, **client_kw)
        reconnect = client_kw.get("reconnect") or ReconnectConfig()
        self.max_attempts = int(reconnect.max_attempts) if reconnect.enabled else 0
        self._connect_future: concurrent.futures.Future[Any] | None = None
        self._closed = False
        self._unsubs: list[Callable[[], Any]] = [
            self._client.on_state_change(self._on_state),
            self._client.on_error(self._on_error),
        ]
        self._stats_timer: DeadlineTimer | None = None
        # Models built on this connection (channels, lists), for inspectors; weak so a
        # forgotten model is not kept alive by its connection.
        self.attached: weakref.WeakSet[Any] = weakref.WeakSet()

    # ------------------------------------------------------------------ public API

    @property
    def client(self) -> RealtimeConnection:
        """The underlying asyncio client (use it only from the runtime loop)."""
        return self._client

    @property
    def closed(self) -> bool:
        return self._closed

    def connect(self, *, wait: bool = False, timeout: float = 30.0) -> Connection:
        """Start connecting (idempotent). With ``wait=True`` block until connected.

        Non-blocking by default: failures land in :attr:`error` and :attr:`state`. With
        ``wait=True`` the client's exception (e.g. authentication refused) is raised here.

        Args:
            wait: block until connected (``True``) or return at once (``False``).
            timeout: seconds to wait when ``wait``; the attempt goes on after a timeout.

        Returns:
            This connection, for chaining.

        Raises:
            RuntimeError: the connection is closed, or ``wait=True`` on the runtime thread.
            TimeoutError: ``wait`` and not connected within ``timeout`` seconds.
            AuthenticationError: ``wait`` and the gateway refused the token.
            ConnectionFailedError: ``wait`` and reconnection gave up (max attempts).
        """
        if self._closed:
            raise RuntimeError("this Connection is closed; create a new one")
        future = self._connect_future
        if future is None or (future.done() and self.state in ("disconnected", "failed")):
            future = self._connect_future = submit(self._connect())
        if not wait:
            return self
        if get_runtime().in_runtime_thread():
            raise RuntimeError("Connection.connect(wait=True) cannot block on the runtime thread")
        # A future that already failed (e.g. a refused token answered before we got here)
        # must raise its error below, not wait for a connection that will never come.
        if future.done() and not future.cancelled() and future.exception() is None and not self.is_connected:
            # Connected once, now reconnecting by itself: wait for that instead of skipping its backoff.
            return self.wait_connected(timeout)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"not connected to {self.url} within {timeout} s (state {self.state!r})"
            ) from None
        return self

    def wait_connected(self, timeout: float = 30.0) -> Connection:
        """Block until :attr:`state` is ``connected`` (e.g. after an automatic reconnect).

        Args:
            timeout: seconds to wait.

        Returns:
            This connection, for chaining.

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        return self.wait_for(lambda: self.is_connected, timeout, "connected")

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
    ) -> Connection:
        """Block until ``predicate()`` is true, re-checked on every trait change (and every 50 ms).

        Call it off the runtime thread (traits change there).

        Args:
            predicate: a cheap check, called from this thread.
            timeout: seconds to wait.
            what: names the condition in the timeout's message.

        Returns:
            This connection, for chaining.

        Raises:
            TimeoutError: ``predicate()`` still false after ``timeout`` seconds.
        """
        changed = threading.Event()

        def poke(_change: Any) -> None:
            changed.set()

        self.observe(poke)
        try:
            deadline = time.monotonic() + timeout
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what} not reached within {timeout} s (state {self.state!r})")
                changed.wait(min(remaining, 0.05))
                changed.clear()
        finally:
            self.unobserve(poke)
        return self

    def disconnect(self, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Close the socket on purpose (no automatic reconnect); :meth:`connect` may follow.

        Args:
            wait: block until the client closed (not on the runtime thread, where it never
                blocks).
            timeout: seconds to wait when ``wait``.

        Raises:
            TimeoutError: ``wait`` and the client did not close within ``timeout`` seconds.
        """
        future = submit(self._client.close())
        self._connect_future = None
        if wait and not get_runtime().in_runtime_thread():
            future.result(timeout)

    def reconnect_now(self) -> None:
        """Skip the backoff wait and try to connect now (no-op when connected)."""
        if self._closed:
            raise RuntimeError("this Connection is closed; create a new one")
        on_runtime(self._reconnect_now)

    def simulate_drop(self, timeout: float = 10.0) -> bool:
        """Abort the socket without a close handshake, as a network failure would.

        For demos and tests of recovery: the client sees an abnormal close (1006) and
        reconnects with backoff, resuming its channels. Returns False if no socket was open.

        Args:
            timeout: seconds to wait for the runtime loop to abort the socket.

        Raises:
            RuntimeError: called on the runtime thread.
            TimeoutError: the runtime did not run the abort within ``timeout`` seconds.
        """

        async def abort() -> bool:
            # The client keeps its socket private; a dead link is exactly "transport gone".
            ws = getattr(self._client, "_ws", None)
            if ws is None:
                return False
            ws.transport.abort()
            return True

        return run_blocking(abort(), timeout, "Connection.simulate_drop")

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect for good and release listeners and timers (idempotent).

        Args:
            timeout: seconds to wait for the client to close (on the runtime thread the close
                is started and not waited for).

        Raises:
            TimeoutError: the client did not close within ``timeout`` seconds (the connection
                counts as closed anyway).
        """
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            for unsub in self._unsubs:
                unsub()
            self._unsubs.clear()
            if self._stats_timer is not None:
                self._stats_timer.cancel()
            await self._client.close()

        if get_runtime().in_runtime_thread():
            submit(shutdown())
        else:
            run_blocking(shutdown(), timeout, "Connection.close")
        self._set(is_connected=False, state="disconnected", retry_at=0.0)

    def stats(self) -> dict[str, Any]:
        """The client's counters as a plain dict (thread-safe snapshot)."""
        raw = self._client.stats()
        if isinstance(raw, dict):
            return dict(raw)
        fields = getattr(raw, "__dataclass_fields__", None)
        out = {name: getattr(raw, name) for name in fields} if fields else dict(vars(raw))
        if "state" in out:
            out["state"] = _value(out["state"])
        return out

    def __repr__(self) -> str:
        return f"<Connection {self.url} state={self.state!r} user={self.user_id!r}>"

    # ------------------------------------------------------------------ runtime thread

    async def _connect(self) -> None:
        self._ensure_stats_timer()
        try:
            await self._client.connect()
        except Exception as exc:
            self._on_error(exc)
            raise
        self._refresh()

    def _reconnect_now(self) -> None:
        if self._closed or self.state == "connected":
            return
        # The client's connect() skips a pending backoff wait and opens a socket now.
        self._connect_future = submit(self._connect())

    def _ensure_stats_timer(self) -> None:
        if self._stats_timer is None and not self._closed:
            loop = self._runtime.loop
            self._stats_timer = DeadlineTimer(loop, self._on_stats_timer)
            self._stats_timer.schedule(loop.time() + STATS_INTERVAL)

    def _on_stats_timer(self, now: float) -> None:
        self._refresh()
        if self._stats_timer is not None and not self._closed:
            self._stats_timer.schedule(now + STATS_INTERVAL)

    def _on_state(self, current: Any, _previous: Any = None, reason: str | None = None) -> None:
        state = _value(current)
        if reason and state in ("reconnecting", "failed", "disconnected") and not self.error:
            self._set(error=redact(str(reason)))
        self._refresh(state)

    def _on_error(self, err: Any) -> None:
        message = _stat(err, "message", None) or str(err) or type(err).__name__
        self._set(error=redact(str(message)))

    def _refresh(self, state: str | None = None) -> None:
        client = self._client
        try:
            stats = client.stats()
        except Exception:  # a closed client may refuse; keep the last known values
            stats = None
        state = state or _value(getattr(client, "state", self.state))
        updates: dict[str, Any] = {"state": state, "is_connected": state == "connected"}
        if stats is not None:
            updates["attempt"] = int(_stat(stats, "attempts", 0) or 0)
            rtt = _stat(stats, "rtt", None)
            if rtt is None:
                rtt_ms = _stat(stats, "rtt_ms", None)
                updates["rtt_ms"] = float(rtt_ms) if rtt_ms is not None else self.rtt_ms
            else:
                updates["rtt_ms"] = round(float(rtt) * 1000.0, 3)
            retry_in = _stat(stats, "next_retry_in", None)
            updates["retry_at"] = (
                round((time.time() + float(retry_in)) * 1000.0)
                if retry_in is not None and state == "reconnecting"
                else 0.0
            )
        for name in ("client_id", "user_id"):
            value = getattr(client, name, None)
            if isinstance(value, str) and value:
                updates[name] = value
        if state == "connected":
            updates["error"] = ""
        self._set(**updates)

    def _set(self, **updates: Any) -> None:
        # retry_at is recomputed from a relative delay on every refresh: only move it when the
        # scheduled attempt really changed (more than 50 ms), so observers are not spammed.
        if "retry_at" in updates and updates["retry_at"] and abs(updates["retry_at"] - self.retry_at) < 50:
            del updates["retry_at"]
        with self.hold_trait_notifications():
            for name, value in updates.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
