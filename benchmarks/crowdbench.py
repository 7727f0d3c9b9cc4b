"""B10 and B11 (issue 17): a crowd of subscribed connections on ONE server process.

One server process (``benchmarks.servers``: rtwidgets or raw websockets) serves every client;
the clients are spread over ``workers`` load-generator subprocesses (``python -m
benchmarks.crowdbench worker``), because one process may hold only RLIMIT_NOFILE descriptors
and one Python process cannot parse 18 000 frames per message alone. The row process itself
(the runner) starts the server and the workers, holds the one publisher connection and steers
the workers over their stdin/stdout, one JSON line per command and per answer.

Workers and publisher share a small memory-mapped file of int64 slots: slot 0 is the last
sequence number published, slot 1 + w is how many leading messages every client of worker w has
received. The publisher reads the latter for its window (B10), a worker reads the former when a
resubscribe is acknowledged (B11: the message a client must have to count as caught up).

* B10 crowd: connect and subscribe every client to channel ``crowd`` (connect rate = clients /
  time from the first connect to the last subscribe acknowledgement over all workers), server
  RSS before and after (per connection), then closed-loop fan-out on ``crowd``: ``window``
  messages in flight at most, deliveries/s over ``messages`` messages after ``warmup``.
* B11 reconnect storm: the B7 storm at crowd size. ``rate`` messages/s on ``storm``; after
  ``warm`` seconds every client's TCP connection is aborted at once (every worker at the same
  moment) and reconnects (rtwidgets: resubscribe with ``lastEventId`` + ``epoch`` of its last
  message; raw: plainly, it has no history). Time from the drop until every client has every
  message up to the one published when its resubscribe was acknowledged, gaps, duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from .flavors import FLAVORS, Peer, make_payload
from .loadgen import CountingSink, StormSink, _StormState, cpu_seconds, gather_limited, rss_bytes, wait_until
from .servers import raise_nofile_limit

if TYPE_CHECKING:
    from .runner import RowResult, RunContext

__all__ = ["CROWD_FLAVORS", "main", "row_b10", "row_b11"]

CROWD_FLAVORS = ("rtwidgets", "raw")  # socketio and the floor have no crowd column
SLOT = 8  # bytes per int64 slot


# ---------------------------------------------------------------------------- shared slots


class Slots:
    """int64 slots in a memory-mapped file, shared by the row process and its workers."""

    def __init__(self, path: str, count: int, create: bool = False) -> None:
        if create:
            with open(path, "wb") as fh:
                fh.write(b"\0" * (SLOT * count))
        self._fh = open(path, "r+b")  # noqa: SIM115 - mapped for the life of the object
        self._map = mmap.mmap(self._fh.fileno(), SLOT * count)
        self.values = memoryview(self._map).cast("q")

    def close(self) -> None:
        self.values.release()
        self._map.close()
        self._fh.close()


class CrowdSink(CountingSink):
    """CountingSink that publishes its progress to a shared slot and notes when it is complete."""

    def __init__(self, expected: int, slots: Slots, slot: int) -> None:
        super().__init__(expected)
        self.slots = slots
        self.slot = slot
        self.complete_ns: int | None = None

    def deliver(self, peer: Peer, seq: int, t_ns: int, recv_ns: int) -> None:
        done = self.done
        super().deliver(peer, seq, t_ns, recv_ns)
        if self.done != done:
            self.slots.values[self.slot] = self.done
            if self.done == len(self.counts):
                self.complete_ns = recv_ns


# ---------------------------------------------------------------------------- worker process


class Worker:
    """One load-generator subprocess: ``count`` clients of one flavor against one server."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.flavor = FLAVORS[spec["flavor"]]
        self.url: str = spec["url"]
        self.first: int = spec["first"]
        self.count: int = spec["count"]
        self.limit: int = spec["limit"]
        self.slots = Slots(spec["slots"], spec["slot_count"])
        self.slot: int = spec["slot"]
        self.token: str | None = None
        if self.flavor.name == "rtwidgets":
            from rtwidgets.auth import issue_token

            self.token = issue_token(spec["secret"], "crowd", ttl=3600)
        self.sink: Any = None
        self.peers: list[Peer] = []

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        channel = cmd["channel"]
        if cmd.get("storm"):
            self.sink = StormSink()
        else:
            self.sink = CrowdSink(self.count, self.slots, self.slot)
        self.peers = [
            Peer(self.first + i, self.flavor, self.url, self.sink, self.token) for i in range(self.count)
        ]
        if cmd.get("storm"):
            for peer in self.peers:
                peer.state = _StormState(int(cmd["capacity"]))

        async def join(peer: Peer) -> None:
            await peer.connect()
            await asyncio.wait_for(peer.subscribe(channel), 60)

        t0 = time.monotonic_ns()
        await gather_limited(((lambda p=p: join(p)) for p in self.peers), self.limit)
        return {"t0_ns": t0, "t1_ns": time.monotonic_ns(), "errors": self.errors()}

    async def fanout(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Count ``messages`` messages on every client; answer once all arrived (or timeout)."""
        sink: CrowdSink = self.sink
        sink.counts = [0] * int(cmd["messages"])
        sink.done = 0
        sink.received = 0
        sink.complete_ns = None
        self.slots.values[self.slot] = 0
        cpu0 = time.process_time()
        await self.reply({"armed": True})
        complete = await wait_until(lambda: sink.complete_ns is not None, float(cmd["timeout"]), 0.002)
        return {
            "complete": complete,
            "complete_ns": sink.complete_ns,
            "received": sink.received,
            "done": sink.done,
            "cpu_s": time.process_time() - cpu0,
            "errors": self.errors(),
        }

    async def storm(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Abort every client at once, reconnect and resubscribe them; wait until caught up."""
        channel, timeout = cmd["channel"], float(cmd["timeout"])
        resume = self.flavor.name == "rtwidgets"
        drop_ns = time.monotonic_ns()
        for peer in self.peers:
            peer.ws.abort()
        reconnect_errors: list[str] = []
        last = self.slots.values

        async def rejoin(peer: Peer) -> None:
            for _attempt in range(5):
                try:
                    await peer.connect()
                    await asyncio.wait_for(
                        peer.subscribe(channel, peer.resume_options() if resume else None), 30
                    )
                    st: _StormState = peer.state
                    st.target = int(last[0])
                    now = time.monotonic_ns()
                    if st.max_seq >= st.target and st.live_at is None:
                        st.live_at = now
                    if st.next_expected > st.target and st.caught_up_at is None:
                        st.caught_up_at = now
                    return
                except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
                    reconnect_errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)

        t0 = time.monotonic()
        try:
            await asyncio.wait_for(
                gather_limited(((lambda q=q: rejoin(q)) for q in self.peers), self.limit), timeout
            )
        except asyncio.TimeoutError:
            reconnect_errors.append(f"not every client reconnected within {timeout:g} s")
        reconnect_s = time.monotonic() - t0
        peers = self.peers
        await wait_until(lambda: all(q.state.live_at is not None for q in peers), timeout, 0.01)
        if resume:
            await wait_until(lambda: all(q.state.caught_up_at is not None for q in peers), timeout, 0.01)
        caught = [q.state.caught_up_at for q in peers if q.state.caught_up_at is not None]
        live = [q.state.live_at for q in peers if q.state.live_at is not None]
        return {
            "drop_ns": drop_ns,
            "reconnect_s": reconnect_s,
            "reconnected": sum(1 for q in peers if q.state.target is not None),
            "caught_up": len(caught),
            "live": len(live),
            "last_caught_up_ns": max(caught) if len(caught) == len(peers) else None,
            "last_live_ns": max(live) if len(live) == len(peers) else None,
            "reconnect_errors": reconnect_errors[:5],
        }

    async def finish(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """After the last publish: wait for it, then count gaps and duplicates per client."""
        final = int(cmd["final"])
        peers = self.peers
        await wait_until(lambda: all(q.state.max_seq >= final for q in peers), 3.0, 0.01)
        gaps = peers_with_gaps = dups = back_gaps = 0
        for q in peers:
            st = q.state
            missing = (final + 1) - sum(st.seen[: final + 1])
            gaps += missing
            peers_with_gaps += missing > 0
            dups += st.dups
            back_gaps += missing if st.target is not None else 0  # clients that did come back
        return {
            "gaps": gaps,
            "peers_with_gaps": peers_with_gaps,
            "reconnected_gaps": back_gaps,
            "duplicates": dups,
            "errors": self.errors(),
        }

    def errors(self) -> list[str]:
        out: list[str] = []
        for p in self.peers:
            out.extend(p.errors)
        return out[:5]

    async def reply(self, doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {
            "connect": self.connect,
            "fanout": self.fanout,
            "storm": self.storm,
            "finish": self.finish,
        }
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                break
            try:
                answer = await handlers[cmd["cmd"]](cmd)
            except Exception as exc:  # reported to the row process, which says which worker failed
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            await self.reply(answer)
        for p in self.peers:
            if p.ws is not None:
                p.ws.abort()
        self.slots.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.crowdbench worker``: the spec is the first line of stdin."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["worker"]:
        print(
            "usage: python -m benchmarks.crowdbench worker  (started by the benchmark runner)",
            file=sys.stderr,
        )
        return 2
    raise_nofile_limit()
    worker = Worker(json.loads(sys.stdin.readline()))
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker.serve())
    else:
        uvloop.run(worker.serve())
    return 0


# ---------------------------------------------------------------------------- row process


class Crowd:
    """The workers of one measurement, talked to over their pipes (asyncio subprocesses)."""

    def __init__(self, flavor: str, url: str, clients: int, workers: int, limit: int, env: dict[str, str]):
        self.flavor, self.url, self.clients = flavor, url, clients
        self.n = max(1, min(workers, clients))
        self.limit = max(1, limit // self.n)
        self.env = env
        fd, self.path = tempfile.mkstemp(
            prefix="rtw-crowd-", suffix=".slots", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        os.close(fd)
        self.slots = Slots(self.path, 1 + self.n, create=True)
        self.procs: list[asyncio.subprocess.Process] = []
        self.stderr = [tempfile.TemporaryFile() for _ in range(self.n)]  # noqa: SIM115 - closed in close()

    async def start(self, secret: str) -> None:
        from .runner import ROOT

        base, extra = divmod(self.clients, self.n)
        first = 0
        for w in range(self.n):
            count = base + (w < extra)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.crowdbench", "worker",
                cwd=ROOT, env=self.env, limit=2**20,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self.stderr[w],
            )  # fmt: skip
            self.procs.append(proc)
            spec = {
                "flavor": self.flavor, "url": self.url, "first": first, "count": count, "limit": self.limit,
                "slots": self.path, "slot_count": 1 + self.n, "slot": 1 + w, "secret": secret,
            }  # fmt: skip
            await self._send(proc, spec)
            first += count

    async def _send(self, proc: asyncio.subprocess.Process, doc: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(doc) + "\n").encode())
        await proc.stdin.drain()

    async def _read(self, proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            w = self.procs.index(proc)
            self.stderr[w].seek(0)
            tail = self.stderr[w].read().decode(errors="replace")[-1500:]
            raise CrowdError(f"{self.flavor} crowd worker {w} exited (rc {await proc.wait()}): {tail}")
        doc: dict[str, Any] = json.loads(line)
        if "error" in doc:
            raise CrowdError(f"{self.flavor} crowd worker: {doc['error']}")
        return doc

    async def all(self, cmd: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Send ``cmd`` to every worker at once; return their answers in worker order."""
        for proc in self.procs:
            await self._send(proc, cmd)
        return list(await asyncio.gather(*(self._read(p, timeout) for p in self.procs)))

    async def read_all(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._read(p, timeout) for p in self.procs)))

    def done(self) -> int:
        """Leading messages that every client of every worker has received."""
        v = self.slots.values
        return min(int(v[1 + w]) for w in range(self.n))

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(OSError):
                total += cpu_seconds(p.pid)
        return total

    async def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                await self._send(proc, {"cmd": "quit"})
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        self.slots.close()
        for fh in self.stderr:
            fh.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class CrowdError(RuntimeError):
    """A crowd worker failed."""


async def _publisher(flavor: str, url: str, secret: str) -> Peer:
    token = None
    if flavor == "rtwidgets":
        from rtwidgets.auth import issue_token

        token = issue_token(secret, "crowd-publisher", ttl=3600)
    pub = Peer(-1, FLAVORS[flavor], url, CountingSink(1), token)
    await pub.connect()
    return pub


def _connect_rate(clients: int, answers: list[dict[str, Any]]) -> float:
    t0 = min(a["t0_ns"] for a in answers)
    t1 = max(a["t1_ns"] for a in answers)
    return clients / max((t1 - t0) / 1e9, 1e-9)


async def crowd_fanout(
    flavor: str, server_pid: int, url: str, p: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """B10 against one running server: connect, RSS, closed-loop fan-out; the result dict."""
    from .servers import DEFAULT_SECRET

    clients, window = int(p["connections"]), int(p["window"])
    warmup, messages = int(p["warmup"]), int(p["messages"])
    timeout = float(p.get("timeout", 120.0))
    connect_timeout = float(p.get("connect_timeout", 900.0))  # 18 000 handshakes on a busy VM: minutes
    pub = await _publisher(flavor, url, DEFAULT_SECRET)
    crowd = Crowd(flavor, url, clients, int(p["workers"]), int(p.get("in_flight", 100)), env)
    try:
        await crowd.start(DEFAULT_SECRET)
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(server_pid)
        joined = await crowd.all({"cmd": "connect", "channel": "crowd"}, connect_timeout)
        await asyncio.sleep(1.0)  # handshake buffers freed, as in B1
        rss_after = rss_bytes(server_pid)
        total = warmup + messages
        await crowd.all({"cmd": "fanout", "messages": total, "timeout": timeout}, 30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seq = 0
        marks: dict[str, tuple[int, float, float]] = {}
        while seq < total and loop.time() < deadline:
            done = crowd.done()
            if seq == warmup and done >= warmup and "start" not in marks:
                marks["start"] = (time.monotonic_ns(), cpu_seconds(server_pid), crowd.cpu())
            while seq < total and seq - done < window and (seq < warmup or "start" in marks):
                pub.publish("crowd", make_payload(seq, time.monotonic_ns()))
                seq += 1
            await asyncio.sleep(0.001)
        answers = await crowd.read_all(timeout)
        end_ns = max((a["complete_ns"] or 0) for a in answers)
        complete = all(a["complete"] for a in answers) and "start" in marks
        start_ns, cpu0, gen0 = marks.get("start", (0, 0.0, 0.0))
        elapsed = (end_ns - start_ns) / 1e9 if complete else None
        deliveries = clients * messages
        return {
            "connections": clients,
            "workers": crowd.n,
            "connect_rate_per_s": _connect_rate(clients, joined),
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_per_connection_bytes": (rss_after - rss_before) / clients,
            "messages": messages,
            "window": window,
            "complete": complete,
            "received_deliveries": sum(a["received"] for a in answers),
            "seconds": elapsed,
            "deliveries_per_s": deliveries / elapsed if elapsed else None,
            "server_cpu_us_per_delivery": (cpu_seconds(server_pid) - cpu0) / deliveries * 1e6
            if complete
            else None,
            "loadgen_cpu_share": (crowd.cpu() - gen0) / elapsed if elapsed else None,
            "errors": [e for a in (*joined, *answers) for e in a["errors"]][:5] + pub.errors[:5],
        }
    finally:
        pub.ws.abort()
        await crowd.close()


async def crowd_storm(flavor: str, url: str, p: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """B11 against one running server: the reconnect storm of every client; the result dict."""
    from .servers import DEFAULT_SECRET

    clients, rate = int(p["connections"]), float(p["rate"])
    warm, timeout, tail = float(p["warm"]), float(p["timeout"]), float(p.get("tail", 1.0))
    capacity = int(rate * (warm + 2 * timeout + tail + 60)) + 10
    connect_timeout = float(p.get("connect_timeout", 900.0))
    pub = await _publisher(flavor, url, DEFAULT_SECRET)
    crowd = Crowd(flavor, url, clients, int(p["workers"]), int(p.get("in_flight", 100)), env)
    stop = asyncio.Event()
    last = crowd.slots.values
    last[0] = -1
    loop = asyncio.get_running_loop()

    async def publish() -> None:
        interval, next_at = 1.0 / rate, loop.time()
        while not stop.is_set() and last[0] + 1 < capacity:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pub.publish("storm", make_payload(int(last[0]) + 1, time.monotonic_ns()))
            last[0] += 1
            next_at += interval

    pub_task: asyncio.Task[None] | None = None
    try:
        await crowd.start(DEFAULT_SECRET)
        joined = await crowd.all(
            {"cmd": "connect", "channel": "storm", "storm": True, "capacity": capacity}, connect_timeout
        )
        pub_task = asyncio.create_task(publish())
        await asyncio.sleep(warm)
        storms = await crowd.all({"cmd": "storm", "channel": "storm", "timeout": timeout}, 3 * timeout + 30)
        await asyncio.sleep(tail)  # keep publishing a little after everyone is back
        stop.set()
        await pub_task
        final = int(last[0])
        ends = await crowd.all({"cmd": "finish", "final": final}, 30)
        drop_ns = min(s["drop_ns"] for s in storms)
        caught = [s["last_caught_up_ns"] for s in storms]
        live = [s["last_live_ns"] for s in storms]
        return {
            "subscribers": clients,
            "workers": crowd.n,
            "connect_rate_per_s": _connect_rate(clients, joined),
            "messages": final + 1,
            "recovery": "history (lastEventId + epoch)"
            if flavor == "rtwidgets"
            else "none (server has no history)",
            "reconnected": sum(s["reconnected"] for s in storms),
            "reconnect_all_s": max(s["reconnect_s"] for s in storms),
            "caught_up_peers": sum(s["caught_up"] for s in storms),
            "all_caught_up": None not in caught,
            "time_to_all_caught_up_s": (max(caught) - drop_ns) / 1e9 if None not in caught else None,
            "time_to_all_live_s": (max(live) - drop_ns) / 1e9 if None not in live else None,
            "gaps": sum(e["gaps"] for e in ends),
            "peers_with_gaps": sum(e["peers_with_gaps"] for e in ends),
            "gaps_of_reconnected_clients": sum(e["reconnected_gaps"] for e in ends),
            "duplicates": sum(e["duplicates"] for e in ends),
            "reconnect_errors": [x for s in storms for x in s["reconnect_errors"]][:5],
            "errors": [x for e in ends for x in e["errors"]][:5] + pub.errors[:5],
        }
    finally:
        stop.set()
        if pub_task is not None and not pub_task.done():
            pub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pub_task
        pub.ws.abort()
        await crowd.close()


# ---------------------------------------------------------------------------- rows


def _measure(row: str, p: dict[str, Any], ctx: RunContext) -> dict[str, dict[str, Any]]:
    from .runner import BenchError, _child_env, _per_flavor, servers

    env = _child_env()

    def one(flavor: str) -> dict[str, Any]:
        with servers(flavor, 1, None, ctx.uvloop) as (server,):
            try:
                if row == "B10":
                    return asyncio.run(crowd_fanout(flavor, server.pid, server.url, p, env))
                return asyncio.run(crowd_storm(flavor, server.url, p, env))
            except (CrowdError, asyncio.TimeoutError, OSError, KeyError, ValueError) as exc:
                raise BenchError(
                    f"{row} {type(exc).__name__}: {exc}\nserver stderr: {server.stderr_tail(800)}"
                ) from None

    flavors = tuple(f for f in ctx.flavors_for(row) if f in CROWD_FLAVORS)
    return _per_flavor(one, flavors)


def row_b10(p: dict[str, Any], ctx: RunContext) -> RowResult:
    """B10 crowd: connect rate, RSS per connection and fan-out at crowd size, one server."""
    from .runner import TITLES, Metric, RowResult, _get

    raw = _measure("B10", p, ctx)
    goal = "fan-out >= 0.9x raw deliveries/s, <= 14 KiB RSS/connection (figures, no assert)"
    res = RowResult("B10", TITLES["B10"], goal, details=raw)
    rate = Metric(
        "deliveries_per_s", "1/s", {f: _get(r, "deliveries_per_s") for f, r in raw.items()}, "higher"
    )
    per = {f: _get(r, "rss_per_connection_bytes") for f, r in raw.items()}
    res.metrics += [
        Metric("connect_rate", "1/s", {f: _get(r, "connect_rate_per_s") for f, r in raw.items()}, "higher"),
        Metric(
            "rss_per_connection",
            "KiB",
            {f: v / 1024 if v is not None else None for f, v in per.items()},
            "lower",
        ),
        rate,
        Metric(
            "server_cpu_per_delivery",
            "us",
            {f: _get(r, "server_cpu_us_per_delivery") for f, r in raw.items()},
            "lower",
        ),
    ]
    vs_raw, rt_rss = rate.ratio("raw"), per.get("rtwidgets")
    res.passed = None if vs_raw is None or rt_rss is None else vs_raw >= 0.9 and rt_rss <= 14 * 1024
    res.verdict = f"{p['connections']} subscribed connections on one server process"
    return res


def row_b11(p: dict[str, Any], ctx: RunContext) -> RowResult:
    """B11 reconnect storm of the whole crowd: time to caught up, gaps, duplicates."""
    from .runner import TITLES, Metric, RowResult, _get

    raw = _measure("B11", p, ctx)
    goal = "all clients caught up <= 10 s after the drop, 0 gaps, 0 duplicates"
    res = RowResult("B11", TITLES["B11"], goal, details=raw)
    res.metrics += [
        Metric(
            "time_to_all_caught_up",
            "s",
            {f: _get(r, "time_to_all_caught_up_s") for f, r in raw.items()},
            "lower",
        ),
        Metric("time_to_all_live", "s", {f: _get(r, "time_to_all_live_s") for f, r in raw.items()}, "lower"),
        Metric("gaps", "", {f: _get(r, "gaps") for f, r in raw.items()}),
        Metric("duplicates", "", {f: _get(r, "duplicates") for f, r in raw.items()}),
    ]
    rt = raw.get("rtwidgets", {})
    t = _get(rt, "time_to_all_caught_up_s")
    res.passed = (
        None
        if "gaps" not in rt
        else (t is not None and t <= 10.0 and rt["gaps"] == 0 and rt["duplicates"] == 0)
    )
    res.verdict = f"{p['connections']} clients dropped at once, one server process"
    return res


if __name__ == "__main__":
    sys.exit(main())
