"""Fuzz the gateway's frame handling over a real socket (marker ``fuzz``).

One gateway (on the rtwidgets runtime thread) and one fuzzing connection are reused across
examples. Each example is a batch of raw frames; after every frame the fuzzer sends a
sentinel ``ping`` with its own ``_id``. Because a connection's frames are handled one at a
time and answered in order, the answers between two sentinel acks belong to exactly one
frame, which lets every frame be checked precisely:

* a malformed frame gets exactly one ``error`` with the code the shared protocol module
  predicts, carrying the frame's ``_id`` whenever it had a valid one;
* a well-formed frame with an ``_id`` gets exactly one ``ack`` or ``error`` with that id,
  never ``internal``; one without ``_id`` gets at most one (non-internal) ``error``;
* a guard client on a channel the fuzzer may not touch receives nothing at all, and the
  gateway still answers pings afterwards.

Two generators feed the same checks: hypothesis (structured strategies that shrink a
failure to a minimal frame) and a seeded mutation fuzzer (thousands of hostile variants of
valid frames per second). Scale both with ``RTW_FUZZ_EXAMPLES`` (default 100: 100 hypothesis
batches of 5-20 frames plus 60 x 100 mutated frames, about 7 000 frames).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from rtwidgets.gateway import Gateway
from rtwidgets.protocol import ErrorCode
from tests._support.fuzzing import Mutator, client_frames, expected_refusal, salvage_id

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("RTW_FUZZ_EXAMPLES", "100"))
MUTATED = 60 * EXAMPLES
MAX_BYTES = 4096  # a small soft limit keeps oversize frames cheap
TIMEOUT = 10.0
CODES = {c.value for c in ErrorCode}

_counter = [0]
_sent = [0]


def open_sync(url: str, **kwargs: Any) -> ClientConnection:
    """A websockets sync client (entered as a context manager; closed by the caller)."""
    return connect(url, open_timeout=TIMEOUT, **kwargs).__enter__()


class Fuzzer:
    """A sync WebSocket client that sends frames with sentinels and splits the answers."""

    def __init__(self, gw: Gateway, token: str) -> None:
        self.gw = gw
        self.token = token
        self.ws = self._open()
        self.sentinel = 0

    def _open(self) -> ClientConnection:
        ws = open_sync(f"{self.gw.url}/?token={self.token}", max_size=None)
        first = json.loads(ws.recv(timeout=TIMEOUT))
        assert first["type"] == "connected", first
        return ws

    def run(self, frames: list[str | bytes]) -> list[list[dict[str, Any]]]:
        """Send every frame followed by a sentinel ping; return the answers (ack/error) per frame."""
        marks: list[str] = []
        for raw in frames:
            self.ws.send(raw)
            self.sentinel += 1
            mark = f"sentinel-{self.sentinel}"
            marks.append(mark)
            self.ws.send(json.dumps({"type": "ping", "_id": mark}))
        answers: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        while len(answers) < len(marks):
            frame = json.loads(self.ws.recv(timeout=TIMEOUT))
            if frame.get("type") not in ("ack", "error"):
                continue  # history, message, presence, pong...: side effects, not answers
            if frame.get("type") == "ack" and frame.get("id") == marks[len(answers)]:
                answers.append(current)
                current = []
            else:
                current.append(frame)
        return answers

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[tuple[Gateway, Fuzzer, ClientConnection]]:
    gw = Gateway(
        "127.0.0.1",
        0,
        history_size=20,
        max_message_bytes=MAX_BYTES,
        hard_max_bytes=65536,
        publish_rate=1e9,  # rate limiting has its own security test; here it would mask paths
        publish_burst=10**9,
        max_channels_per_connection=16,
    ).start()
    guard = open_sync(f"{gw.url}/?token={gw.token('guard', ['guard'])}")
    assert json.loads(guard.recv(timeout=TIMEOUT))["type"] == "connected"
    guard.send(json.dumps({"type": "subscribe", "channel": "guard", "_id": 1, "options": {"presence": True}}))
    while True:  # read our own join/sync, up to the ack: from here on the guard must hear nothing
        frame = json.loads(guard.recv(timeout=TIMEOUT))
        if frame.get("type") == "ack":
            break
    fuzzer = Fuzzer(gw, gw.token("fuzzer", ["fz*"]))
    try:
        yield gw, fuzzer, guard
    finally:
        fuzzer.close()
        guard.close()
        gw.stop()


def check_answers(frames: list[str | bytes], answers: list[list[dict[str, Any]]]) -> None:
    for raw, got in zip(frames, answers, strict=True):
        expected = expected_refusal(raw, MAX_BYTES)
        msg_id = salvage_id(raw)
        shown = raw[:200] if isinstance(raw, (str, bytes)) else raw
        for answer in got:
            assert answer.get("code") != "internal", f"internal error for {shown!r}: {answer}"
        if expected is not None:
            assert len(got) == 1, f"{shown!r}: expected one error {expected.value}, got {got}"
            err = got[0]
            assert err["type"] == "error" and err["code"] == expected.value, (shown, err)
            assert isinstance(err.get("reason"), str) and err["reason"], err
            assert err.get("id") == msg_id, f"{shown!r}: error must carry id {msg_id!r}: {err}"
        elif msg_id is not None:
            assert len(got) == 1, f"{shown!r}: expected exactly one ack/error, got {got}"
            assert got[0].get("id") == msg_id, (shown, got)
            if got[0]["type"] == "error":
                assert got[0]["code"] in CODES, got
        else:
            assert len(got) <= 1, (shown, got)
            for answer in got:
                assert answer["type"] == "error" and answer["code"] in CODES and "id" not in answer, answer


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    derandomize=False,
)
@given(batch=st.lists(client_frames(_counter, MAX_BYTES + 1), min_size=5, max_size=20))
def test_fuzzed_frames_get_coded_answers(
    fuzz_env: tuple[Gateway, Fuzzer, ClientConnection], batch: list[str | bytes]
) -> None:
    _gw, fuzzer, _guard = fuzz_env
    answers = fuzzer.run(batch)
    _sent[0] += len(batch)
    check_answers(batch, answers)


def test_mutated_frames_get_coded_answers(fuzz_env: tuple[Gateway, Fuzzer, ClientConnection]) -> None:
    _gw, fuzzer, _guard = fuzz_env
    mutator = Mutator(seed=int(os.environ.get("RTW_FUZZ_SEED", "8")), oversize=MAX_BYTES + 1)
    for _ in range(MUTATED // 200):
        batch = [mutator.frame() for _ in range(200)]
        answers = fuzzer.run(batch)
        _sent[0] += len(batch)
        check_answers(batch, answers)


def test_gateway_survived_and_guard_saw_nothing(fuzz_env: tuple[Gateway, Fuzzer, ClientConnection]) -> None:
    gw, fuzzer, guard = fuzz_env
    # Runs after the fuzz test (file order): the batches really were sent.
    assert _sent[0] >= 5 * EXAMPLES + MUTATED - 200, f"only {_sent[0]} fuzz frames were sent"
    assert fuzzer.run(['{"type":"ping","t":1}']) == [[]]
    guard.send(json.dumps({"type": "ping", "_id": "last"}))
    seen = []
    while True:
        frame = json.loads(guard.recv(timeout=TIMEOUT))
        if frame.get("type") == "ack" and frame.get("id") == "last":
            break
        seen.append(frame)
    # Anything the fuzzer leaked to 'guard' would have been queued before this pong.
    assert [f["type"] for f in seen] == ["pong"], seen
    stats = gw.stats()
    assert stats["running"] and stats["connections"] == 2
    assert stats["errors_by_code"].get("internal", 0) == 0, stats["errors_by_code"]
    print(f"\nfuzz: {_sent[0]} frames sent to the gateway; errors by code: {stats['errors_by_code']}")


def test_frame_above_hard_cap_closes_1009_and_gateway_serves_on(
    fuzz_env: tuple[Gateway, Fuzzer, ClientConnection],
) -> None:
    gw, _fuzzer, _guard = fuzz_env
    ws = open_sync(f"{gw.url}/?token={gw.token('big', ['fz*'])}", max_size=None)
    assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
    ws.send("x" * 70000)
    with pytest.raises(Exception) as info:
        ws.recv(timeout=TIMEOUT)
    assert getattr(getattr(info.value, "rcvd", None), "code", None) == 1009, info.value
    ws.close()
    probe = Fuzzer(gw, gw.token("probe", ["fz*"]))
    try:
        assert probe.run(['{"type":"ping"}']) == [[]]
    finally:
        probe.close()


def test_oversize_frame_error_carries_its_id(fuzz_env: tuple[Gateway, Fuzzer, ClientConnection]) -> None:
    _gw, fuzzer, _guard = fuzz_env
    raw = json.dumps({"type": "publish", "channel": "fz:a", "_id": "big-1", "data": "d" * MAX_BYTES})
    [[err]] = fuzzer.run([raw])
    assert err["code"] == "too_large"
    assert err.get("id") == "big-1", err
