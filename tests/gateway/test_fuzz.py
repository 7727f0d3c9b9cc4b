"""Generated frames: every frame with an ``_id`` gets exactly one ack or error, nothing
kills the connection, and a bystander only ever sees well-formed frames."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from rtwidgets.gateway import Gateway
from rtwidgets.protocol import SERVER_TYPES, ErrorCode

TYPES = ["ping", "subscribe", "unsubscribe", "publish", "presence_update", "sync", "bogus", "", None, 7]
CHANNELS = ["fz", "fz2", "", "a b", "x" * 201, "*", None, 5, "ok:chan", "forbidden:x"]
VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**60,
    1.5,
    "",
    "s",
    "x" * 300,
    [],
    [1, "a"],
    {},
    {"k": [1, {"z": None}]},
]


def random_frame(rng: random.Random, msg_id: int) -> dict[str, Any]:
    frame: dict[str, Any] = {"_id": msg_id}
    if rng.random() < 0.95:
        frame["type"] = rng.choice(TYPES)
    if rng.random() < 0.9:
        frame["channel"] = rng.choice(CHANNELS)
    for field in (
        "data",
        "seq",
        "key",
        "msgId",
        "ephemeral",
        "t",
        "lastEventId",
        "epoch",
        "version",
        "pendingOps",
    ):
        if rng.random() < 0.3:
            frame[field] = rng.choice(VALUES)
    if rng.random() < 0.5:
        options = {}
        for field in ("presence", "history", "lastEventId", "epoch", "state", "presenceData"):
            if rng.random() < 0.4:
                options[field] = rng.choice(VALUES)
        frame["options"] = options if rng.random() < 0.9 else rng.choice(VALUES)
    return frame


@pytest.mark.fuzz
async def test_generated_frames_get_exactly_one_answer_each(gateway: Gateway, connect) -> None:
    rng = random.Random(20261128)
    fuzzer = await connect(gateway, "fuzzer", channels=["fz*", "ok:*"])
    bystander = await connect(gateway, "bystander")
    await bystander.subscribe("fz", presence=True)
    count = 400
    for msg_id in range(1, count + 1):
        await fuzzer.send(json.dumps(random_frame(rng, msg_id)))
    await fuzzer.send(json.dumps({"type": "ping", "_id": "done"}))
    await fuzzer.take(lambda f: f.get("id") == "done")
    answers: dict[Any, list[dict[str, Any]]] = {}
    for frame in fuzzer.frames:
        assert frame["type"] in SERVER_TYPES, frame
        if frame["type"] in ("ack", "error") and "id" in frame:
            answers.setdefault(frame["id"], []).append(frame)
        if frame["type"] == "error":
            assert frame["code"] in {c.value for c in ErrorCode} and frame["code"] != "internal", frame
    missing = [i for i in range(1, count + 1) if len(answers.get(i, [])) != 1]
    assert missing == [], f"frames without exactly one answer: {missing[:10]}"
    assert any(a[0]["type"] == "ack" for a in answers.values())
    assert any(a[0]["type"] == "error" for a in answers.values())
    # The bystander still works and saw only well-formed frames.
    await bystander.publish("fz", "still here")
    await bystander.take(lambda f: f.get("data") == "still here")
    for frame in bystander.frames:
        assert frame["type"] in SERVER_TYPES
        if frame["type"] == "message":
            assert frame["channel"] == "fz" and isinstance(frame["offset"], int)
