"""The sans-I/O RESP2 parser of the pub/sub connection: any value, any chunking."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.gateway.brokers.resp import RespError, RespParser, encode_command


def encode(value: Any) -> bytes:
    """Reference RESP2 encoder for the test (bytes, int, str -> simple, RespError, list, None)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, bool):
        raise TypeError("no booleans in RESP2")
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, RespError):
        return b"-" + str(value).encode() + b"\r\n"
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)


line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)
scalars = st.one_of(
    st.binary(max_size=40),  # may contain \r\n: bulk strings are length-prefixed
    st.integers(-(2**63), 2**63 - 1),
    line_text,
    line_text.map(RespError),
    st.none(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=20)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, RespError):
        return isinstance(b, RespError) and str(a) == str(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=6), st.data())
def test_any_values_in_any_chunks_come_out_whole_and_in_order(items: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode(v) for v in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = RespParser()
    out: list[Any] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[last:cut])
        last = cut
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))


def test_pubsub_pushes_and_partial_frames() -> None:
    parser = RespParser()
    push = encode([b"message", b"rtw:ch:room", b'{"a":1}\r\n'])
    assert parser.feed(push[:7]) == []
    assert parser.feed(push[7:] + encode([b"pong", b""])) == [
        [b"message", b"rtw:ch:room", b'{"a":1}\r\n'],
        [b"pong", b""],
    ]


@pytest.mark.parametrize(
    "bad",
    [b"?what\r\n", b"$3\r\nabcXY", b":12x\r\n", b"$" + b"9" * 70000],
    ids=["unknown type", "bulk not terminated", "bad integer", "endless header"],
)
def test_a_stream_that_is_not_resp_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        RespParser().feed(bad)


def test_encode_command() -> None:
    assert (
        encode_command("SUBSCRIBE", "a", b"b\r\n") == b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$3\r\nb\r\n\r\n"
    )
