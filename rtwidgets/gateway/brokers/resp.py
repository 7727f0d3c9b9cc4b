"""RESP2, the Redis wire format, sans-I/O: an incremental parser and a command encoder.

Used by the broker's own hot-path connections (:mod:`.resp_conn`); everything else talks to
Redis through redis-py.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

__all__ = ["RespError", "RespParser", "encode_command"]

_MAX_LINE = 64 * 1024  # a RESP header line longer than this is a broken stream


class RespError(ResponseError):
    """An error reply (``-ERR ...``) from Redis (a redis-py ``ResponseError``, as before)."""


class RespParser:
    """Incremental RESP2 parser. ``feed(bytes)`` -> the complete values, in order.

    Values: bulk strings -> ``bytes`` (null bulk -> ``None``), integers -> ``int``, simple
    strings -> ``str``, errors -> :class:`RespError` instances (returned, not raised), arrays
    -> ``list``. Raises ``ValueError`` on a byte stream that is not RESP2.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out: list[Any] = []
        pos = 0
        buf = self._buf
        while pos < len(buf):
            got = self._value(buf, pos)
            if got is None:
                break
            value, pos = got
            out.append(value)
        del buf[:pos]
        return out

    def _value(self, buf: bytearray, pos: int) -> tuple[Any, int] | None:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > _MAX_LINE:
                raise ValueError("RESP header line too long")
            return None
        kind = buf[pos]
        line = bytes(buf[pos + 1 : end])
        nxt = end + 2
        if kind == 0x24:  # $ bulk string
            n = int(line)
            if n < 0:
                return None, nxt
            if len(buf) < nxt + n + 2:
                return None
            if buf[nxt + n : nxt + n + 2] != b"\r\n":
                raise ValueError("RESP bulk string not terminated by CRLF")
            return bytes(buf[nxt : nxt + n]), nxt + n + 2
        if kind == 0x2A:  # * array
            n = int(line)
            if n < 0:
                return None, nxt
            items: list[Any] = []
            for _ in range(n):
                got = self._value(buf, nxt)
                if got is None:
                    return None
                item, nxt = got
                items.append(item)
            return items, nxt
        if kind == 0x3A:  # : integer
            return int(line), nxt
        if kind == 0x2B:  # + simple string
            return line.decode("utf-8", "replace"), nxt
        if kind == 0x2D:  # - error
            return RespError(line.decode("utf-8", "replace")), nxt
        raise ValueError(f"unexpected RESP type byte {kind:#x}")


def encode_command(*args: str | bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)
