"""Property: N >= 3 replicas connected through a real gateway apply random concurrent inserts
and deletes, with random connection drops (transport aborted, automatic reconnect) and random
deliberate offline periods, and all end with identical text; a late joiner sees the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.gateway import Gateway

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
    where: float  # position as a fraction of the replica's current text
    text: str = ""
    length: int = 0


ops = st.builds(
    Op,
    replica=st.integers(0, REPLICAS - 1),
    kind=st.sampled_from(["insert", "insert", "insert", "delete", "delete", "drop", "offline", "online"]),
    where=st.floats(0.0, 1.0),
    text=st.text(alphabet="abcxyz é😀\n", min_size=1, max_size=6),
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
        for op in program:
            doc = docs[op.replica]
            text = doc.text
            at = round(op.where * len(text))
            try:
                if op.kind == "insert":
                    doc.insert(at, op.text)
                elif op.kind == "delete" and text:
                    at = min(at, len(text) - 1)
                    doc.delete(at, min(op.length, len(text) - at))
            except IndexError:
                # A remote edit shrank the text between reading it and editing: the edit was
                # refused as a whole (nothing applied), which is the documented behaviour.
                pass
            if op.kind == "drop" and op.replica not in offline:
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
        late = made.doc("late", name)
        assert late.wait_for_text(final, TIMEOUT) == final
    finally:
        made.close()
