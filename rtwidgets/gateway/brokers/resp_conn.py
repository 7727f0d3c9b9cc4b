"""Lean Redis connections for the broker's two hot paths: the publish script and pub/sub.

Why not redis-py here (it stays in use for everything else): on a machine whose CPUs idle
between messages, its command and pub/sub paths cost ~0.3 ms and ~0.2 ms more per message
than a plain ``asyncio.Protocol`` (measured with a message every 25 ms: a redis-py
subscriber got it 600-640 µs after PUBLISH at p50, a Protocol 420-440 µs; an EVALSHA round
trip took 758 µs through redis-py, 418 µs on a bare socket). The broker's B6 benchmark row
(added latency of Redis fan-out) is made of exactly these two hops.

* :class:`PubSubConnection` hands every push (``[b"message", channel, data]``,
  ``[b"subscribe", channel, n]``, ...) to ``on_push`` synchronously, in the callback that
  read it: a gateway writes to its WebSocket clients without yielding to the loop first.
  SUBSCRIBE/UNSUBSCRIBE/PING are written without waiting; confirmations come as pushes.
* :class:`CommandConnection` pipelines commands: each :meth:`~CommandConnection.call`
  writes at once and awaits its reply in FIFO order. A reply that does not come within the
  timeout leaves the stream in an unknown state, so the connection is dropped (every
  pending call fails) and the owner opens a new one.

Errors on the wire are ``redis.exceptions.ConnectionError`` / ``TimeoutError`` (as from
redis-py); error replies are :class:`~.resp.RespError` (a redis-py ``ResponseError``).
Supported URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS with
default certificate checks) and ``unix://[[user]:password@]/path[?db=N]``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

from redis.connection import parse_url as _untyped_parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .resp import RespError, RespParser, encode_command

__all__ = [
    "CommandConnection",
    "NotSentError",
    "PubSubConnection",
    "Push",
    "check_url",
    "open_command",
    "open_pubsub",
]

Push = list[Any]
# What redis.connection.parse_url may return that these connections honour.
_URL_OPTIONS = frozenset({"host", "port", "db", "username", "password", "path", "connection_class"})
_C = TypeVar("_C", bound="_RespProtocol")
_P = TypeVar("_P", bound="PubSubConnection")


class NotSentError(RedisConnectionError):
    """The connection was already closed: the command never left (safe to send elsewhere)."""


class _RespProtocol(asyncio.Protocol):
    """Shared plumbing: transport, parser, the ``closed`` future, liveness counter."""

    def __init__(self) -> None:
        self._parser = RespParser()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.reads = 0  # reads that brought bytes (liveness: compare before and after a wait)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing() and not self.closed.done()

    def close(self) -> None:
        """Close on purpose: ``closed`` completes with ``None``."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
        self._finish(None)

    def abort(self, exc: BaseException) -> None:
        """Drop the connection because of ``exc`` (``closed`` completes with it)."""
        if self._transport is not None:
            self._transport.abort()
        self._finish(exc)

    def _write(self, data: bytes) -> None:
        if not self.is_open:
            raise NotSentError("Redis connection is closed")
        assert self._transport is not None
        self._transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            for value in self._parser.feed(data):
                self._on_value(value)
        except Exception as exc:  # a broken stream or a failing handler ends this connection
            self.abort(exc if isinstance(exc, RedisConnectionError) else _wrap(exc))

    def _on_value(self, value: Any) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None if self._closing else RedisConnectionError(f"Redis connection lost: {exc}"))

    def _finish(self, exc: BaseException | None) -> None:
        if self.closed.done():
            return
        if exc is None:
            self.closed.set_result(None)
        else:
            self.closed.set_exception(exc)
            self.closed.exception()  # mark retrieved: nobody may be awaiting it at this moment


