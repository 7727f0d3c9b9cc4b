"""A browser view's copy of a LiveChart series, kept by the real front-end code under Node.

:class:`ViewSeries` sends each ``window``/``append`` data message (content and buffers, as the
kernel sent them) to ``chart_view.mjs``, which applies it with ``ChartSeries`` from
``js/src/live_chart.js``: the oracle for what a browser shows is the browser's own code, not a
Python transcription of it. One ``node`` process serves every view of the test session; it
exits when this process closes its stdin (at the latest when the session ends).
"""

from __future__ import annotations

import atexit
import base64
import functools
import itertools
import json
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

NODE: str | None = shutil.which("node")
SCRIPT = Path(__file__).with_name("chart_view.mjs")
_ids = itertools.count(1)


def floats(buf: bytes) -> list[float]:
    """Little-endian float64 bytes (a chart's ``x``/``y`` trait or buffer) as floats."""
    return list(struct.unpack(f"<{len(buf) // 8}d", buf))


class _Node:
    """The shared ``node chart_view.mjs`` process: one request line in, one answer line out."""

    def __init__(self, node: str) -> None:
        self._proc = subprocess.Popen(
            [node, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lock = threading.Lock()  # one request in flight: answers come back in order
        atexit.register(self.close)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(request, allow_nan=False) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"chart_view.mjs exited: {self.stderr()}")
        answer: dict[str, Any] = json.loads(line)
        if "exception" in answer:
            raise RuntimeError(f"ChartSeries threw: {answer['exception']}")
        return answer

    def stderr(self) -> str:
        self.close()
        assert self._proc.stderr is not None
        return self._proc.stderr.read()[-3000:]

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the script's read loop ends: node exits by itself
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@functools.cache
def _node() -> _Node:
    if NODE is None:
        pytest.skip("node is not installed (needed to run the chart's front-end code)")
    return _Node(NODE)


class ViewSeries:
    """One browser view of a chart: ``apply`` each data message, then read what it shows.

    ``apply`` returns ChartSeries' outcome (``"window"``, ``"append"``, ``"ignored"``, ``"gap"``
    or ``"error"``). ``xs``/``ys`` are the kept points, ``tail`` the newest sample (``None``
    without one; a non-finite value travels as null and is NaN here, as in the browser).
    """

    def __init__(self) -> None:
        self._node = _node()
        self._id = next(_ids)
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.tail: tuple[float, float] | None = None
        self.seq: int | None = None
        self.has_window = False
        self.last_error = ""

    def apply(self, content: dict[str, Any], buffers: list[bytes]) -> str:
        answer = self._node.ask(
            {
                "view": self._id,
                "msg": content,
                "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers],
            }
        )
        x, y = floats(base64.b64decode(answer["x"])), floats(base64.b64decode(answer["y"]))
        kept = answer["kept"]
        self.xs, self.ys = x[:kept], y[:kept]
        self.tail = (x[kept], y[kept]) if answer["tail"] else None
        self.seq, self.has_window = answer["seq"], answer["hasWindow"]
        self.last_error = answer["lastError"]
        outcome: str = answer["outcome"]
        return outcome

    def shown(self) -> tuple[list[float], list[float]]:
        """The points the view draws, tail included."""
        if self.tail is None:
            return list(self.xs), list(self.ys)
        return [*self.xs, self.tail[0]], [*self.ys, self.tail[1]]

