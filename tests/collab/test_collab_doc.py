"""CollabDoc through a real gateway: edits propagate, offline edits survive, late joiners
see everything (also after the history rolled over), cursors come and go, bad input is
refused loudly."""

from __future__ import annotations

import pytest

from rtwidgets.core.crdt_sync import update_message
from rtwidgets.models import Channel
from rtwidgets.models.collab import MAX_INSERT_BYTES, CollabDoc, CollabError

from .conftest import TIMEOUT, Replicas, converged, fresh_channel, make_gateway, wait_until


def test_edits_propagate_both_ways(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)
    assert alice.insert(0, "hello world") == "hello world"
    assert bob.wait_for_text("hello world", TIMEOUT) == "hello world"
    bob.insert(5, ",")
    bob.delete(6, 6)
    assert alice.wait_for_text("hello,", TIMEOUT) == "hello,"
    alice.replace("hello, there")
    assert bob.wait_for_text("hello, there", TIMEOUT) == "hello, there"
    wait_until(lambda: converged([alice, bob]), what="convergence")


def test_indexes_are_python_characters(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)
    alice.insert(0, "a😀b")
    alice.insert(2, "é")  # after the emoji: index 2 is a Python index, not a UTF-8 offset
    assert alice.text == "a😀éb"
    assert bob.wait_for_text("a😀éb", TIMEOUT) == "a😀éb"
    bob.delete(1, 1)
    assert alice.wait_for_text("aéb", TIMEOUT) == "aéb"


def test_replace_touches_only_the_difference(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)
    alice.insert(0, "one two three")
    bob.wait_for_text("one two three", TIMEOUT)
    changes: list[str] = []
    unsubscribe = alice.on_change(lambda change: changes.append(change.origin))
    # Concurrently: bob edits the start while alice replaces the end.
    bob.insert(0, ">> ")
    alice.replace("one two four")
    unsubscribe()
    wait_until(lambda: converged([alice, bob]), what="convergence")
    assert alice.text == bob.text == ">> one two four"
    assert "local" in changes


def test_edit_while_disconnected_survives_reconnect(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)
    alice.insert(0, "base")
    bob.wait_for_text("base", TIMEOUT)
    alice.connection.disconnect()
    wait_until(lambda: not alice.is_subscribed, what="alice offline")
    alice.insert(4, " + offline edit")  # applied locally, publish fails: kept for later
    bob.insert(0, "online: ")  # meanwhile bob edits too
    assert alice.text == "base + offline edit"
    alice.connection.connect(wait=True)
    assert bob.wait_for_text("online: base + offline edit", TIMEOUT)
    assert alice.wait_for_text("online: base + offline edit", TIMEOUT)
    wait_until(lambda: converged([alice, bob]), what="convergence")


def test_late_joiner_sees_the_whole_document(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    for i in range(20):
        alice.insert(len(alice.text), f"{i};")
    expected = alice.text
    late = replicas.doc("carol", name)
    assert late.wait_for_text(expected, TIMEOUT) == expected


def test_late_joiner_after_history_rolled_over_uses_the_snapshot() -> None:
    gw = make_gateway(history_size=8)
    made = Replicas(gw)
    try:
        name = fresh_channel()
        alice = made.doc("alice", name, snapshot_every=3)
        for i in range(40):
            alice.insert(len(alice.text), f"<{i}>")
        expected = alice.text
        wait_until(lambda: converged([alice]), what="all published")
        alice.close()  # nobody is left to answer a state-vector handshake: only the channel counts
        late = made.doc("carol", name)
        assert late.wait_for_text(expected, TIMEOUT) == expected
        assert gw.broker is not None
    finally:
        made.close()
        gw.stop()


def test_cursor_is_shared_moves_with_edits_and_leaves_with_its_user(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name, color="#ff0000")
    bob = replicas.doc("bob", name)
    alice.insert(0, "hello world")
    bob.wait_for_text("hello world", TIMEOUT)
    alice.set_cursor(6, 11)  # selects "world"
    wait_until(lambda: len(bob.cursors) == 1, what="alice's cursor at bob")
    cursor = bob.cursors[0]
    assert (cursor["userId"], cursor["name"], cursor["color"]) == ("alice", "alice", "#ff0000")
    assert (cursor["anchor"], cursor["head"]) == (6, 11)
    bob.insert(0, ">>> ")  # a remote edit before the selection moves it
    wait_until(lambda: bob.cursors and bob.cursors[0]["anchor"] == 10, what="cursor moved")
    assert bob.cursors[0]["head"] == 15
    assert bob.text[10:15] == "world"
    assert {p["userId"] for p in bob.peers} == {"alice", "bob"}
    alice.close()
    wait_until(lambda: bob.cursors == [] and len(bob.peers) == 1, what="alice's cursor removed")


def test_bad_payload_on_the_channel_is_refused_and_reported(replicas: Replicas) -> None:
    name = fresh_channel()
    bob = replicas.doc("bob", name)
    mallory = Channel(replicas.connection("mallory"), name)
    mallory.wait_subscribed(TIMEOUT)
    mallory.publish({"t": "update", "u": "%%% not base64"})
    wait_until(lambda: bob.bad_messages == 1, what="refusal counted")
    assert "not valid base64" in bob.error
    mallory.publish(update_message(b"\x07garbage"))
    wait_until(lambda: bob.bad_messages == 2, what="second refusal counted")
    assert "not a valid Yjs update" in bob.error
    mallory.close()
    bob.insert(0, "still fine")
    assert bob.text == "still fine"


def test_bad_arguments_raise_clear_errors(replicas: Replicas) -> None:
    doc = replicas.doc("alice", fresh_channel())
    doc.insert(0, "abc")
    with pytest.raises(IndexError, match=r"outside 0\.\.3"):
        doc.insert(4, "x")
    with pytest.raises(IndexError):
        doc.delete(2, 5)
    with pytest.raises(TypeError):
        doc.insert(0, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        doc.insert(0, "x" * (MAX_INSERT_BYTES + 1))
    with pytest.raises(ValueError):
        doc.apply_update(b"\x05not an update")
    with pytest.raises(IndexError):
        doc.set_cursor(10)
    with pytest.raises(TypeError):
        CollabDoc("not a connection", "doc:x")  # type: ignore[arg-type]
    assert doc.text == "abc"
    assert repr(doc).startswith("<CollabDoc 'doc:")
    doc.close()
    with pytest.raises(CollabError, match="closed"):
        doc.insert(0, "x")
