"""A fault-injecting TCP proxy for tests and notebooks: latency, throttling, partitions, resets.

Put a :class:`ChaosProxy` between a client and a gateway (or a gateway and Redis) and break
the network on purpose::

    proxy = ChaosProxy(gateway.port).start()        # sync: runs on the rtwidgets runtime
    conn = RealtimeConnection(proxy.url, token=...)  # clients connect to the proxy
    proxy.latency(0.2, jitter=0.05)                 # every chunk is delayed 150-250 ms
    proxy.pause()                                   # partition: sockets stay open, nothing flows
    proxy.resume()                                  # buffered bytes flow again, in order
    proxy.cut()                                     # reset every current connection (TCP RST)
    proxy.drop_new(True)                            # refuse new connections (reset at accept)
    proxy.throttle(10_000)                          # at most 10 kB/s per connection and direction
    proxy.break_on(b"EVALSHA", times=2)             # the next 2 client chunks holding it reset
    proxy.heal()                                    # clear every fault

Contracts:

* Bytes are forwarded **in order** and never altered or dropped while a connection lives;
  faults only delay them (``latency``, ``throttle``, ``pause``) or kill the whole connection
  (``cut``, ``drop_new``, ``break_on``), exactly like a real network under TCP.
* While paused, each direction of each connection buffers at most ``max_buffer_bytes``; beyond
  that the proxy stops reading, so the sender's socket buffers fill up (real backpressure).
* Every control method is thread-safe and returns immediately; it may be called from the
  proxy's own loop, another event loop or plain synchronous code (a notebook cell).
* Several targets make it a round-robin balancer: a new connection goes to the next target
  that accepts it (targets that refuse are skipped), so clients can fail over.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rtwidgets.runtime import await_on_loop, get_runtime, stop_on_loop

__all__ = ["ChaosProxy", "ProxyStats"]

Target = tuple[str, int]

_CHUNK = 16384


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of a proxy's counters and current faults.

    ``bytes_up`` counts client -> target bytes delivered, ``bytes_down`` target -> client;
    ``connections_refused`` counts connections reset at accept (``drop_new``) or because no
    target accepted them; ``connections_cut`` counts connections reset by :meth:`ChaosProxy.cut`;
    ``connections_broken`` counts connections reset by :meth:`ChaosProxy.break_on`.
    """

    connections_total: int
    connections_active: int
    connections_refused: int
    connections_cut: int
    bytes_up: int
    bytes_down: int
    paused: bool
    dropping_new: bool
    latency: float
    jitter: float
    throttle: float | None
    connections_broken: int = 0


def _target(value: Target | int | str) -> Target:
    if isinstance(value, bool):
        raise TypeError(f"a target is a port, 'host:port' or (host, port), not {value!r}")
    if isinstance(value, int):
        return ("127.0.0.1", value)
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"target {value!r} must look like 'host:port'")
        return (host.strip("[]") or "127.0.0.1", int(port))
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return (str(value[0]), value[1])
    raise TypeError(f"a target is a port, 'host:port' or (host, port), not {value!r}")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a graceful FIN: a hard network fault."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, the target side, and two pump tasks."""

    __slots__ = ("client", "tasks", "upstream")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)
        for task in self.tasks:
            task.cancel()


