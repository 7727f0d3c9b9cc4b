"""Soak test (not run in CI): many clients with churn against a gateway subprocess, while its
RSS and open file descriptors are sampled. Both must stay flat once warmed up.

    .venv/bin/python scripts/soak.py                    # 10 min, 1000 clients
    .venv/bin/python scripts/soak.py --duration 240 --clients 1000 --json soak.json

The gateway runs as ``python -m rtwidgets gateway`` (optionally ``--redis URL``). The clients
are real :class:`rtwidgets.client.RealtimeConnection` objects in this process, spread over
``--channels`` channels, some of them with presence. Every second ``--churn`` of them close and
are replaced by new ones (connect, subscribe with history); ``--rate`` messages per second are
published in total. Every ``--every`` seconds one table row is printed: gateway RSS, open fds,
connections (from ``/healthz``), messages delivered to clients since the previous row, errors.

Exit status: 0 when the run completed, every client that should be connected was, and no
client saw an error; 1 otherwise. Whether RSS and fds are *flat* is judged from the table
(the summary line prints the growth between the first sample after warm-up and the last).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from rtwidgets.auth import issue_token
from rtwidgets.client import RealtimeConnection, RealtimeError
from rtwidgets.core.connection import HeartbeatConfig, ReconnectConfig


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    connections: int
    clients: int
    delivered: int
    published: int
    errors: int
    churned: int


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.secret = secrets.token_hex(32)
        self.rng = random.Random(args.seed)
        self.clients: list[RealtimeConnection] = []
        self.delivered = 0
        self.published = 0
        self.errors: list[str] = []
        self.churned = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.serial = 0

    # ------------------------------------------------------------------ gateway

    def start_gateway(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [sys.executable, "-m", "rtwidgets", "gateway", "--port", str(self.port)]
        args += ["--secret", self.secret, "--log-level", "warning"]
        args += ["--history", str(self.args.history)]
        if self.args.redis:
            args += ["--redis", self.args.redis]
        out = (workdir / "soak-gateway.out").open("wb")
        err = (workdir / "soak-gateway.err").open("wb")
        self.proc = subprocess.Popen(args, stdout=out, stderr=err)
        deadline = time.monotonic() + 20
        while "listening on" not in (workdir / "soak-gateway.out").read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"gateway did not start: {(workdir / 'soak-gateway.err').read_text()[-2000:]}"
                )
            time.sleep(0.05)

    def gateway_usage(self) -> tuple[float, int, int]:
        assert self.proc is not None
        p = psutil.Process(self.proc.pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as r:
            health = json.loads(r.read())
        return p.memory_info().rss / 2**20, p.num_fds(), int(health["connections"])

    # ------------------------------------------------------------------ clients

    async def open_client(self) -> RealtimeConnection | None:
        self.serial += 1
        user = f"u{self.serial}"
        conn = RealtimeConnection(
            f"ws://127.0.0.1:{self.port}",
            token=issue_token(self.secret, user),
            reconnect=ReconnectConfig(max_attempts=100, base_delay=0.1, max_delay=2.0),
            heartbeat=HeartbeatConfig(interval=20.0, timeout=10.0),
            max_messages=50,
        )
        conn.on_error(lambda exc: self.errors.append(f"{user}: {exc}"))
        try:
            await conn.connect(timeout=30)
            channel = f"soak:{self.rng.randrange(self.args.channels)}"
            presence = self.rng.random() < 0.2
            handle = await conn.subscribe(channel, presence=presence, presence_data={"u": user}, history=5)
            handle.on_message(self._count)
        except (RealtimeError, TimeoutError) as exc:
            self.errors.append(f"{user}: could not join: {exc}")
            await conn.close()
            return None
        return conn

    def _count(self, _frame: dict[str, Any]) -> None:
        self.delivered += 1

    async def churn_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            k = max(1, int(len(self.clients) * self.args.churn))
            leaving = [
                self.clients.pop(self.rng.randrange(len(self.clients)))
                for _ in range(min(k, len(self.clients)))
            ]
            await asyncio.gather(*(c.close() for c in leaving))
            joined = await asyncio.gather(*(self.open_client() for _ in leaving))
            self.clients.extend(c for c in joined if c is not None)
            self.churned += len(leaving)
            await asyncio.sleep(1.0)

    async def publish_loop(self, stop: asyncio.Event) -> None:
        interval = 1.0 / self.args.rate
        while not stop.is_set():
            if self.clients:
                conn = self.rng.choice(self.clients)
                handles = list(conn.channels.values())
                if handles:
                    try:
                        await handles[0].publish({"t": time.time(), "pad": "x" * self.args.size}, ack=False)
                        self.published += 1
                    except RealtimeError as exc:
                        self.errors.append(f"publish: {exc}")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ run

    async def run(self) -> list[Sample]:
        args = self.args
        print(f"opening {args.clients} clients on {args.channels} channels ...", flush=True)
        for i in range(0, args.clients, 100):  # in waves, so the handshake burst stays reasonable
            batch = await asyncio.gather(*(self.open_client() for _ in range(min(100, args.clients - i))))
            self.clients.extend(c for c in batch if c is not None)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self.churn_loop(stop)), asyncio.create_task(self.publish_loop(stop))]
        samples: list[Sample] = []
        start = time.monotonic()
        last_delivered = 0
        names = [("t(s)", 6), ("RSS(MB)", 8), ("fds", 6), ("conns", 6), ("clients", 7), ("deliv/row", 10)]
        names += [("pub", 8), ("err", 4), ("churned", 8)]
        print(" ".join(f"{n:>{w}}" for n, w in names), flush=True)
        while (elapsed := time.monotonic() - start) < args.duration:
            await asyncio.sleep(min(args.every, max(0.0, args.duration - elapsed)))
            rss, fds, conns = self.gateway_usage()
            s = Sample(
                round(time.monotonic() - start, 1),
                round(rss, 1),
                fds,
                conns,
                len(self.clients),
                self.delivered - last_delivered,
                self.published,
                len(self.errors),
                self.churned,
            )
            last_delivered = self.delivered
            samples.append(s)
            print(
                f"{s.t:>6.0f} {s.rss_mb:>8.1f} {s.fds:>6} {s.connections:>6} {s.clients:>7} "
                f"{s.delivered:>10} {s.published:>8} {s.errors:>4} {s.churned:>8}",
                flush=True,
            )
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.gather(*(c.close() for c in self.clients))
        return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--churn", type=float, default=0.02, help="fraction of clients replaced per second")
    parser.add_argument("--rate", type=float, default=100.0, help="messages published per second in total")
    parser.add_argument("--size", type=int, default=200, help="payload padding in bytes")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the growth figures")
    parser.add_argument(
        "--history", type=int, default=100, help="gateway history per channel (small: reaches steady state)"
    )
    parser.add_argument("--redis", default=None, help="run the gateway with --redis URL")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the samples here")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.clients + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the gateway process

    soak = Soak(args)
    # The gateway's stdout/stderr go next to the JSON output, else to a fresh temporary directory.
    workdir = args.json.parent.resolve() if args.json else Path(tempfile.mkdtemp(prefix="rtw-soak-"))
    print(f"gateway logs in {workdir}", flush=True)
    soak.start_gateway(workdir)
    try:
        samples = asyncio.run(soak.run())
    finally:
        if soak.proc is not None:
            soak.proc.terminate()
            soak.proc.wait(timeout=20)
    steady = [s for s in samples if s.t >= args.warmup] or samples
    first, last = steady[0], steady[-1]
    rss = [s.rss_mb for s in steady]
    fds = [s.fds for s in steady]
    print(
        f"\nsummary: {samples[-1].t:.0f} s, {args.clients} clients, {soak.churned} churned, "
        f"{soak.published} published, {soak.delivered} delivered, {len(soak.errors)} errors\n"
        f"gateway RSS after warm-up: first {first.rss_mb:.1f} MB, last {last.rss_mb:.1f} MB, "
        f"min {min(rss):.1f}, max {max(rss):.1f}; fds: first {first.fds}, last {last.fds}, "
        f"min {min(fds)}, max {max(fds)}",
        flush=True,
    )
    for line in soak.errors[:10]:
        print("  error:", line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "samples": [asdict(s) for s in samples]}
            )
        )
    ok = not soak.errors and all(s.connections >= 0.95 * args.clients for s in steady)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
