"""Hypothesis strategies for raw client and server frames, and the expected refusal of each.

``client_frames()`` yields what a hostile or buggy client could put in one WebSocket frame:
``str`` (text frames: broken JSON, non-objects, structurally plausible but wrong objects,
deep nesting, huge numbers, odd unicode, oversize padding) or ``bytes`` (binary frames).
:func:`expected_refusal` says, from the shared protocol module alone, which ``error`` code the
gateway must answer with (``None``: the frame is well-formed and may be acked or refused
for a semantic reason), and which ``id`` that answer must carry.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from rtwidgets import protocol
from rtwidgets.protocol import CLIENT_TYPES, SERVER_TYPES, ErrorCode, ProtocolError

# orjson (the codec on both sides) handles 64-bit integers and finite floats only.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
ODD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # surrogates cannot be sent as UTF-8
    max_size=40,
) | st.sampled_from(["", "\u0000", "\u202e", "e\u0301", "🙂" * 8, "\ufeff", "\x7f", " ", "*", "fz:\n"])

JSON_SCALARS = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | ODD_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=12,
)

CHANNELS = st.sampled_from(["fz:a", "fz:b", "fz:c", "guard", "fz:🙂", "x" * 201, "", "fz:*"]) | ODD_TEXT
TYPES = st.sampled_from(sorted(CLIENT_TYPES)) | st.sampled_from(["", "PING", "message", "ack"]) | JSON_SCALARS


def _ids(counter: list[int]) -> st.SearchStrategy[Any]:
    """Mostly fresh valid ids (so answers can be matched), sometimes invalid ones or none."""

    def fresh(_: Any) -> Any:
        counter[0] += 1
        return counter[0] if counter[0] % 2 else f"f{counter[0]}"

    return st.one_of(
        st.just(None).map(fresh),
        st.just(None).map(fresh),
        st.just(None).map(fresh),
        st.sampled_from([True, 1.5, "", "x" * 129, 2**60, [], {}]),
        st.just("<absent>"),
    )


def _options() -> st.SearchStrategy[Any]:
    plausible = st.fixed_dictionaries(
        {},
        optional={
            "presence": st.booleans() | JSON_SCALARS,
            "history": st.integers(-5, 60) | JSON_SCALARS,
            "lastEventId": st.sampled_from(["0", "1", "5", "999999", "abc", ""]) | JSON_SCALARS,
            "epoch": ODD_TEXT | JSON_SCALARS,
            "state": st.booleans(),
            "presenceData": st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3) | JSON_VALUES,
        },
    )
    return plausible | JSON_VALUES


def structured_frames(counter: list[int]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that look like client frames, each field right or wrong."""
    fields = st.fixed_dictionaries(
        {"type": TYPES},
        optional={
            "channel": CHANNELS,
            "data": JSON_VALUES,
            "options": _options(),
            "t": INT64 | JSON_SCALARS,
            "seq": st.integers(-1, 2**53 + 1) | JSON_SCALARS,
            "key": ODD_TEXT | JSON_SCALARS,
            "msgId": ODD_TEXT | JSON_SCALARS,
            "ephemeral": st.booleans() | JSON_SCALARS,
            "lastEventId": ODD_TEXT | JSON_SCALARS,
            "version": INT64 | JSON_SCALARS,
            "pendingOps": st.lists(ODD_TEXT, max_size=3) | JSON_VALUES,
            "extra": JSON_VALUES,
        },
    )

    def with_id(frame: dict[str, Any], msg_id: Any) -> dict[str, Any]:
        if msg_id != "<absent>":
            frame["_id"] = msg_id
        return frame

    return st.builds(with_id, fields, _ids(counter))


def _deep(depth: int, msg_id: int) -> str:
    nested = "[" * depth + "]" * depth
    return f'{{"type":"publish","channel":"fz:a","_id":{msg_id},"data":{nested}}}'


