"""A TCP proxy the e2e tests put between a notebook kernel and the gateway.

It plays the network: :meth:`TcpProxy.cut` breaks every open connection and refuses new
ones (as a dropped link would), :meth:`TcpProxy.restore` lets connections through again,
and ``delay`` adds latency to every chunk in both directions (so an optimistic
``pending`` state lasts long enough for a browser to show it). Bytes are forwarded
unchanged and in order.

The proxy runs its own asyncio loop on a daemon thread, so the synchronous Playwright
tests can drive it from the main thread. All public methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

T = TypeVar("T")
CHUNK = 65536


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``port`` is the
    listening port (a free one chosen by the OS).
    """

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.target_host = target_host
        self.target_port = target_port
        self.delay = float(delay)
        self.port = 0
        self.accepted = 0  # connections accepted and forwarded
        self.refused = 0  # connections refused while cut
        self._refusing = False
        self._transports: set[asyncio.Transport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._abort_all()
            # Let every forwarding task finish (they see the aborted transports), so none is
            # destroyed pending when the loop stops.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        """Drop every open connection (no close handshake) and refuse new ones."""

        async def do() -> None:
            self._refusing = True
            self._abort_all()

        self._call(do())

    def restore(self) -> None:
        """Accept and forward connections again."""

        async def do() -> None:
            self._refusing = False

        self._call(do())

    @property
    def url(self) -> str:
        """The ``ws://`` URL of the proxied gateway."""
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ proxy loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _abort_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.transport
        if self._refusing:
            self.refused += 1
            client.abort()  # a reset, like a link that is down
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client.abort()
            return
        self.accepted += 1
        pair = (client, up_writer.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk released ``delay`` seconds after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            pass  # one side went away (or was cut): the finally of _handle aborts both
        finally:
            sender.cancel()
            writer.transport.abort()
