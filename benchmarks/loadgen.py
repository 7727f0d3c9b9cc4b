"""The load generator: one process, many connections, one scenario per run.

``python -m benchmarks.loadgen`` reads a JSON spec on stdin and writes one JSON result
line on stdout. Spec fields: ``scenario`` (idle, throughput, latency, storm), ``flavor``
(rtwidgets, raw, socketio), ``urls`` (servers under test), ``server_pids`` (to read their
RSS and CPU time from /proc), ``secret`` (rtwidgets tokens), ``redis_port`` (optional,
to count PUBLISH commands; ``redis_ports`` for several, e.g. a cluster's masters) and
``params`` (the scenario's sizes).

The load generator runs on uvloop when it is installed (whatever the servers use): it
has to receive as fast as the server sends, and its own overhead is part of every
latency figure. Its CPU time is reported next to the server's so a saturated load
generator is visible in the results rather than hidden in them. For the same reason its
garbage collector is frozen and off while a latency phase is measured (a full collection
over a thousand connections' objects pauses it for ~20 ms, which every server would be
charged for); the servers' own GC pauses inside the phase are counted from their
``--gc-log`` files (``server_gc_logs`` in the spec) and reported as ``server_gc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from .flavors import FLAVORS, Peer, make_payload
from .servers import raise_nofile_limit

__all__ = ["main", "run_spec"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- process probes


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def percentiles(values: list[int], points: Iterable[float] = (50, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of ``values`` (ns) as milliseconds, plus max and count."""
    out: dict[str, float] = {}
    if not values:
        return out
    ordered = sorted(values)
    n = len(ordered)
    for p in points:
        rank = max(0, min(n - 1, math.ceil(p / 100 * n) - 1))  # nearest rank
        out[f"p{p:g}_ms"] = ordered[rank] / 1e6
    out["max_ms"] = ordered[-1] / 1e6
    out["samples"] = n
    return out


def redis_publish_calls(port: int) -> int:
    """``cmdstat_publish`` + ``cmdstat_spublish`` calls of the redis-server on ``port`` (counts
    them from Lua too; SPUBLISH is the Redis Cluster broker's sharded publish)."""
    calls = redis_command_calls([port])
    return calls.get("publish", 0) + calls.get("spublish", 0)


def redis_command_calls(ports: list[int]) -> dict[str, int]:
    """Calls per command (``INFO commandstats``, summed over ``ports``). Redis counts the commands
    a Lua script calls as well as the EVALSHA that ran it; each reading here is one more INFO."""
    import redis

    out: dict[str, int] = {}
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_")
            if isinstance(value, dict):
                out[name] = out.get(name, 0) + int(value.get("calls", 0))
    return out


# ---------------------------------------------------------------------------- sinks


class CountingSink:
    """Counts deliveries per message; tracks how many leading messages are complete."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.counts: list[int] = []
        self.done = 0
        self.received = 0
        self.progress = asyncio.Event()

    def deliver(self, peer: Peer, seq: int, t_ns: int, recv_ns: int) -> None:
        self.received += 1
        counts = self.counts
        counts[seq] += 1
        if seq == self.done and counts[seq] >= self.expected:
            done = self.done
            n = len(counts)
            while done < n and counts[done] >= self.expected:
                done += 1
            self.done = done
            self.progress.set()


class LatencySink:
    """Records publish -> deliver latency of every delivery (of non-slow peers)."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.by_url: dict[str, list[int]] = {}
        self.received = 0
        self.slow_received = 0

    def deliver(self, peer: Peer, seq: int, t_ns: int, recv_ns: int) -> None:
        if peer.slow:
            self.slow_received += 1
            return
        self.received += 1
        latency = recv_ns - t_ns
        self.latencies.append(latency)
        self.by_url.setdefault(peer.url, []).append(latency)


class _StormState:
    __slots__ = ("caught_up_at", "dups", "live_at", "max_seq", "next_expected", "seen", "target")

    def __init__(self, size: int) -> None:
        self.seen = bytearray(size + 1)  # +1: a zero sentinel ends the contiguous scan
        self.next_expected = 0
        self.max_seq = -1
        self.dups = 0
        self.target: int | None = None
        self.live_at: int | None = None
        self.caught_up_at: int | None = None


