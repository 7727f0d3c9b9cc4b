"""Entry point: one Gateway on a RedisBroker with a key prefix and presence TTL, in its own process.

``python -m tests._support.redis_gateway --port N --secret S --redis URL --key-prefix P
--presence-ttl SECONDS [--log-level LEVEL]`` (run from the repository root). Prints
``redis gateway listening on ws://127.0.0.1:N`` once listening (the readiness line
:class:`~tests._support.gateway_proc.GatewayProcess` waits for), then serves until
SIGTERM/SIGINT (or is killed with -9). The product CLI has no key prefix or presence TTL
option; tests sharing one Redis need the first, liveness tests a short second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests._support.redis_gateway")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--redis", required=True, metavar="URL")
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--presence-ttl", type=float, required=True, metavar="SECONDS")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    broker = RedisBroker(args.redis, key_prefix=args.key_prefix, presence_ttl=args.presence_ttl)
    gateway = Gateway("127.0.0.1", args.port, secret=args.secret, broker=broker)
    await gateway.start_async()
    print(f"redis gateway listening on ws://127.0.0.1:{gateway.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop_async()


if __name__ == "__main__":
    options = parse_args()
    logging.basicConfig(level=options.log_level.upper())
    asyncio.run(serve(options))
