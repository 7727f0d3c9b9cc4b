"""A browser view's copy of a LiveChart series, rebuilt from ``window``/``append`` messages exactly
as ``js/src/live_chart.js`` (``ChartSeries``) does."""

from __future__ import annotations

import struct
from typing import Any


def floats(buf: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(buf) // 8}d", buf))


class ViewSeries:
    """A browser view's copy of the series, built from the data messages as the JS does."""

    def __init__(self) -> None:
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.tail: tuple[float, float] | None = None
        self.seq: int | None = None
        self.has_window = False

    def apply(self, content: dict[str, Any], buffers: list[bytes]) -> str:
        if content["type"] == "append":
            if not self.has_window or content["seq"] <= self.seq:
                return "ignored"
            if content["seq"] != self.seq + 1:
                self.has_window = False
                return "gap"
        x, y = floats(buffers[0]), floats(buffers[1])
        assert len(x) == len(y)
        if content["type"] == "window":
            self.xs, self.ys = [], []
        else:
            drop = content["drop"]
            assert 0 <= drop <= len(self.xs)
            del self.xs[:drop], self.ys[:drop]
        self.xs += x
        self.ys += y
        tail = content["tail"]
        self.tail = None if tail is None else (tail[0], tail[1])
        self.seq = content["seq"]
        self.has_window = True
        return content["type"]

    def shown(self) -> tuple[list[float], list[float]]:
        if self.tail is None:
            return list(self.xs), list(self.ys)
        return [*self.xs, self.tail[0]], [*self.ys, self.tail[1]]
