"""Run one Gateway on a RedisBroker in its own process (for the multi-gateway tests).

Usage: ``python gateway_proc.py REDIS_URL SECRET KEY_PREFIX PRESENCE_TTL``. Prints
``PORT <n>`` once listening, then serves until SIGTERM/SIGINT (or is killed with -9).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker


async def main(url: str, secret: str, prefix: str, ttl: float) -> None:
    broker = RedisBroker(url, key_prefix=prefix, presence_ttl=ttl)
    gateway = Gateway("127.0.0.1", 0, secret=secret, broker=broker)
    await gateway.start_async()
    print(f"PORT {gateway.port} GW {broker.gateway_id}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
