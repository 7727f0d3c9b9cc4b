"""B9, shared sliders: N ``IntSlider``s linked across two kernels by ``rtwidgets.share``.

``python -m benchmarks.sharebench [--widgets 20] [--rate 1000] [--duration 3] [--json]``

Three processes, like a notebook shared by two users:

* **the gateway**: ``python -m benchmarks.servers rtwidgets``, alone in its own process as in
  every network row (memory broker; only the per-connection publish rate limit is raised,
  see "Gateway limit" below).
* **kernel A**: this process. N ``ipywidgets.IntSlider`` each shared on its own channel with
  ``share(slider, connection, channel, traits=["value"])`` over one :class:`Connection`. A
  driver thread sets every slider's ``value`` ``rate`` times per second, as a user's drag
  does (each comm message from the front end sets the trait on a kernel thread). The value
  is the change's sequence number (1, 2, ...), so a newer value always means a later change.
  Before the gateway starts, the same driver runs on N unshared sliders (``unshared``: what
  ipywidgets alone costs per change, the baseline of "CPU per change").
* **kernel B**: ``python -m benchmarks.sharebench --partner``, a separate Python process with
  its own connection and the N partner sliders linked to the same channels. It records when
  each slider shows a new value and when each message of its channels arrives.

Figures: messages on the wire per second (the gateway's publish and delivery counters from
``/metrics`` over the run, and the messages B received per slider); staleness at B, per
change: the time from A setting the value to B's slider showing that value or a newer one
(p50/p99/max, and how many changes B never saw covered); CPU per change in A (process CPU
time of all of A's threads over the run, settling included, divided by the changes).

Clock: both kernels stamp with ``time.monotonic()``, which on Linux is CLOCK_MONOTONIC: one
clock per boot, shared by every process of the machine, so B's stamps minus A's are a
cross-process delay. It is not comparable across machines (nor across reboots).

Gateway limit: A publishes every slider over one connection (at most ``share``'s
``max_rate`` = 30/s per slider, i.e. 600/s for 20), above the gateway's default
per-connection ``publish_rate`` of 200/s (burst 400). The benchmark gateway raises that
limit as for every row; ``--gateway-defaults`` runs an embedded gateway in a child process
with every setting at its default instead, to show what a default deployment does with this
load (refused publishes appear in ``errors_in_a``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

from .servers import DEFAULT_SECRET
from .widgetbench import _drive, _percentiles, _staleness

__all__ = ["run"]

CHANNEL_PREFIX = "b9-slider-"
SETTLE_TIMEOUT = 15.0  # generous: reaching it means a value was lost, reported as such
SLIDER_MAX = 10**9  # values are sequence numbers; the range must never clamp them


# ---------------------------------------------------------------------------- shared helpers


def _sliders(count: int) -> list[Any]:
    import ipywidgets

    return [ipywidgets.IntSlider(value=0, min=0, max=SLIDER_MAX) for _ in range(count)]


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until true or ``timeout`` s passed; return whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _link_all(url: str, token: str, sliders: list[Any]) -> tuple[Any, list[Any]]:
    """Connect and share every slider on its channel; return once every link is synced."""
    from rtwidgets import share
    from rtwidgets.models import Connection

    conn = Connection(url, token=token).connect(wait=True, timeout=30)
    links = [share(s, conn, f"{CHANNEL_PREFIX}{i}", traits=["value"]) for i, s in enumerate(sliders)]
    for link in links:
        link.state.wait_synced(timeout=30)
    # Seeded and confirmed: the channels hold a value and nothing is in flight.
    settled = _wait(lambda: all("value" in ln.state.values and ln.state.pending == 0 for ln in links), 30)
    if not settled:
        raise RuntimeError("the shared sliders did not settle after linking")
    return conn, links


# ---------------------------------------------------------------------------- kernel B


def partner(stdin: IO[str], stdout: IO[str]) -> int:
    """Kernel B: read the spec line, link the sliders, print READY, record, report on ``finish``.

    Spec (one JSON line): ``url``, ``token``, ``widgets``. The second line is
    ``{"final": [v, ...]}``: wait (bounded) until every slider shows its final value, then
    print one JSON line: ``shown`` (per slider, ``[t, value]`` for every value it showed),
    ``frames`` (per slider, arrival times of its channel's messages), ``cpu_s`` (B's process
    CPU between READY and the final values), ``reached`` and ``errors``.
    """
    spec = json.loads(stdin.readline())
    sliders = _sliders(int(spec["widgets"]))
    shown: list[list[tuple[float, int]]] = [[] for _ in sliders]
    frames: list[list[float]] = [[] for _ in sliders]
    conn, links = _link_all(spec["url"], spec["token"], sliders)
    for i, (slider, link) in enumerate(zip(sliders, links, strict=True)):
        # Observers run on the thread that sets the value (the runtime thread applying a remote
        # value): the moment B's kernel-side model shows it, before its own comm message.
        slider.observe(lambda ch, rec=shown[i]: rec.append((time.monotonic(), ch["new"])), names=["value"])
        link.state.channel.on_message(lambda _frame, rec=frames[i]: rec.append(time.monotonic()))
    cpu0 = time.process_time()
    print("READY", file=stdout, flush=True)
    line = stdin.readline()
    if not line:
        return 1  # kernel A went away: nothing to report
    final = json.loads(line)["final"]
    reached = _wait(lambda: all(s.value >= f for s, f in zip(sliders, final, strict=True)), SETTLE_TIMEOUT)
    cpu = time.process_time() - cpu0
    errors = [ln.state.error for ln in links if ln.state.error]
    result = {"shown": shown, "frames": frames, "cpu_s": cpu, "reached": reached, "errors": errors}
    print(json.dumps(result), file=stdout, flush=True)
    for link in links:
        link.unlink()
    conn.close()
    return 0


# ---------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


_stderr_files: dict[int, IO[str]] = {}  # pid -> the child's stderr file, while it runs


@contextlib.contextmanager
def _child(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A ``python -m benchmarks...`` child with piped stdin/stdout; terminated on exit.

    Its stderr goes to a temporary file, not a pipe: a pipe nobody reads during the run could
    fill up and stall the child (and the figures) on a burst of log lines.
    """
    errfile = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed with the child
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errfile,
        text=True,
        env=_child_env(),
    )
    _stderr_files[proc.pid] = errfile
    try:
        yield proc
    finally:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        del _stderr_files[proc.pid]
        errfile.close()