def client_frames(counter: list[int], oversize: int) -> st.SearchStrategy[str | bytes]:
    """One raw client frame (see the module docstring). ``oversize``: a size above the soft limit."""

    def dump(frame: dict[str, Any]) -> str:
        return json.dumps(frame, ensure_ascii=False)

    def deep(depth: int) -> str:
        counter[0] += 1
        return _deep(depth, counter[0])

    def padded(frame: dict[str, Any]) -> str:
        frame["pad"] = "p" * oversize
        return dump(frame)

    return st.one_of(
        structured_frames(counter).map(dump),
        structured_frames(counter).map(dump),
        structured_frames(counter).map(dump),
        structured_frames(counter).map(padded),
        st.integers(28, 120).map(deep),
        JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)),  # valid JSON, rarely an object
        st.text(max_size=60, alphabet=st.characters(blacklist_categories=("Cs",))),  # mostly not JSON
        st.sampled_from(
            [
                '{"type":"ping","t":1e400}',
                '{"type":"ping","_id":1e2}',
                '{"type":"publish","channel":"fz:a","data":123456789012345678901234567890}',
                '{"type":"ping","_id":"\\ud800"}',
                '{"type":"subscribe","channel":"fz:\\u0000"}',
                '{"type":"ping"',
                "[]",
                "null",
                '{"type":"ping"}{"type":"ping"}',
                '{"type":"ping","type":"publish"}',
                "\ufeff{}",
            ]
        ),
        st.binary(max_size=64),
    )


def salvage_id(raw: str | bytes) -> Any:
    """The ``_id`` an answer must carry: the frame's ``_id`` when it is a JSON object with a
    valid one, else ``None`` (the refusal cannot be correlated)."""
    if isinstance(raw, bytes):
        return None
    try:
        value = protocol.decode(raw)
    except ProtocolError:
        return None
    if not isinstance(value, dict):
        return None
    msg_id = value.get("_id")
    if isinstance(msg_id, bool):
        return None
    if isinstance(msg_id, int) and abs(msg_id) <= 2**53:
        return msg_id
    if isinstance(msg_id, str) and 0 < len(msg_id) <= protocol.MAX_ID_LENGTH:
        return msg_id
    return None


def expected_refusal(raw: str | bytes, max_bytes: int) -> ErrorCode | None:
    """The error code the gateway must answer ``raw`` with, or ``None`` if it is well-formed."""
    if isinstance(raw, bytes):
        return ErrorCode.BAD_FRAME
    try:
        protocol.parse_client_frame(raw.encode(), max_bytes=max_bytes)
    except ProtocolError as exc:
        return exc.code
    return None


# ---------------------------------------------------------------------------- server frames


