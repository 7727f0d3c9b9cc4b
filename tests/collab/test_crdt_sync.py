"""Pure helpers of rtwidgets.core.crdt_sync: wire format, state vectors, index conversions,
the snapshot policy and the pending-update ledger. Replicas here are in-memory pycrdt docs."""

from __future__ import annotations

import random

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core import crdt_sync as cs


def text_doc(content: str = "") -> tuple[pycrdt.Doc, pycrdt.Text]:
    doc = pycrdt.Doc()
    text = doc.get("text", type=pycrdt.Text)
    if content:
        text.insert(0, content)
    return doc, text


def test_messages_round_trip() -> None:
    update = b"\x01\x02\x00\xff"
    assert cs.parse_doc_message(cs.update_message(update)) == cs.UpdateMessage(update)
    assert cs.parse_doc_message(cs.snapshot_message(update)) == cs.SnapshotMessage(update)
    assert cs.parse_doc_message(cs.state_vector_message(b"\x00", "c1")) == cs.StateVectorMessage(
        b"\x00", "c1"
    )
    assert cs.parse_doc_message(cs.state_vector_message(b"\x00", "c1", to="c2")).to == "c2"
    assert cs.parse_doc_message(cs.diff_message(update, "c9")) == cs.DiffMessage(update, "c9")
    assert cs.update_message(update) == {"t": "update", "v": 1, "u": "AQIA/w=="}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("text", "must be an object"),
        ({"t": "update"}, "'u' must be a base64 string"),
        ({"t": "update", "u": "not base64!"}, "not valid base64"),
        ({"t": "update", "u": "AA==", "v": 2}, "unsupported doc protocol version"),
        ({"t": "nope", "u": "AA=="}, "unknown doc message type"),
        ({"t": "sv", "sv": "AA=="}, "'from' must be a client id"),
        ({"t": "diff", "u": "AA==", "to": ""}, "'to' must be a client id"),
        ({"t": "sv", "sv": 5, "from": "x"}, "'sv' must be a base64 string"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(data: object, match: str) -> None:
    with pytest.raises(cs.CollabProtocolError, match=match):
        cs.parse_doc_message(data)


def test_state_vectors_decode_like_pycrdt_encodes_them() -> None:
    doc_a, _text_a = text_doc("hello")
    doc_b, _text_b = text_doc("x" * 300)  # a clock above 127 needs a multi-byte varint
    doc_a.apply_update(doc_b.get_update())
    vector = cs.decode_state_vector(doc_a.get_state())
    assert vector == {doc_a.client_id: 5, doc_b.client_id: 300}
    assert cs.decode_state_vector(b"\x00") == {}
    with pytest.raises(cs.CollabProtocolError, match="middle of a number"):
        cs.decode_state_vector(b"\x01\x80")
    with pytest.raises(cs.CollabProtocolError, match="trailing"):
        cs.decode_state_vector(b"\x00\x00")
    assert cs.has_unseen({1: 3}, {1: 4}) and cs.has_unseen({}, {7: 1})
    assert not cs.has_unseen({1: 4, 2: 1}, {1: 4})


def test_diff_against_an_up_to_date_peer_is_empty() -> None:
    doc_a, _ = text_doc("same")
    doc_b = pycrdt.Doc()
    doc_b.apply_update(doc_a.get_update())
    assert cs.is_empty_update(doc_a.get_update(doc_b.get_state()))
    assert not cs.is_empty_update(doc_a.get_update(pycrdt.Doc().get_state()))


@given(st.text(max_size=30), st.integers(0, 40))
def test_utf8_offsets_and_char_indexes_are_inverse(text: str, index: int) -> None:
    index = min(index, len(text))
    offset = cs.utf8_offset(text, index)
    assert offset == len(text[:index].encode())
    assert cs.char_index(text, offset) == index


def test_char_index_rounds_down_inside_a_character() -> None:
    assert cs.char_index("a😀b", 2) == 1  # byte 2 is inside the 4-byte emoji


@given(st.text(alphabet="abc😀\n", max_size=20), st.text(alphabet="abc😀\n", max_size=20))
def test_minimal_edit_turns_old_into_new(old: str, new: str) -> None:
    start, count, insert = cs.minimal_edit(old, new)
    assert old[:start] + insert + old[start + count :] == new
    assert count <= len(old) and len(insert) <= len(new)


def test_minimal_edit_keeps_common_prefix_and_suffix() -> None:
    assert cs.minimal_edit("one two three", "one 2 three") == (4, 3, "2")
    assert cs.minimal_edit("same", "same") == (4, 0, "")


def test_end_position_resolves_to_the_end_of_the_text() -> None:
    _doc, text = text_doc()
    position = pycrdt.StickyIndex.decode(cs.end_position("text"), text)
    assert position.get_index() == 0
    text.insert(0, "grows")
    assert position.get_index() == len("grows")


def test_snapshot_policy_counts_updates_since_the_last_snapshot() -> None:
    policy = cs.SnapshotPolicy(3, spread=0)
    for _ in range(2):
        policy.observe_update()
    assert not policy.due
    policy.observe_update()
    assert policy.due
    policy.started()
    assert not policy.due
    for _ in range(3):
        policy.observe_update()
    policy.observe_snapshot()  # someone else published one: start over
    assert not policy.due and policy.since_snapshot == 0
    with pytest.raises(ValueError, match="snapshot interval"):
        cs.SnapshotPolicy(0)


def test_snapshot_policy_spread_is_random_but_bounded() -> None:
    policy = cs.SnapshotPolicy(8, spread=4, rng=random.Random(3))
    fired_at = 0
    while not policy.due:
        policy.observe_update()
        fired_at += 1
    assert 8 <= fired_at <= 12


def test_pending_updates_keep_failed_edits_merged_for_a_resend() -> None:
    source, text = text_doc()
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    text.insert(0, "ab")
    text.insert(2, "cd")
    pending = cs.PendingUpdates()
    first, second = pending.add(updates[0]), pending.add(updates[1])
    assert pending.in_flight == 2
    pending.confirm(first)
    pending.fail(second)
    assert (pending.in_flight, pending.failed) == (0, 1)
    resend = pending.take_failed()
    assert resend == updates[1] and pending.take_failed() is None
    third, fourth = pending.add(updates[0]), pending.add(updates[1])
    pending.fail(third)
    pending.fail(fourth)
    merged = pending.take_failed()
    assert merged is not None
    replica, replica_text = text_doc()
    replica.apply_update(merged)
    assert str(replica_text) == "abcd"


def deliver(replica: pycrdt.Doc, held: cs.HeldUpdates, update: bytes) -> None:
    """Apply a remote update the way CollabDoc does (holding what cannot integrate yet)."""
    before = replica.get_state()
    replica.apply_update(update)
    held.note(update, replica.get_state())
    if replica.get_state() != before:
        held.retry(replica.apply_update, replica.get_state)


@settings(max_examples=25)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 50), st.text("xyz", min_size=1, max_size=3)), max_size=15
    ),
    st.randoms(use_true_random=False),
)
def test_in_memory_replicas_converge_whatever_the_delivery_order(
    edits: list[tuple[int, int, str]], rng: random.Random
) -> None:
    # The property everything else relies on: updates commute and are idempotent.
    replicas = [text_doc() for _ in range(3)]
    produced: list[bytes] = []
    for who, where, chunk in edits:
        doc, text = replicas[who]
        before = doc.get_state()
        text.insert(min(where, len(text)), chunk)
        produced.append(doc.get_update(before))
    for doc, _ in replicas:
        held = cs.HeldUpdates()
        order = produced[:] + produced[: len(produced) // 2]  # some delivered twice
        rng.shuffle(order)
        for update in order:
            deliver(doc, held, update)
    assert len({str(text) for _, text in replicas}) == 1
    # ...and the common text holds every insert exactly once (nothing lost, nothing doubled).
    assert len(str(replicas[0][1])) == sum(len(chunk) for _, _, chunk in edits)


def test_held_updates_integrate_whatever_the_arrival_order() -> None:
    source, text = text_doc()
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    for _ in range(5):
        text.insert(0, "x")
    text.insert(4, "y")
    del text[0:2]  # a deletion too
    expected = str(text)
    rng = random.Random(5)
    for _ in range(40):
        order = updates[:]
        rng.shuffle(order)
        replica, replica_text = text_doc()
        held = cs.HeldUpdates()
        for update in order:
            deliver(replica, held, update)
        assert str(replica_text) == expected
        assert len(held) == 0
