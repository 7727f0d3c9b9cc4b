"""A numeric time series decimated for views that receive appends, not whole windows (sans-I/O).

``DecimatedSeries`` keeps the samples of a time window (x sorted) and produces, per call of
:meth:`next_message`, either a ``window`` (the whole decimated series) or an ``append`` (drop
``k`` points from the front, add the new ones) for views that hold the previous message's
series. Appends are possible because the decimation is stable: sample number ``g`` of the
stream (a global counter) is kept iff ``g % stride == 0``, so a kept sample stays kept until
it leaves the window. The stride has hysteresis (:func:`choose_stride`); a stride change, a
late sample inserted among samples already sent, or :meth:`want_window` makes the next
message a ``window``. The newest sample is always shown: it travels as ``tail`` when the
decimation does not keep it. Buffers are little-endian Float64 bytes. Not thread-safe.
"""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections.abc import Iterable
from typing import Any

__all__ = [
    "LOWER_TARGET",
    "MAX_RETAINED",
    "DecimatedSeries",
    "choose_stride",
    "float64_bytes",
    "float64_le",
]

# A hard cap on retained samples, whatever the window (memory bound at absurd rates).
MAX_RETAINED = 200_000
# A lowered stride aims at this fraction of the point cap, so the stream must grow by a quarter
# before the stride goes up again (at stride 2 -> 1 "under half" alone would flip-flop).
LOWER_TARGET = 0.8


def float64_bytes(values: Iterable[float]) -> bytes:
    """Little-endian Float64 bytes of ``values`` (what the browser wraps in a Float64Array).

    ``values`` may be a Float64 ``array`` (copied, never modified) or any iterable of numbers.
    """
    arr = values if isinstance(values, array) and values.typecode == "d" else array("d", values)
    if sys.byteorder != "little":
        arr = array("d", arr)  # a copy: the caller's array stays in native order
        arr.byteswap()
    return arr.tobytes()


# The name this module used before float64_bytes was the library's only such function.
float64_le = float64_bytes


def choose_stride(stride: int, n: int, cap: int) -> int:
    """The decimation stride for ``n`` samples and at most ``cap`` kept points, from ``stride``.

    Raised to the smallest stride that fits when ``ceil(n / stride) > cap``; lowered only when
    the series is under ``cap / 2`` points and a smaller stride keeps it at most
    ``LOWER_TARGET * cap`` points (hysteresis: a steady stream keeps its stride).
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if n <= 0:
        return stride
    if -(-n // stride) > cap:
        return -(-n // cap)
    if 2 * -(-n // stride) < cap:
        lower = max(1, -(-n // max(1, int(LOWER_TARGET * cap))))
        if lower < stride:
            return lower
    return stride


def _json_float(value: float) -> float | None:
    # JSON (Jupyter's packer) refuses NaN and infinities: null, read back as NaN (a gap).
    return value if math.isfinite(value) else None


class DecimatedSeries:
    """The samples of the last ``window`` x-units, at most ``max_points`` shown (tail included)."""

    def __init__(self, max_points: int) -> None:
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an int >= 2, got {max_points!r}")
        self.max_points = max_points
        # Float64 arrays, not lists: a message slices them and sends the bytes as they are.
        self._xs = array("d")
        self._ys = array("d")
        # The stream number of _xs[0] (a sample's number is _base + its index).
        self._base = 0
        self.stride = 1
        # What the views were last sent: (first kept number, kept count, newest number), None
        # before the first message or when the next one must be a window.
        self._sent: tuple[int, int, int] | None = None
        self._seq = 0
        self._window_wanted = True
        self.windows_sent = 0  # messages of type "window" (the rest are appends)

    def __len__(self) -> int:
        """Samples retained in the window (before decimation)."""
        return len(self._xs)

    def want_window(self) -> None:
        """Make the next message a ``window`` (a view rendered, or missed a message)."""
        self._window_wanted = True

    def add(self, samples: Iterable[tuple[float, float]], window: float) -> None:
        """Add ``(x, y)`` samples (x may arrive out of order) and drop those older than
        ``window`` before the newest x (and beyond ``MAX_RETAINED``)."""
        xs, ys = self._xs, self._ys
        # Stream numbers up to this one are in the views; a sample inserted among them
        # renumbers what follows, so the kept set changes: the next message is a window.
        sent_newest = self._sent[2] if self._sent is not None else -1
        for t, value in samples:
            if xs and t < xs[-1]:
                i = bisect.bisect_right(xs, t)  # keep x sorted for the window cut
                xs.insert(i, t)
                ys.insert(i, value)
                if self._base + i <= sent_newest:
                    self._sent = None
            else:
                xs.append(t)
                ys.append(value)
        if not xs:
            return
        cut = bisect.bisect_left(xs, xs[-1] - window)
        cut = max(cut, len(xs) - MAX_RETAINED)
        if cut > 0:
            del xs[:cut]
            del ys[:cut]
            self._base += cut

    def next_message(self) -> tuple[dict[str, Any], list[bytes]]:
        """The next message, ``{"type": "window"|"append", "seq", "tail"[, "drop"]}``, and its
        ``[x, y]`` buffers; afterwards the views hold what :meth:`shown` returns."""
        xs, ys, base = self._xs, self._ys, self._base
        n = len(xs)
        stride = choose_stride(self.stride, n, self.max_points - 1)
        if stride != self.stride:
            self.stride = stride
            self._sent = None  # every kept sample changes: the views need a new window
        first = -(-base // stride) * stride  # the first kept stream number
        newest = base + n - 1
        count = len(range(first, newest + 1, stride))
        self._seq += 1
        content: dict[str, Any] = {
            "seq": self._seq,
            "tail": [_json_float(xs[-1]), _json_float(ys[-1])] if n and newest % stride else None,
        }
        sent, self._sent = self._sent, (first, count, newest)
        if sent is not None and not self._window_wanted:
            sent_first, sent_count, sent_newest = sent
            drop = min(sent_count, max(0, (first - sent_first) // stride)) if sent_count else 0
            start = -(-max(sent_newest + 1, base) // stride) * stride
            added = len(range(start, newest + 1, stride))
            if sent_count - drop + added == count:  # always, unless the bookkeeping is broken
                content.update(type="append", drop=drop)
                i = start - base
                return content, [float64_bytes(xs[i::stride]), float64_bytes(ys[i::stride])]
        self._window_wanted = False
        self.windows_sent += 1
        content["type"] = "window"
        i = first - base
        return content, [float64_bytes(xs[i::stride]), float64_bytes(ys[i::stride])]

    def shown(self) -> tuple[bytes, bytes]:
        """``(x, y)`` bytes of the series as the views hold it after the last message (tail
        included); also valid before any message (what the next one would show)."""
        xs, ys, base, stride = self._xs, self._ys, self._base, self.stride
        n = len(xs)
        if not n:
            return b"", b""
        i = -(-base // stride) * stride - base
        kx, ky = xs[i::stride], ys[i::stride]
        if (base + n - 1) % stride:
            kx.append(xs[-1])
            ky.append(ys[-1])
        return float64_bytes(kx), float64_bytes(ky)
