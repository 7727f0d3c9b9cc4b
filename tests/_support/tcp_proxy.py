"""A TCP proxy on 127.0.0.1 that can cut the network to a server (Redis) on demand."""

from __future__ import annotations

import asyncio


class TcpProxy:
    """An asyncio TCP proxy on 127.0.0.1 in front of Redis, to cut the network on demand.

    ``cut()`` drops every open connection and refuses new ones until ``restore()``;
    Redis itself keeps running with its data (unlike a restart). ``break_on(marker, n)``
    makes the next ``n`` client chunks containing ``marker`` kill their connection instead
    of reaching Redis: a socket that looks alive in a pool but dies on first use.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._break_marker = b""
        self._break_left = 0
        self.broken = 0  # connections killed by break_on

    def break_on(self, marker: bytes, times: int) -> None:
        """Kill the connection of each of the next ``times`` client chunks containing ``marker``."""
        self._break_marker, self._break_left = marker, times

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if dst is up_writer and self._break_left and self._break_marker in data:
                        self._break_left -= 1
                        self.broken += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