def server_frames(channels: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Server frames as a buggy or hostile gateway might send them: plausible types and
    channels, every field possibly of the wrong type."""
    message_like = st.fixed_dictionaries(
        {"type": st.just("message"), "channel": st.sampled_from(channels)},
        optional={
            "data": JSON_VALUES,
            "offset": INT64 | JSON_SCALARS,
            "epoch": st.sampled_from(["e1", "e2"]) | JSON_SCALARS,
            "eventId": ODD_TEXT | JSON_SCALARS,
            "id": ODD_TEXT | JSON_SCALARS,
            "key": ODD_TEXT | JSON_SCALARS,
        },
    )
    member = st.fixed_dictionaries(
        {}, optional={"clientId": ODD_TEXT | JSON_SCALARS, "userId": JSON_SCALARS, "data": JSON_VALUES}
    )
    return (
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(sorted(SERVER_TYPES)) | ODD_TEXT,
                "channel": st.sampled_from(channels) | JSON_SCALARS,
            },
            optional={
                "id": INT64 | ODD_TEXT | JSON_VALUES,
                "data": st.lists(message_like | JSON_VALUES, max_size=4) | JSON_VALUES,
                "events": st.lists(message_like | JSON_VALUES, max_size=4) | JSON_VALUES,
                "state": st.dictionaries(ODD_TEXT, message_like | JSON_VALUES, max_size=3) | JSON_VALUES,
                "recovered": st.booleans() | JSON_SCALARS,
                "offset": INT64 | JSON_SCALARS,
                "version": INT64 | JSON_SCALARS,
                "epoch": st.sampled_from(["e1", "e2"]) | JSON_SCALARS,
                "latestEventId": ODD_TEXT | JSON_SCALARS,
                "syncType": st.sampled_from(["delta", "snapshot"]) | JSON_SCALARS,
                "member": member | JSON_VALUES,
                "members": st.lists(member | JSON_VALUES, max_size=4) | JSON_VALUES,
                "code": ODD_TEXT | JSON_SCALARS,
                "reason": ODD_TEXT | JSON_SCALARS,
                "t": INT64 | JSON_SCALARS,
                "clientId": ODD_TEXT | JSON_SCALARS,
                "userId": ODD_TEXT | JSON_SCALARS,
            },
        )
        | message_like
    )


# ---------------------------------------------------------------------------- mutation fuzzer
#
# Hypothesis shrinks failures beautifully but draws structured frames at a few ms each; a
# seeded mutation fuzzer produces thousands of hostile variants of valid frames per second.
# Both feed the same checks.

_WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 + 1,
    2**64 - 1,
    -(2**63),
    1.5,
    1e308,
    -0.0,
    "",
    "x" * 300,
    "\u0000",
    "\u202e🙂",
    "fz:a",
    "guard",
    "*",
    [],
    {},
    [[[[1]]]],
    {"a": {"b": {"c": []}}},
    ["fz:a"],
]


def seed_frames(msg_id: int) -> list[dict[str, Any]]:
    """One valid client frame of every type (the mutator's starting points)."""
    return [
        {"type": "ping", "t": 1767225600000, "_id": msg_id},
        {"type": "subscribe", "channel": "fz:a", "_id": msg_id, "options": {"history": 3, "state": True}},
        {
            "type": "subscribe",
            "channel": "fz:b",
            "_id": msg_id,
            "options": {"presence": True, "presenceData": {"name": "z"}, "lastEventId": "1", "epoch": "e"},
        },
        {"type": "unsubscribe", "channel": "fz:b", "_id": msg_id},
        {"type": "publish", "channel": "fz:a", "data": {"text": "hi"}, "_id": msg_id, "seq": 1, "msgId": "m"},
        {"type": "publish", "channel": "fz:a", "data": None, "key": "k", "_id": msg_id},
        {"type": "publish", "channel": "fz:c", "data": [1, 2], "ephemeral": True, "_id": msg_id},
        {"type": "presence_update", "channel": "fz:b", "data": {"cursor": [1, 2]}, "_id": msg_id},
        {"type": "sync", "channel": "fz:a", "lastEventId": "0", "pendingOps": ["m"], "_id": msg_id},
        {"type": "sync", "_id": msg_id},
    ]


class Mutator:
    """Seeded generator of hostile client frames derived from valid ones."""

    def __init__(self, seed: int, oversize: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.oversize = oversize
        self.next_id = 0

    def _value(self) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(_WEIRD)
        if roll < 0.8:
            return "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 12))).replace(
                "\ud800", ""
            )
        return rng.randrange(-(2**63), 2**63)

    def _mutate_dict(self, frame: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(6)
            keys = list(frame)
            if op == 0 and keys:
                frame.pop(rng.choice(keys))
            elif op == 1 and keys:
                frame[rng.choice(keys)] = self._value()
            elif op == 2:
                frame[rng.choice(["channel", "data", "options", "_id", "type", "key", "zz"])] = self._value()
            elif op == 3 and isinstance(frame.get("options"), dict):
                opts = frame["options"]
                opts[rng.choice(["presence", "history", "lastEventId", "epoch", "state", "presenceData"])] = (
                    self._value()
                )
            elif op == 4:
                frame["type"] = rng.choice(["ping", "publish", "Publish", "", "message", "sync "])
            else:
                frame["data"] = {"blob": "b" * rng.randrange(0, 5000)}
        return frame

    def _mutate_text(self, text: str) -> str | bytes:
        rng = self.rng
        op = rng.randrange(8)
        if op == 0:
            return text[: rng.randrange(0, max(1, len(text)))]  # truncated
        if op == 1:
            i = rng.randrange(0, len(text) + 1)
            return text[:i] + rng.choice(['"', "{", "}", ",", "\\", "\x00", "]", ":", "\\ud800"]) + text[i:]
        if op == 2:
            return text.encode()  # a binary frame
        if op == 3:
            depth = rng.randrange(20, 200)
            return text[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
        if op == 4:
            return text[:-1] + ',"pad":"' + "p" * self.oversize + '"}'
        if op == 5:
            return text + text  # two objects in one frame
        if op == 6:
            return text.replace("1", "1e999", 1)
        return "[" + text + "]"

    def frame(self) -> str | bytes:
        """One hostile frame (text or binary)."""
        rng = self.rng
        self.next_id += 1
        msg_id: Any = self.next_id if rng.random() < 0.5 else f"m{self.next_id}"
        frame = rng.choice(seed_frames(msg_id))
        if rng.random() < 0.75:
            frame = self._mutate_dict(frame)
        try:
            text = json.dumps(frame, ensure_ascii=rng.random() < 0.5)
        except (TypeError, ValueError):
            text = '{"type":"ping"}'
        if rng.random() < 0.35:
            return self._mutate_text(text)
        return text

    def value(self) -> Any:
        """A random JSON-ish value (for server-frame fields)."""
        return self._value()