class StormSink:
    """Per-peer sequence bookkeeping: gaps, duplicates, when each peer was back and complete."""

    def deliver(self, peer: Peer, seq: int, t_ns: int, recv_ns: int) -> None:
        st: _StormState = peer.state
        if st.seen[seq]:
            st.dups += 1
            return
        st.seen[seq] = 1
        if seq > st.max_seq:
            st.max_seq = seq
        seen = st.seen
        nxt = st.next_expected
        while seen[nxt]:
            nxt += 1
        st.next_expected = nxt
        if st.target is not None:
            if st.live_at is None and st.max_seq >= st.target:
                st.live_at = recv_ns
            if st.caught_up_at is None and nxt > st.target:
                st.caught_up_at = recv_ns


# ---------------------------------------------------------------------------- helpers


class Context:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.flavor = FLAVORS[spec["flavor"]]
        self.urls: list[str] = spec["urls"]
        self.pids: list[int] = spec.get("server_pids", [])
        self.gc_logs: list[str] = spec.get("server_gc_logs", [])
        self.params: dict[str, Any] = spec.get("params", {})
        self.token: str | None = None
        if self.flavor.name == "rtwidgets":
            from rtwidgets.auth import issue_token

            self.token = issue_token(spec["secret"], "bench", ttl=3600)

    def peer(self, index: int, sink: Any, url: str | None = None) -> Peer:
        return Peer(index, self.flavor, url or self.urls[index % len(self.urls)], sink, self.token)

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def server_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def server_gc(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        """The servers' GC pauses that started in [start_ns, end_ns] (from their --gc-log)."""
        pauses: list[tuple[int, int]] = []
        for path in self.gc_logs:
            with contextlib.suppress(OSError), open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and start_ns <= int(parts[1]) <= end_ns:
                        pauses.append((int(parts[0]), int(parts[2])))
        return {
            "collections": len(pauses),
            "full_collections": sum(1 for gen, _ in pauses if gen == 2),
            "pauses_over_5ms": sum(1 for _, d in pauses if d > 5_000_000),
            "total_ms": round(sum(d for _, d in pauses) / 1e6, 3),
            "max_ms": round(max((d for _, d in pauses), default=0) / 1e6, 3),
        }


@contextlib.contextmanager
def gc_paused() -> Any:
    """Freeze what exists and switch the collector off for a measured phase, then restore."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def gather_limited(coros: Iterable[Callable[[], Any]], limit: int) -> list[Any]:
    """Run the coroutine factories with at most ``limit`` in flight; raise the first error."""
    sem = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Any]) -> Any:
        async with sem:
            return await factory()

    return await asyncio.gather(*(one(f) for f in coros))


async def connect_all(peers: list[Peer], limit: int = 100) -> float:
    """Connect every peer; return connections per second."""
    start = time.perf_counter()
    await gather_limited((p.connect for p in peers), limit)
    return len(peers) / max(time.perf_counter() - start, 1e-9)


async def subscribe_all(
    peers: list[Peer], channels_of: Callable[[Peer], list[str]], limit: int = 200
) -> None:
    async def sub(peer: Peer) -> None:
        await asyncio.wait_for(asyncio.gather(*(peer.subscribe(c) for c in channels_of(peer))), 60)

    await gather_limited(((lambda p=p: sub(p)) for p in peers), limit)


def close_all(peers: list[Peer]) -> None:
    for p in peers:
        if p.ws is not None:
            p.ws.abort()


def peer_errors(peers: list[Peer]) -> list[str]:
    errors: list[str] = []
    for p in peers:
        errors.extend(p.errors)
    return errors[:5]


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


# ---------------------------------------------------------------------------- scenarios


async def scenario_idle(ctx: Context) -> dict[str, Any]:
    """B1: RSS growth of the server for ``connections`` idle, subscribed connections."""
    n = int(ctx.params["connections"])
    channels = int(ctx.params.get("channels", 100))
    sink = CountingSink(1)
    warm = [ctx.peer(-1 - i, sink) for i in range(20)]
    await connect_all(warm)
    await subscribe_all(warm, lambda p: [f"idle{p.index % channels}"])
    await asyncio.sleep(0.5)
    before = ctx.rss()
    peers = [ctx.peer(i, sink) for i in range(n)]
    rate = await connect_all(peers)
    await subscribe_all(peers, lambda p: [f"idle{p.index % channels}"])
    await asyncio.sleep(1.0)  # let the server settle (handshake buffers freed)
    after = ctx.rss()
    close_all(peers + warm)
    return {
        "connections": n,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_per_connection_bytes": (after - before) / n,
        "connect_rate_per_s": rate,
        "errors": peer_errors(peers),
    }


async def scenario_throughput(ctx: Context) -> dict[str, Any]:
    """B2/B3: saturated fan-out with at most ``window`` incomplete messages in flight."""
    p = ctx.params
    subscribers = int(p["subscribers"])
    channels = int(p["channels"])
    per_client = int(p.get("channels_per_client", 1))
    window = int(p["window"])
    warmup, duration = float(p["warmup"]), float(p["duration"])
    subs_per_channel = subscribers * per_client // channels
    sink = CountingSink(subs_per_channel)
    peers = [ctx.peer(i, sink) for i in range(subscribers)]
    connect_rate = await connect_all(peers)
    stride = channels // per_client if per_client > 1 else 0
    # subscribe_concurrency: subscribes in flight (B13 keeps it under the Redis broker's pool).
    await subscribe_all(
        peers,
        lambda q: [f"ch{(q.index + k * stride) % channels}" for k in range(per_client)],
        int(p.get("subscribe_concurrency", 200)),
    )
    publisher = ctx.peer(-1, sink, ctx.urls[0])
    await publisher.connect()

    loop = asyncio.get_running_loop()
    start = loop.time()
    t_measure, t_end = start + warmup, start + warmup + duration
    marks: dict[str, tuple[float, int, int, float, float]] = {}
    seq = 0
    stalled = False
    while True:
        now = loop.time()
        if "start" not in marks and now >= t_measure:
            marks["start"] = (now, sink.received, sink.done, ctx.server_cpu(), time.process_time())
        if now >= t_end:
            marks["end"] = (now, sink.received, sink.done, ctx.server_cpu(), time.process_time())
            break
        while seq - sink.done < window:
            sink.counts.append(0)
            publisher.publish(f"ch{seq % channels}", make_payload(seq, 0))
            seq += 1
        sink.progress.clear()
        try:
            await asyncio.wait_for(sink.progress.wait(), 10.0)
        except asyncio.TimeoutError:
            stalled = True
            marks.setdefault("start", (loop.time(), sink.received, sink.done, 0.0, 0.0))
            marks["end"] = (loop.time(), sink.received, sink.done, ctx.server_cpu(), time.process_time())
            break
    t0, r0, d0, c0, g0 = marks["start"]
    t1, r1, d1, c1, g1 = marks["end"]
    elapsed = t1 - t0
    deliveries = r1 - r0
    close_all([*peers, publisher])
    return {
        "subscribers": subscribers,
        "channels": channels,
        "subscriptions_per_channel": subs_per_channel,
        "window": window,
        "seconds": elapsed,
        "deliveries_per_s": deliveries / elapsed,
        "messages_per_s": (d1 - d0) / elapsed,
        "server_cpu_us_per_delivery": (c1 - c0) / max(deliveries, 1) * 1e6,
        "server_cpu_share": (c1 - c0) / elapsed,
        "loadgen_cpu_share": (g1 - g0) / elapsed,
        "connect_rate_per_s": connect_rate,
        "stalled": stalled,
        "errors": peer_errors([*peers, publisher]),
    }


async def scenario_latency(ctx: Context) -> dict[str, Any]:
    """B4/B5/B6: open-loop publishing at ``rate`` messages/s; latency of every delivery.

    ``slow_fractions`` (default ``[0]``) runs one phase per entry on the same connections:
    in a phase with fraction f > 0, that share of the subscribers stops reading for the
    rest of the run (B5 follows B4 this way, so B5's baseline is measured alongside it).
    """
    p = ctx.params
    subscribers = int(p["subscribers"])
    sink = LatencySink()
    peers = [ctx.peer(i, sink) for i in range(subscribers)]
    await connect_all(peers)
    await subscribe_all(peers, lambda q: ["lat"])
    publisher = ctx.peer(-1, sink, ctx.urls[0])
    await publisher.connect()
    phases = []
    seq = 0
    for fraction in p.get("slow_fractions", [0.0]):
        with gc_paused():
            result = await _latency_phase(ctx, peers, publisher, sink, seq, float(fraction))
        seq += result["messages"]
        phases.append(result)
    close_all([*peers, publisher])
    if len(phases) == 1:
        return phases[0]
    return {"phases": phases, "errors": peer_errors([*peers, publisher])}


async def _latency_phase(
    ctx: Context, peers: list[Peer], publisher: Peer, sink: LatencySink, first_seq: int, slow_fraction: float
) -> dict[str, Any]:
    p = ctx.params
    rate = float(p["rate"])
    duration = float(p["duration"])
    subscribers = len(peers)
    n_slow = round(subscribers * slow_fraction)
    # Spread the slow ones evenly over the subscriber list (and over the servers).
    slow = peers[:: max(1, subscribers // n_slow)][:n_slow] if n_slow else []
    for peer in slow:
        peer.slow = True
        peer.ws.stop_reading()
    sink.latencies, sink.by_url, sink.received = [], {}, 0
    # redis_ports: every master of a Redis Cluster (replicas replay the masters' SPUBLISH).
    redis_ports: list[int] = ctx.spec.get("redis_ports") or (
        [ctx.spec["redis_port"]] if ctx.spec.get("redis_port") else []
    )
    calls_before = redis_command_calls(redis_ports) if redis_ports else None
    loop = asyncio.get_running_loop()
    rss_samples: list[int] = []
    rss_start = ctx.rss()
    cpu0 = ctx.server_cpu()
    phase_start_ns = time.monotonic_ns()
    count = int(rate * duration)
    interval = 1.0 / rate
    next_at = loop.time()
    next_rss = next_at
    for seq in range(first_seq, first_seq + count):
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        publisher.publish("lat", make_payload(seq, time.monotonic_ns()))
        next_at += interval
        if loop.time() >= next_rss:
            rss_samples.append(ctx.rss())
            next_rss += 0.25
    fast = sum(1 for q in peers if not q.slow)
    expected = count * fast
    complete = await wait_until(lambda: sink.received >= expected, 5.0)
    phase_end_ns = time.monotonic_ns()
    cpu1 = ctx.server_cpu()
    rss_end = ctx.rss()
    rss_samples.append(rss_end)
    publishes = None
    per_command: dict[str, int] = {}
    if calls_before is not None:
        await asyncio.sleep(0.2)
        calls_after = redis_command_calls(redis_ports)
        deltas = {k: v - calls_before.get(k, 0) for k, v in sorted(calls_after.items())}
        deltas["info"] = deltas.get("info", 0) - len(redis_ports)  # the first reading's INFOs
        per_command = {k: v for k, v in deltas.items() if v}
        publishes = per_command.get("publish", 0) + per_command.get("spublish", 0)
    slow_closed = sum(1 for peer in peers if peer.slow and peer.ws.closed.done())
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "slow_subscribers": sum(1 for q in peers if q.slow),
        "messages": count,
        "deliveries_per_s_offered": rate * fast,
        "expected_deliveries": expected,
        "received_deliveries": sink.received,
        "complete": complete,
        "latency": percentiles(sink.latencies),
        "latency_by_server": {
            f"server{ctx.urls.index(url)}": percentiles(values) for url, values in sorted(sink.by_url.items())
        },
        "rss_start_bytes": rss_start,
        "rss_max_bytes": max(rss_samples),
        "rss_end_bytes": rss_end,
        "slow_closed_by_server": slow_closed,
        "server_cpu_share": (cpu1 - cpu0) / duration,
        "server_gc": ctx.server_gc(phase_start_ns, phase_end_ns),
        "errors": peer_errors([*peers, publisher]),
    }
    if publishes is not None:
        result["redis_publish_commands"] = publishes
        result["redis_publish_per_message"] = publishes / count
        # Every command, those run inside Lua scripts included (not round trips); the INFO
        # in the cluster's publish script too, not the readings here.
        result["redis_commands_per_message"] = sum(per_command.values()) / count
        result["redis_commands_by_name"] = per_command
    return result


async def scenario_storm(ctx: Context) -> dict[str, Any]:
    """B7: drop every subscriber at once while publishing; reconnect; gaps and duplicates."""
    p = ctx.params
    subscribers = int(p["subscribers"])
    rate = float(p["rate"])
    warm = float(p["warm"])
    timeout = float(p["timeout"])
    tail = float(p.get("tail", 1.0))
    capacity = int(rate * (warm + timeout + tail + 5)) + 10
    sink = StormSink()
    peers = [ctx.peer(i, sink) for i in range(subscribers)]
    for peer in peers:
        peer.state = _StormState(capacity)
    await connect_all(peers)
    await subscribe_all(peers, lambda q: ["storm"])
    publisher = ctx.peer(-1, sink, ctx.urls[0])
    await publisher.connect()
    loop = asyncio.get_running_loop()
    last_seq = -1
    stop = asyncio.Event()

    async def publish() -> None:
        nonlocal last_seq
        interval = 1.0 / rate
        next_at = loop.time()
        while not stop.is_set() and last_seq + 1 < capacity:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            publisher.publish("storm", make_payload(last_seq + 1, time.monotonic_ns()))
            last_seq += 1
            next_at += interval

    pub_task = asyncio.create_task(publish())
    await asyncio.sleep(warm)
    drop_ns = time.monotonic_ns()
    for peer in peers:
        peer.ws.abort()
    reconnect_errors: list[str] = []
    resume = ctx.flavor.name == "rtwidgets"

    async def rejoin(peer: Peer) -> None:
        for _attempt in range(5):
            try:
                await peer.connect()
                ack = peer.subscribe("storm", peer.resume_options() if resume else None)
                await asyncio.wait_for(ack, 30)
                st: _StormState = peer.state
                st.target = last_seq
                now = time.monotonic_ns()
                if st.max_seq >= st.target and st.live_at is None:
                    st.live_at = now
                if st.next_expected > st.target and st.caught_up_at is None:
                    st.caught_up_at = now
                return
            except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
                reconnect_errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)

    rejoined_at = time.monotonic()
    try:
        await asyncio.wait_for(gather_limited(((lambda q=q: rejoin(q)) for q in peers), 200), timeout)
    except asyncio.TimeoutError:
        reconnect_errors.append(f"not every client reconnected within {timeout:g} s")
    reconnect_s = time.monotonic() - rejoined_at

    # Back on the live stream first; then, where the server can recover, complete as well.
    await wait_until(lambda: all(q.state.live_at is not None for q in peers), timeout, 0.01)
    if resume:
        await wait_until(lambda: all(q.state.caught_up_at is not None for q in peers), timeout, 0.01)
    await asyncio.sleep(tail)  # keep publishing a little after everyone is back
    stop.set()
    await pub_task
    final = last_seq
    await wait_until(lambda: all(q.state.max_seq >= final for q in peers), 3.0, 0.01)
    gaps = 0
    peers_with_gaps = 0
    dups = 0
    for q in peers:
        st = q.state
        missing = (final + 1) - sum(st.seen[: final + 1])
        gaps += missing
        peers_with_gaps += missing > 0
        dups += st.dups
    caught = [q.state.caught_up_at for q in peers if q.state.caught_up_at is not None]
    live = [q.state.live_at for q in peers if q.state.live_at is not None]
    close_all([*peers, publisher])
    return {
        "subscribers": subscribers,
        "messages": final + 1,
        "recovery": "history (lastEventId + epoch)" if resume else "none (server has no history)",
        "reconnected": sum(1 for q in peers if q.state.target is not None),
        "reconnect_all_s": reconnect_s,
        "all_caught_up": len(caught) == subscribers,
        "caught_up_peers": len(caught),
        "time_to_all_caught_up_s": (max(caught) - drop_ns) / 1e9 if len(caught) == subscribers else None,
        "time_to_all_live_s": (max(live) - drop_ns) / 1e9 if len(live) == subscribers else None,
        "gaps": gaps,
        "peers_with_gaps": peers_with_gaps,
        "duplicates": dups,
        "reconnect_errors": reconnect_errors[:5],
        "errors": peer_errors([*peers, publisher]),
    }


SCENARIOS = {
    "idle": scenario_idle,
    "throughput": scenario_throughput,
    "latency": scenario_latency,
    "storm": scenario_storm,
}


async def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    ctx = Context(spec)
    return await SCENARIOS[spec["scenario"]](ctx)


def main() -> int:
    raise_nofile_limit()
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        result = uvloop.run(run_spec(spec))
        result["loadgen_loop"] = "uvloop"
    else:
        result = asyncio.run(run_spec(spec))
        result["loadgen_loop"] = "asyncio"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