class CommandConnection(_RespProtocol):
    """Pipelined request/reply connection. Create with :func:`open_command`."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()

    async def call(self, *args: str | bytes, timeout: float) -> Any:
        """Send one command; return its reply (bulk strings as ``bytes``).

        Raises :class:`~.resp.RespError` for an error reply (the connection stays usable),
        :class:`NotSentError` if the connection was already closed (nothing was sent),
        ``redis.exceptions.ConnectionError`` if it goes down before the reply (the command
        may or may not have run), and
        ``redis.exceptions.TimeoutError`` after ``timeout`` seconds (the connection is then
        dropped: the late reply would be taken for the next command's).
        """
        self._write(encode_command(*args))
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append(fut)
        try:
            reply = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            err = RedisTimeoutError(f"no reply from Redis within {timeout}s")
            self.abort(err)
            raise err from None
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _on_value(self, value: Any) -> None:
        if not self._waiting:
            raise RedisConnectionError(f"unexpected reply from Redis: {value!r}")
        fut = self._waiting.popleft()
        if not fut.done():  # a cancelled caller's reply is read and dropped
            fut.set_result(value)

    def _finish(self, exc: BaseException | None) -> None:
        super()._finish(exc)
        failure = exc if exc is not None else RedisConnectionError("Redis connection closed")
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(failure)
                fut.exception()  # the caller may have gone (timeout, cancellation)


class PubSubConnection(_RespProtocol):
    """One pub/sub connection. Create with :func:`open_pubsub`.

    ``on_push(item)`` runs synchronously for every push; if it raises, the connection is
    aborted with that error. Only the AUTH reply (before any subscription) is not a push.
    """

    def __init__(self, on_push: Callable[[Push], None]) -> None:
        super().__init__()
        self._on_push = on_push
        self._auth: asyncio.Future[Any] | None = None

    def subscribe(self, *channels: str) -> None:
        if channels:
            self._write(encode_command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._write(encode_command("UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        self._write(encode_command("PING"))

    def _on_value(self, value: Any) -> None:
        if self._auth is not None and not self._auth.done():
            self._auth.set_result(value)  # the one reply before pub/sub mode
        elif isinstance(value, RespError):
            raise RedisConnectionError(f"Redis refused a pub/sub command: {value}")
        elif isinstance(value, list) and value:
            self._on_push(value)
        else:
            raise RedisConnectionError(f"unexpected reply on the pub/sub connection: {value!r}")

    def _finish(self, exc: BaseException | None) -> None:
        if self._auth is not None and not self._auth.done():
            self._auth.set_exception(exc or RedisConnectionError("connection closed during AUTH"))
            self._auth.exception()
        super()._finish(exc)

    async def _call_before_subscribing(self, *args: str, timeout: float) -> Any:
        self._auth = self._loop.create_future()
        self._write(encode_command(*args))
        return await asyncio.wait_for(asyncio.shield(self._auth), timeout)


def _wrap(exc: Exception) -> RedisConnectionError:
    err = RedisConnectionError(f"Redis stream failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


# redis-py leaves parse_url unannotated; it returns the connection keyword arguments.
_parse_url = cast(Callable[[str], dict[str, Any]], _untyped_parse_url)


def check_url(url: str) -> dict[str, Any]:
    """Parse ``url`` (as redis-py does); raise ``ValueError`` naming what is not supported."""
    opts = _parse_url(url)
    unsupported = sorted(set(opts) - _URL_OPTIONS)
    if unsupported:
        raise ValueError(
            f"Redis URL options not supported: {', '.join(unsupported)} "
            "(use redis://[[user]:password@]host[:port][/db], rediss://... or unix://...)"
        )
    return opts


async def _connect(url: str, factory: Callable[[], _C], timeout: float) -> tuple[_C, dict[str, Any]]:
    opts = check_url(url)
    loop = asyncio.get_running_loop()
    if opts.get("path"):
        coro = loop.create_unix_connection(factory, opts["path"])
    else:
        tls = "SSL" in getattr(opts.get("connection_class"), "__name__", "")
        context = ssl.create_default_context() if tls else None
        coro = loop.create_connection(
            factory, opts.get("host", "localhost"), int(opts.get("port", 6379)), ssl=context
        )
    _, conn = await asyncio.wait_for(coro, timeout)
    return conn, opts


def _auth_args(opts: dict[str, Any]) -> tuple[str, ...] | None:
    if opts.get("password") is None:
        return None
    username = opts.get("username")
    return ("AUTH", username, str(opts["password"])) if username else ("AUTH", str(opts["password"]))


async def open_command(url: str, timeout: float) -> CommandConnection:
    """A :class:`CommandConnection` to ``url``, authenticated and on the URL's database.

    Raises ``redis.exceptions.ConnectionError`` (or ``OSError`` / ``TimeoutError``) when
    Redis cannot be reached or refuses the credentials; ``ValueError`` for an unsupported URL.
    """
    conn, opts = await _connect(url, CommandConnection, timeout)
    try:
        auth = _auth_args(opts)
        if auth is not None:
            await conn.call(*auth, timeout=timeout)
        if int(opts.get("db") or 0):
            await conn.call("SELECT", str(int(opts["db"])), timeout=timeout)
    except RespError as exc:
        conn.close()
        raise RedisConnectionError(f"Redis refused the connection set-up: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


async def open_pubsub(
    url: str,
    on_push: Callable[[Push], None],
    timeout: float,
    *,
    kind: Callable[[Callable[[Push], None]], _P] = PubSubConnection,  # type: ignore[assignment]
) -> _P:
    """A :class:`PubSubConnection` to ``url`` (authenticated); errors as :func:`open_command`.

    ``kind`` builds the connection from ``on_push`` (a subclass, e.g. the cluster broker's
    sharded one)."""
    conn, opts = await _connect(url, lambda: kind(on_push), timeout)
    try:
        auth = _auth_args(opts)
        if auth is not None:
            reply = await conn._call_before_subscribing(*auth, timeout=timeout)
            if isinstance(reply, RespError):
                raise RedisConnectionError(f"Redis refused AUTH: {reply}")
    except BaseException:
        conn.close()
        raise
    return conn
