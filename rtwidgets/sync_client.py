"""Blocking facade over :mod:`rtwidgets.client` for notebooks, scripts and threads.

The asyncio client runs on the process-wide background loop (:func:`rtwidgets.runtime.get_runtime`),
so the connection keeps reading, heartbeating and reconnecting while the calling thread (or a long
notebook cell) is busy. Every blocking call goes through ``Runtime.run`` with a timeout and raises
the same exceptions as the asyncio client (``TimeoutError`` when the timeout passes).

Callbacks registered here run **on the runtime thread**: keep them short and thread-safe (hand work
to your own thread or loop if it is heavy). Reading attributes (``messages``, ``members``, ...)
returns copies taken on the runtime thread, so they are consistent snapshots.

Blocking methods must not be called from the runtime thread itself (e.g. inside a callback): that
would deadlock, so they raise ``RuntimeError``; use the asyncio API there. Reading attributes is fine.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rtwidgets.client import ChannelHandle, RealtimeConnection
from rtwidgets.client_errors import Unsubscribe
from rtwidgets.core.channel import ChannelState, Reset
from rtwidgets.core.connection import ConnectionState, ConnectionStats
from rtwidgets.runtime import Runtime, get_runtime

__all__ = ["SyncChannel", "SyncConnection", "connect"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


def connect(
    url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
) -> SyncConnection:
    """Connect (blocking) and return a :class:`SyncConnection`.

    ``kwargs`` go to :class:`~rtwidgets.client.RealtimeConnection` (``auth``, ``reconnect``,
    ``heartbeat``, ``queue_limit``, ``ack_timeout``, ...). Raises ``AuthenticationError``,
    ``ConnectionFailedError`` or ``TimeoutError`` (the connection is then closed).

    Args:
        url: the gateway's ``ws://`` or ``wss://`` URL.
        token: the token (or pass ``auth=``).
        timeout: seconds to wait for the connection; also the default timeout of every
            blocking call on the returned connection.
        **kwargs: passed to :class:`~rtwidgets.client.RealtimeConnection`.

    Raises:
        AuthenticationError: the gateway refused the token.
        ConnectionFailedError: retries are exhausted or the gateway closed for good.
        TimeoutError: not connected within ``timeout`` seconds.
        ValueError: a bad URL, both ``token`` and ``auth``, or an option out of range.
        TypeError: an unknown keyword argument.
        RuntimeError: called on the runtime thread.
    """
    runtime = get_runtime()

    async def make() -> RealtimeConnection:
        conn = RealtimeConnection(url, token=token, **kwargs)
        await conn.connect(timeout=timeout)
        return conn

    # The inner connect() times out first and closes cleanly; the outer bound is a backstop.
    conn = runtime.run(make(), timeout=timeout + 5.0)
    return SyncConnection(conn, runtime, timeout)


class _Bound:
    def __init__(self, runtime: Runtime, timeout: float) -> None:
        self._runtime = runtime
        self.timeout = timeout

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return self._runtime.run(coro, timeout=self.timeout if timeout is None else timeout)

    def _read(self, fn: Callable[[], T]) -> T:
        """Evaluate ``fn`` on the runtime thread (a consistent snapshot of loop-owned state)."""
        if self._runtime.in_runtime_thread():
            return fn()  # already on the loop (e.g. inside a callback)

        async def read() -> T:
            return fn()

        return self._runtime.run(read(), timeout=self.timeout)


class SyncConnection(_Bound):
    """Blocking handle on a :class:`RealtimeConnection` living on the runtime loop."""

    def __init__(self, conn: RealtimeConnection, runtime: Runtime, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(runtime, timeout)
        self.conn = conn

    @property
    def state(self) -> ConnectionState:
        return self.conn.state

    @property
    def client_id(self) -> str | None:
        return self.conn.client_id

    @property
    def user_id(self) -> str | None:
        return self.conn.user_id

    def stats(self) -> ConnectionStats:
        return self._read(self.conn.stats)

    def on_state_change(
        self, cb: Callable[[ConnectionState, ConnectionState, str | None], Any]
    ) -> Unsubscribe:
        return self.conn.on_state_change(cb)

    def on_error(self, cb: Callable[[Exception], Any]) -> Unsubscribe:
        return self.conn.on_error(cb)

    def on_event(self, cb: Callable[[Any], Any]) -> Unsubscribe:
        return self.conn.on_event(cb)

    def subscribe(
        self,
        channel: str,
        *,
        presence: bool = False,
        presence_data: dict[str, Any] | None = None,
        history: int = 0,
        state: bool = False,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_presence: Callable[[Any], Any] | None = None,
        on_reset: Callable[[Reset], Any] | None = None,
        timeout: float | None = None,
    ) -> SyncChannel:
        """Subscribe (blocking until acked); see :meth:`RealtimeConnection.subscribe`."""
        handle = self._run(
            self.conn.subscribe(
                channel,
                presence=presence,
                presence_data=presence_data,
                history=history,
                state=state,
                on_message=on_message,
                on_presence=on_presence,
                on_reset=on_reset,
            ),
            timeout,
        )
        return SyncChannel(handle, self._runtime, self.timeout)

    def wait_for_state(self, *states: ConnectionState, timeout: float | None = None) -> ConnectionState:
        t = self.timeout if timeout is None else timeout
        return self._run(self.conn.wait_for_state(*states, timeout=t), t + 5.0)

    def close(self, timeout: float | None = None) -> None:
        """Close the connection and every channel (blocking)."""
        self._run(self.conn.close(), timeout)

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncConnection {self.conn!r}>"


class SyncChannel(_Bound):
    """Blocking handle on a :class:`ChannelHandle`."""

    def __init__(self, handle: ChannelHandle, runtime: Runtime, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(runtime, timeout)
        self.handle = handle

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def status(self) -> ChannelState:
        return self.handle.status

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the retained messages (oldest first)."""
        return self._read(lambda: list(self.handle.messages))

    @property
    def members(self) -> list[dict[str, Any]]:
        return self._read(lambda: self.handle.members)

    @property
    def users(self) -> list[str]:
        return self._read(lambda: self.handle.users)

    @property
    def state(self) -> dict[str, Any] | None:
        return self._read(lambda: None if self.handle.state is None else dict(self.handle.state))

    @property
    def last_event_id(self) -> str | None:
        return self.handle.last_event_id

    @property
    def epoch(self) -> str | None:
        return self.handle.epoch

    def stats(self) -> dict[str, Any]:
        return self._read(self.handle.stats)

    def on_message(self, cb: Callable[[dict[str, Any]], Any]) -> Unsubscribe:
        return self.handle.on_message(cb)

    def on_presence(self, cb: Callable[[Any], Any]) -> Unsubscribe:
        return self.handle.on_presence(cb)

    def on_reset(self, cb: Callable[[Reset], Any]) -> Unsubscribe:
        return self.handle.on_reset(cb)

    def publish(
        self,
        data: Any,
        *,
        key: str | None = None,
        ephemeral: bool = False,
        ack: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Publish and block until acked (returns the ack) or raise the client's error."""
        return self._run(self.handle.publish(data, key=key, ephemeral=ephemeral, ack=ack), timeout)

    def update_presence(self, data: dict[str, Any], timeout: float | None = None) -> None:
        self._run(self.handle.update_presence(data), timeout)

    def sync(self, timeout: float | None = None) -> dict[str, Any]:
        return self._run(self.handle.sync(), timeout)

    def unsubscribe(self, timeout: float | None = None) -> None:
        self._run(self.handle.unsubscribe(), timeout)

    def wait_for(self, predicate: Callable[[ChannelHandle], bool], timeout: float | None = None) -> None:
        """Block until ``predicate(handle)`` holds (evaluated on the runtime thread)."""
        t = self.timeout if timeout is None else timeout
        self._run(self.handle.wait_for(predicate, t), t + 5.0)

    def __repr__(self) -> str:
        return f"<SyncChannel {self.handle!r}>"
