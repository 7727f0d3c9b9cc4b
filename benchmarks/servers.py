"""The servers under test, each run alone in its own process.

``python -m benchmarks.servers KIND [--redis URL] [--uvloop] [--secret S]`` listens on a
free port of 127.0.0.1 and prints ``READY <port>`` on stdout once it accepts connections;
SIGTERM stops it. KIND is one of:

* ``rtwidgets`` — :class:`rtwidgets.gateway.Gateway` (memory broker, or the Redis broker
  with ``--redis``; the Redis Cluster broker for a ``redis+cluster://`` URL). Only the
  per-connection publish rate limit is raised (one benchmark
  publisher sends thousands of messages per second; the default allows 200/s); every
  other setting is the default, and compression stays off (the gateway's default).
* ``raw`` — the Python floor: a minimal ``websockets`` server that keeps a set of
  connections per channel and fans every publish out with ``websockets.broadcast`` of
  one ``orjson``-encoded frame. With ``--redis`` every publish is one Redis PUBLISH and
  one pattern subscription relays all channels to local subscribers. No auth, history,
  validation or limits.
* ``socketio`` — python-socketio ``AsyncServer(async_mode='asgi')`` under uvicorn, rooms
  as channels; ``AsyncRedisManager`` with ``--redis``. permessage-deflate off.
* ``floor`` — the syscall floor (:mod:`benchmarks.floor`): the ``raw`` wire format served
  by a bare epoll loop writing one pre-framed byte string per subscriber with
  ``socket.send``; with ``--redis``, RESP on plain sockets. What the kernel costs here.

``--gc-log PATH`` appends every garbage collection of the server process (generation,
start, duration) to PATH, so pauses can be counted per measured phase.

Wire format of ``raw`` (the same frames as rtwidgets where they overlap):
``{"type":"subscribe","channel":C,"_id":N}`` -> ``{"type":"ack","id":N}``;
``{"type":"publish","channel":C,"data":D}`` -> ``{"type":"message","channel":C,"data":D}``
to every subscriber of C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import socket
import sys
from typing import Any

import orjson

__all__ = ["main", "raise_nofile_limit"]

HOST = "127.0.0.1"
# Not a real secret: the benchmark gateways only ever see benchmark clients.
DEFAULT_SECRET = "rtwidgets-benchmark-secret-0123456789abcdef"


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (thousands of sockets); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _ready(port: int) -> None:
    print(f"READY {port}", flush=True)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# ---------------------------------------------------------------------------- rtwidgets


async def serve_rtwidgets(secret: str, redis_url: str | None) -> None:
    from rtwidgets.gateway import Gateway
    from rtwidgets.gateway.brokers.redis_cluster import is_cluster_url, redis_broker_for

    # A redis+cluster:// URL (B12) gets the Redis Cluster broker, built here as the CLI does.
    broker: dict[str, Any] = {"redis": redis_url}
    if redis_url is not None and is_cluster_url(redis_url):
        broker = {"broker": redis_broker_for(redis_url)}
    gateway = Gateway(HOST, 0, secret=secret, publish_rate=1e9, publish_burst=10**9, **broker)
    await gateway.start_async()
    assert gateway.port is not None
    _ready(gateway.port)
    try:
        await _wait_for_signal()
    finally:
        await gateway.stop_async()


# ---------------------------------------------------------------------------- raw websockets


async def serve_raw(redis_url: str | None) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    rooms: dict[str, set[ServerConnection]] = {}
    redis_client: Any = None
    prefix = "rawbench:"

    if redis_url is not None:
        import redis.asyncio as aioredis

        redis_client = aioredis.Redis.from_url(redis_url)
        pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(prefix + "*")

        async def relay() -> None:
            # One reader for every channel: PUBLISH payloads are already-encoded frames.
            async for item in pubsub.listen():
                if item.get("type") != "pmessage":
                    continue
                room = rooms.get(item["channel"].decode()[len(prefix) :])
                if room:
                    broadcast(room, item["data"], text=True)

        relay_task = asyncio.create_task(relay())

    async def handler(ws: ServerConnection) -> None:
        mine: list[str] = []
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                kind = msg.get("type")
                if kind == "publish":
                    channel = msg["channel"]
                    frame = orjson.dumps({"type": "message", "channel": channel, "data": msg["data"]})
                    if redis_client is not None:
                        await redis_client.publish(prefix + channel, frame)
                    else:
                        room = rooms.get(channel)
                        if room:
                            broadcast(room, frame, text=True)
                elif kind == "subscribe":
                    channel = msg["channel"]
                    rooms.setdefault(channel, set()).add(ws)
                    mine.append(channel)
                    broadcast((ws,), orjson.dumps({"type": "ack", "id": msg.get("_id")}), text=True)
        finally:
            for channel in mine:
                room = rooms.get(channel)
                if room is not None:
                    room.discard(ws)
                    if not room:
                        del rooms[channel]

    async with serve(handler, HOST, 0, compression=None) as server:
        _ready(server.sockets[0].getsockname()[1])
        await _wait_for_signal()
    if redis_client is not None:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await relay_task
        await redis_client.aclose()


# ---------------------------------------------------------------------------- python-socketio


async def serve_socketio(redis_url: str | None) -> None:
    import socketio
    import uvicorn

    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )

    @sio.on("subscribe")  # type: ignore[misc]
    async def subscribe(sid: str, channel: str) -> bool:
        await sio.enter_room(sid, channel)
        return True

    @sio.on("publish")  # type: ignore[misc]
    async def publish(sid: str, msg: dict[str, Any]) -> None:
        await sio.emit("message", msg, room=msg["channel"])

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    _ready(port)
    await _wait_for_signal()
    server.should_exit = True
    await serving


# ---------------------------------------------------------------------------- GC pauses


def _log_gc_pauses(path: str) -> None:
    """Append ``<generation> <start monotonic_ns> <duration ns>`` per collection to ``path``.

    The load generator reads it after each measured phase (CLOCK_MONOTONIC is system-wide)
    to report how many of the server's own GC pauses fell inside the phase.
    """
    import gc
    import time

    log = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    started = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.monotonic_ns()
        else:
            log.write(f"{info['generation']} {started[0]} {time.monotonic_ns() - started[0]}\n")

    gc.callbacks.append(on_gc)


# ---------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=("rtwidgets", "raw", "socketio", "floor"))
    parser.add_argument("--redis", default=None, metavar="URL")
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--uvloop", action="store_true", help="run the server on uvloop")
    parser.add_argument("--gc-log", default=None, metavar="PATH", help="append GC pauses to PATH")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    if args.gc_log:
        _log_gc_pauses(args.gc_log)
    if args.kind == "floor":
        from .floor import serve_floor

        serve_floor(HOST, args.redis, _ready)  # no event loop by design
        return 0
    if args.kind == "rtwidgets":
        coro = serve_rtwidgets(args.secret, args.redis)
    elif args.kind == "raw":
        coro = serve_raw(args.redis)
    else:
        coro = serve_socketio(args.redis)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