def _expect_line(proc: subprocess.Popen[str], prefix: str, what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        proc.kill()
        proc.wait(5)
        errfile = _stderr_files[proc.pid]
        errfile.seek(0)
        err = errfile.read()[-3000:]
        raise RuntimeError(f"{what}: expected {prefix!r}, got {line.strip()[:200]!r}; stderr: {err}")
    return line


def serve_default_gateway() -> int:
    """``--serve-default-gateway``: a Gateway with every setting at its default (but the secret
    and a free port), printing ``READY <port>``; stops when stdin closes."""
    from rtwidgets.gateway import Gateway

    gateway = Gateway("127.0.0.1", 0, secret=DEFAULT_SECRET).start()
    print(f"READY {gateway.port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    gateway.stop()
    return 0


def _metrics(port: int) -> dict[str, float]:
    """The gateway's counters from ``/metrics`` (Prometheus text), by metric name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def _counter(metrics: dict[str, float], name: str) -> float:
    return metrics.get(f"{name}_total", metrics.get(name, 0.0))


# ---------------------------------------------------------------------------- kernel A


def _baseline(widgets: int, rate: float, duration: float) -> dict[str, Any]:
    """The same sliders and driver without ``share``: what ipywidgets alone costs per change."""
    sliders = _sliders(widgets)
    push_times: list[list[float]] = [[] for _ in sliders]
    push = [lambda k, s=s: setattr(s, "value", k + 1) for s in sliders]
    cpu0 = time.process_time()
    elapsed = _drive(push, rate, duration, push_times)
    cpu = time.process_time() - cpu0
    changes = sum(len(t) for t in push_times)
    for slider in sliders:
        slider.close()
    return {"changes_per_s": changes / elapsed, "cpu_us_per_change": cpu / max(changes, 1) * 1e6}


def _measure(url: str, port: int, widgets: int, rate: float, duration: float) -> dict[str, Any]:
    from rtwidgets.auth import issue_token
    from rtwidgets.runtime import get_runtime

    get_runtime().loop  # start the runtime thread before timing anything  # noqa: B018
    spec = {"url": url, "token": issue_token(DEFAULT_SECRET, "kernel-b"), "widgets": widgets}
    with _child(["benchmarks.sharebench", "--partner"]) as b:
        assert b.stdin is not None
        b.stdin.write(json.dumps(spec) + "\n")
        b.stdin.flush()
        sliders = _sliders(widgets)
        conn, links = _link_all(url, issue_token(DEFAULT_SECRET, "kernel-a"), sliders)
        _expect_line(b, "READY", "kernel B")
        before = _metrics(port)
        push_times: list[list[float]] = [[] for _ in sliders]
        push = [lambda k, s=s: setattr(s, "value", k + 1) for s in sliders]
        elapsed = [0.0]
        driver = threading.Thread(
            target=lambda: elapsed.__setitem__(0, _drive(push, rate, duration, push_times)),
            name="b9-driver",
        )
        cpu0 = time.process_time()
        t0 = time.monotonic()
        driver.start()
        driver.join()
        t_end = t0 + elapsed[0]
        final = [len(times) for times in push_times]
        # The trailing flush (latest value wins) is part of the cost of the changes.
        confirmed = _wait(
            lambda: all(
                ln.state.values.get("value") == f and ln.state.pending == 0
                for ln, f in zip(links, final, strict=True)
            ),
            SETTLE_TIMEOUT,
        )
        cpu = time.process_time() - cpu0
        after = _metrics(port)
        b.stdin.write(json.dumps({"final": final}) + "\n")
        b.stdin.flush()
        partner_result = json.loads(_expect_line(b, "{", "kernel B's result"))
        errors_a = [ln.state.error for ln in links if ln.state.error]
        for link in links:
            link.unlink()
        conn.close()
    return _figures(
        push_times=push_times,
        partner_result=partner_result,
        elapsed=elapsed[0],
        window=(t0, t_end),
        cpu=cpu,
        counters={
            name: _counter(after, name) - _counter(before, name)
            for name in ("rtwidgets_messages_published", "rtwidgets_messages_delivered")
        },
        confirmed=confirmed,
        errors_a=errors_a,
    )


def _figures(
    *,
    push_times: list[list[float]],
    partner_result: dict[str, Any],
    elapsed: float,
    window: tuple[float, float],
    cpu: float,
    counters: dict[str, float],
    confirmed: bool,
    errors_a: list[str],
) -> dict[str, Any]:
    t0, t_end = window
    stale: list[float] = []
    never_shown = 0
    per_widget: list[float] = []
    for times, shown, frames in zip(
        push_times, partner_result["shown"], partner_result["frames"], strict=True
    ):
        # Value v is change number v-1 of this slider (values start at 1; 0 is the seed).
        records: list[tuple[float, float | None]] = [(t, float(v - 1)) for t, v in shown]
        s, missing = _staleness(records, times)
        stale += s
        never_shown += missing
        per_widget.append(sum(1 for t in frames if t0 <= t <= t_end) / elapsed)
    changes = sum(len(t) for t in push_times)
    # From the drive's start: a seed published while linking may arrive after B's READY.
    received = sum(1 for f in partner_result["frames"] for t in f if t >= t0)
    published = counters["rtwidgets_messages_published"]
    return {
        "widgets": len(push_times),
        "changes": changes,
        "seconds": elapsed,
        "changes_per_s": changes / elapsed,
        # Over the whole run, trailing flushes included (at most one per slider).
        "wire_publishes_per_s": published / elapsed,
        "wire_deliveries_per_s": counters["rtwidgets_messages_delivered"] / elapsed,
        "publishes": published,
        "deliveries": counters["rtwidgets_messages_delivered"],
        "b_msgs_per_s_per_widget_max": max(per_widget),
        "b_msgs_per_s_per_widget_mean": sum(per_widget) / len(per_widget),
        "b_msgs_per_s_total": sum(per_widget),
        "b_msgs_received": received,
        "staleness": _percentiles(stale),
        "changes_never_shown": never_shown,
        "cpu_us_per_change": cpu / max(changes, 1) * 1e6,
        "b_cpu_us_per_msg": partner_result["cpu_s"] / max(received, 1) * 1e6,
        "a_confirmed_final": confirmed,
        "b_reached_final": partner_result["reached"],
        "errors_in_a": errors_a,
        "errors_in_b": partner_result["errors"],
    }


def run(
    widgets: int = 20, rate: float = 1000.0, duration: float = 3.0, gateway_defaults: bool = False
) -> dict[str, Any]:
    """Drive unshared sliders (the baseline), then start the gateway and kernel B and drive the
    shared sliders in kernel A (this process); see the module docstring."""
    baseline = _baseline(widgets, rate, duration)
    if gateway_defaults:
        server = ["benchmarks.sharebench", "--serve-default-gateway"]
    else:
        server = ["benchmarks.servers", "rtwidgets", "--secret", DEFAULT_SECRET]
    with _child(server) as gw:
        port = int(_expect_line(gw, "READY ", "the gateway").split()[1])
        result = _measure(f"ws://127.0.0.1:{port}", port, widgets, rate, duration)
    result["unshared"] = baseline
    result["gateway"] = "defaults" if gateway_defaults else "benchmark (publish limit raised)"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sharebench")
    parser.add_argument("--widgets", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="changes per second per slider")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    parser.add_argument("--gateway-defaults", action="store_true", help="a gateway with default limits")
    parser.add_argument("--partner", action="store_true", help=argparse.SUPPRESS)  # kernel B
    parser.add_argument("--serve-default-gateway", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.partner:
        return partner(sys.stdin, sys.stdout)
    if args.serve_default_gateway:
        return serve_default_gateway()
    if args.widgets < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--widgets, --rate and --duration must be positive")
    result = run(args.widgets, args.rate, args.duration, args.gateway_defaults)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
