"""Property: N >= 3 replicas connected through a real gateway apply random concurrent inserts
and deletes, with random connection drops (transport aborted, automatic reconnect) and random
deliberate offline periods, and all end with identical text; a late joiner sees the same text.

Equal replicas are not enough (all losing the same edit would pass), so the expected content
is derived independently of the CRDT: every insert is a unique token ``[id:payload]``
placed at a token boundary, and every delete removes whole tokens, each in one transaction
on the replica's own document (``CollabDoc.edit``, so a remote update cannot shift the
positions in between). Whatever the interleaving, the converged text must then consist of
exactly the tokens inserted and never deleted, each intact and exactly once; only their
order is the CRDT's to choose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pycrdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.gateway import Gateway
from rtwidgets.models.collab import TEXT_NAME

from .conftest import TIMEOUT, Replicas, converged, fresh_channel, make_gateway, wait_until

REPLICAS = 3
_gateway: Gateway | None = None


def shared_gateway() -> Gateway:
    # One gateway for every example (hypothesis examples cannot use function fixtures);
    # each example uses a fresh channel. Stopped by the module fixture below.
    global _gateway
    if _gateway is None:
        _gateway = make_gateway(history_size=40)  # small: resets and snapshots are exercised too
    return _gateway


def teardown_module() -> None:
    global _gateway
    if _gateway is not None:
        _gateway.stop()
        _gateway = None


@dataclass(frozen=True)
class Op:
    replica: int
    kind: str  # insert | delete | drop | offline | online
    where: float  # position as a fraction of the replica's current tokens
    text: str = ""
    length: int = 0  # tokens a delete removes (fewer if the text has fewer after ``where``)


TOKEN = re.compile(r"\[(\d+):([^\[\]]*)\]")


def tokens(text: str) -> list[str]:
    """The whole tokens of ``text``; fails if anything else is in it (a torn or stray piece)."""
    found = [m.group(0) for m in TOKEN.finditer(text)]
    assert "".join(found) == text, f"text is not made of whole tokens: {text!r}"
    return found


def insert_token(token: str, where: float) -> Any:
    """An edit putting ``token`` at the token boundary nearest ``where`` (of the current tokens)."""

    def edit(ydoc: pycrdt.Doc[Any]) -> None:
        ytext = ydoc.get(TEXT_NAME, type=pycrdt.Text)
        current = tokens(str(ytext))
        before = "".join(current[: round(where * len(current))])
        ytext.insert(len(before.encode("utf-8")), token)  # pycrdt counts UTF-8 bytes

    return edit


def delete_tokens(where: float, count: int) -> Any:
    """An edit removing up to ``count`` whole tokens from the one at ``where``; returns them."""

    def edit(ydoc: pycrdt.Doc[Any]) -> list[str]:
        ytext = ydoc.get(TEXT_NAME, type=pycrdt.Text)
        current = tokens(str(ytext))
        if not current:
            return []
        first = min(round(where * len(current)), len(current) - 1)
        gone = current[first : first + count]
        start = len("".join(current[:first]).encode("utf-8"))
        del ytext[start : start + len("".join(gone).encode("utf-8"))]
        return gone

    return edit


ops = st.builds(
    Op,
    replica=st.integers(0, REPLICAS - 1),
    kind=st.sampled_from(["insert", "insert", "insert", "delete", "delete", "drop", "offline", "online"]),
    where=st.floats(0.0, 1.0),
    text=st.text(alphabet="abcxyz é😀\n", min_size=0, max_size=6),
    length=st.integers(1, 5),
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=st.lists(ops, min_size=5, max_size=30))
def test_replicas_converge_under_concurrent_edits_and_disconnects(program: list[Op]) -> None:
    gw = shared_gateway()
    made = Replicas(gw)
    try:
        name = fresh_channel("prop")
        docs = [made.doc(f"user{i}", name, snapshot_every=7) for i in range(REPLICAS)]
        offline: set[int] = set()
        inserted: list[str] = []
        deleted: set[str] = set()
        for n, op in enumerate(program):
            doc = docs[op.replica]
            if op.kind == "insert":
                token = f"[{n}:{op.text}]"
                doc.edit(insert_token(token, op.where))
                inserted.append(token)
            elif op.kind == "delete":
                deleted.update(doc.edit(delete_tokens(op.where, op.length)))
            elif op.kind == "drop" and op.replica not in offline:
                doc.connection.simulate_drop()  # network failure: reconnects by itself
            elif op.kind == "offline" and op.replica not in offline:
                doc.connection.disconnect()  # edits continue locally while away
                offline.add(op.replica)
            elif op.kind == "online" and op.replica in offline:
                doc.connection.connect()
                offline.discard(op.replica)
        for i in offline:
            docs[i].connection.connect()
        wait_until(lambda: converged(docs), TIMEOUT, "convergence of all replicas")
        final = docs[0].text
        assert all(d.text == final for d in docs)
        # The model: a replica can only delete what it holds, so every deleted token was
        # inserted; the rest must survive, intact and once, on every replica.
        assert deleted <= set(inserted)
        expected = sorted(t for t in inserted if t not in deleted)
        for i, d in enumerate(docs):
            assert sorted(tokens(d.text)) == expected, f"replica {i} lost or duplicated edits"
        late = made.doc("late", name)
        assert late.wait_for_text(final, TIMEOUT) == final
    finally:
        made.close()