class ChaosProxy:
    """An asyncio TCP proxy on ``host:port`` (port 0: a free one) forwarding to ``targets``.

    ``targets``: one or more of a port (on 127.0.0.1), ``"host:port"`` or ``(host, port)``.
    ``seed`` makes the latency jitter reproducible. Start with ``await start_async()`` on a
    running loop, or ``start()`` from synchronous code (the rtwidgets runtime thread).

    Args:
        *targets: where connections go, in turn (at least one).
        host: the address to listen on.
        port: the port to listen on (``0``: a free one, see :attr:`port` once started).
        max_buffer_bytes: bytes (at least 16384) held per connection and direction (e.g.
            while delayed); past it the proxy stops reading from the sender.
        seed: seeds the latency jitter's random source (``None``: not reproducible).

    Raises:
        ValueError: no target, a malformed ``"host:port"``, or ``max_buffer_bytes`` below
            16384.
        TypeError: a target that is neither a port, a ``"host:port"`` str nor a
            ``(host, port)`` tuple.
    """

    def __init__(
        self,
        *targets: Target | int | str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_buffer_bytes: int = 262144,
        seed: int | None = None,
    ) -> None:
        if not targets:
            raise ValueError("ChaosProxy needs at least one target")
        if max_buffer_bytes < _CHUNK:
            raise ValueError(f"max_buffer_bytes must be at least {_CHUNK}")
        self._targets: list[Target] = [_target(t) for t in targets]
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._queue_chunks = max(1, max_buffer_bytes // _CHUNK)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # guards the fault settings and counters below
        self._latency = 0.0
        self._jitter = 0.0
        self._throttle: float | None = None
        self._paused = False
        self._dropping = False
        self._next_target = 0
        self._total = self._refused = self._cut = self._broken = 0
        self._break_marker = b""
        self._break_left = 0
        self._bytes = {"up": 0, "down": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._flowing: asyncio.Event | None = None  # set while not paused (lives on the loop)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``ws://host:port`` of the proxy (for WebSocket clients)."""
        return f"ws://{self.address[0]}:{self.address[1]}"

    @property
    def address(self) -> Target:
        """``(host, port)`` the proxy listens on."""
        if self.port is None:
            raise RuntimeError("the proxy is not started; call start() or await start_async()")
        return (self.host, self.port)

    @property
    def targets(self) -> list[Target]:
        with self._lock:
            return list(self._targets)

    async def start_async(self) -> ChaosProxy:
        """Listen on the running loop. Returns ``self``; raises ``OSError`` if it cannot bind."""
        if self._server is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        if not self._paused:
            self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop_async(self) -> None:
        """Reset every connection and stop listening. Idempotent."""
        loop, server = self._loop, self._server
        if server is None or loop is None:
            return
        await await_on_loop(loop, self._stop_here)

    async def _stop_here(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for link in list(self._links):
            link.reset()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    def start(self, timeout: float = 10.0) -> ChaosProxy:
        """Start on the rtwidgets runtime thread (for synchronous code). Returns ``self``.

        Args:
            timeout: seconds to wait for the listening socket.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: called on the runtime thread.
            TimeoutError: not listening within ``timeout`` seconds.
        """
        if self._server is not None:
            return self
        return get_runtime().run(self.start_async(), timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Synchronous :meth:`stop_async` (not from the proxy's own loop). Idempotent.

        Args:
            timeout: seconds to wait for every connection to be reset and the socket closed.

        Raises:
            RuntimeError: called on the proxy's own loop (await :meth:`stop_async` there).
            TimeoutError: not stopped within ``timeout`` seconds (the stop goes on).
        """
        loop = self._loop
        if self._server is None or loop is None:
            return
        if not stop_on_loop(loop, self._stop_here, timeout, owner="ChaosProxy"):
            self._server = None  # its loop no longer runs: nothing can be awaited there

    async def __aenter__(self) -> ChaosProxy:
        return await self.start_async()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port is not None else "stopped"
        return f"<ChaosProxy {where} -> {', '.join(f'{h}:{p}' for h, p in self.targets)}>"

    # ------------------------------------------------------------------ controls (thread-safe)

    def latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by ``seconds`` ± ``jitter`` (uniform; never below 0). Order is kept.

        Args:
            seconds: the added one-way delay (>= 0; ``0``: none).
            jitter: the spread around it (>= 0).

        Raises:
            ValueError: ``seconds`` or ``jitter`` is negative.
        """
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        with self._lock:
            self._latency, self._jitter = float(seconds), float(jitter)

    def throttle(self, bytes_per_sec: float | None) -> None:
        """Limit each connection and direction to ``bytes_per_sec``; ``None`` lifts the limit.

        Args:
            bytes_per_sec: the limit (> 0), or ``None``.

        Raises:
            ValueError: ``bytes_per_sec`` is not > 0.
        """
        if bytes_per_sec is not None and bytes_per_sec <= 0:
            raise ValueError("bytes_per_sec must be > 0 (or None for no limit)")
        with self._lock:
            self._throttle = None if bytes_per_sec is None else float(bytes_per_sec)

    def pause(self) -> None:
        """Stop forwarding in both directions but keep every socket open (a network partition)."""
        with self._lock:
            self._paused = True
        self._on_loop(self._apply_pause)

    def resume(self) -> None:
        """Forward again; bytes buffered during the pause are delivered first, in order."""
        with self._lock:
            self._paused = False
        self._on_loop(self._apply_pause)

    def cut(self) -> int:
        """Reset (TCP RST) every current connection; returns how many were cut.

        New connections are still accepted (combine with :meth:`drop_new` for an outage).
        """
        return self._on_loop(self._cut_now, wait=True) or 0

    def drop_new(self, enabled: bool = True) -> None:
        """While enabled, new connections are reset right after accept (target unreachable).

        Args:
            enabled: ``True`` to drop new connections, ``False`` to accept them again.
        """
        with self._lock:
            self._dropping = bool(enabled)

    def break_on(self, marker: bytes, times: int = 1) -> None:
        """Reset (TCP RST) the connection of each of the next ``times`` client chunks holding ``marker``.

        The chunk (a read of up to 16 kB from the client) is not forwarded: the target never
        sees it, and the client sees its connection die on that request, like a pooled socket
        that looked alive but was dead. Only client -> target bytes are matched; a marker split
        across two reads is not. ``times=0`` disarms it.

        Args:
            marker: the bytes to look for (non-empty).
            times: how many matching chunks break their connection (>= 0).

        Raises:
            TypeError: ``marker`` is not bytes.
            ValueError: ``marker`` is empty or ``times`` is negative.
        """
        if not isinstance(marker, (bytes, bytearray)):
            raise TypeError(f"marker must be bytes, not {type(marker).__name__}")
        if not marker:
            raise ValueError("marker must not be empty")
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._break_marker, self._break_left = bytes(marker), int(times)

    def heal(self) -> None:
        """Clear every fault: no latency, no throttle, not paused, accepting connections."""
        with self._lock:
            self._latency = self._jitter = 0.0
            self._throttle = None
            self._dropping = False
            self._break_left = 0
        self.resume()

    def set_targets(self, *targets: Target | int | str) -> None:
        """Send new connections to ``targets`` from now on (current ones are untouched).

        Args:
            *targets: as for the constructor: ports, ``"host:port"`` or ``(host, port)``.

        Raises:
            ValueError: no target, or a malformed ``"host:port"``.
            TypeError: a target of another type.
        """
        if not targets:
            raise ValueError("at least one target is needed")
        parsed = [_target(t) for t in targets]
        with self._lock:
            self._targets = parsed
            self._next_target = 0

    def stats(self) -> ProxyStats:
        """Counters and current faults (see :class:`ProxyStats`)."""
        with self._lock:
            return ProxyStats(
                connections_total=self._total,
                connections_active=len(self._links),
                connections_refused=self._refused,
                connections_cut=self._cut,
                bytes_up=self._bytes["up"],
                bytes_down=self._bytes["down"],
                paused=self._paused,
                dropping_new=self._dropping,
                latency=self._latency,
                jitter=self._jitter,
                throttle=self._throttle,
                connections_broken=self._broken,
            )

    # ------------------------------------------------------------------ internals

    def _on_loop(self, fn: Callable[[], Any], *, wait: bool = False) -> Any:
        """Run ``fn`` on the proxy loop: directly when already there, else thread-safely."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None  # not started: settings are applied at start
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        if not wait:
            loop.call_soon_threadsafe(fn)
            return None
        return asyncio.run_coroutine_threadsafe(_as_coro(fn), loop).result(10.0)

    def _apply_pause(self) -> None:
        if self._flowing is None:
            return
        with self._lock:
            paused = self._paused
        if paused:
            self._flowing.clear()
        else:
            self._flowing.set()

    def _cut_now(self) -> int:
        links = list(self._links)
        for link in links:
            link.reset()
        self._links.difference_update(links)
        with self._lock:
            self._cut += len(links)
        return len(links)

    def _breaks(self, data: bytes) -> bool:
        """Whether this client chunk is one ``break_on`` must kill (counted when it is)."""
        with self._lock:
            if not self._break_left or self._break_marker not in data:
                return False
            self._break_left -= 1
            self._broken += 1
            return True

    def _delay(self) -> float:
        with self._lock:
            latency, jitter = self._latency, self._jitter
            if latency == 0 and jitter == 0:
                return 0.0
            return max(0.0, latency + self._rng.uniform(-jitter, jitter))

    def _pick_targets(self) -> list[Target]:
        with self._lock:
            n = len(self._targets)
            start = self._next_target % n
            self._next_target = (start + 1) % n
            return self._targets[start:] + self._targets[:start]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._total += 1
            dropping = self._dropping
        if dropping:
            self._refuse(writer)
            return
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for host, port in self._pick_targets():
            try:
                upstream = await asyncio.open_connection(host, port)
                break
            except OSError:
                continue  # this target is down: try the next one (failover)
        if upstream is None:
            self._refuse(writer)
            return
        up_reader, up_writer = upstream
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, "up")),
            asyncio.create_task(self._pump(up_reader, writer, "down")),
        ]
        try:
            done, pending = await asyncio.wait(link.tasks, return_when=asyncio.FIRST_EXCEPTION)
            if any(t.exception() is not None for t in done if not t.cancelled()):
                link.reset()  # a reset on one side is passed on to the other
            elif pending:
                await asyncio.wait(pending)
        finally:
            self._links.discard(link)
            for task in link.tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.close()

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._refused += 1
        _reset(writer)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
        """Copy ``src`` to ``dst`` through a bounded queue, applying latency, throttle, pause."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(self._queue_chunks)
        flowing = self._flowing
        assert flowing is not None

        async def read() -> None:
            last_due = 0.0
            while True:
                data = await src.read(_CHUNK)
                if not data:
                    await queue.put(None)
                    return
                if direction == "up" and self._breaks(data):
                    # Raised in the reader: the pump re-raises it and _serve resets both sides.
                    raise ConnectionResetError("reset by ChaosProxy.break_on")
                # TCP never reorders: a smaller jitter sample must not overtake earlier bytes.
                last_due = max(loop.time() + self._delay(), last_due)
                await queue.put((last_due, data))

        reader = asyncio.create_task(read())
        try:
            while True:
                if reader.done():
                    reader.result()  # raises the read error (e.g. connection reset)
                    item = await queue.get()  # it ended cleanly, so its None sentinel is queued
                else:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        continue
                    item = getter.result()
                if item is None:
                    if dst.can_write_eof():
                        await flowing.wait()
                        dst.write_eof()
                    return
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._write(dst, data, direction, flowing)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _write(
        self, dst: asyncio.StreamWriter, data: bytes, direction: str, flowing: asyncio.Event
    ) -> None:
        view = memoryview(data)
        while view:
            await flowing.wait()
            with self._lock:
                rate = self._throttle
            # Throttled: send slices of ~50 ms worth of bytes, sleeping in between.
            size = len(view) if rate is None else max(1, min(len(view), int(rate * 0.05)))
            piece, view = view[:size], view[size:]
            dst.write(piece)
            await dst.drain()
            with self._lock:
                self._bytes[direction] += size
            if rate is not None:
                await asyncio.sleep(size / rate)


async def _as_coro(fn: Callable[[], Any]) -> Any:
    return fn()
