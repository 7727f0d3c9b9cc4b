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
    # Concurrently (alice is cut off, so she cannot have seen it): bob edits the start while
    # alice replaces her whole text by one that differs only at the end.
    alice.connection.disconnect()
    bob.insert(0, ">> ")
    alice.replace("one two four")
    unsubscribe()
    alice.connection.connect(wait=True)
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


def test_document_made_before_connecting_takes_the_user_id_as_name(replicas: Replicas) -> None:
    from rtwidgets.models import Connection

    from .conftest import FAST_RECONNECT

    name = fresh_channel()
    bob = replicas.doc("bob", name)
    conn = Connection(replicas.gateway.url, token=replicas.gateway.token("alice"), reconnect=FAST_RECONNECT)
    replicas.connections.append(conn)
    alice = CollabDoc(conn, name)  # not connected yet: the user id is unknown
    replicas.docs.append(alice)
    assert alice.user_name == "anonymous"
    conn.connect(wait=True)
    alice.wait_synced(TIMEOUT)
    alice.set_cursor(0)
    wait_until(lambda: [c["name"] for c in bob.cursors] == ["alice"], what="alice named after her user id")
    assert alice.user_name == "alice" and alice.color == bob.cursors[0]["color"]


def test_edit_refused_by_the_gateway_is_reported_not_retried_forever(replicas: Replicas) -> None:
    from rtwidgets.models import Connection

    from .conftest import FAST_RECONNECT

    name = fresh_channel()
    token = replicas.gateway.token("reader", publish=[])  # may read, may not publish
    conn = Connection(replicas.gateway.url, token=token, reconnect=FAST_RECONNECT).connect(wait=True)
    replicas.connections.append(conn)
    reader = CollabDoc(conn, name).wait_synced(TIMEOUT)
    replicas.docs.append(reader)
    reader.insert(0, "local only")
    wait_until(lambda: "could not be published" in reader.error, what="refusal reported")
    assert "forbidden" in reader.error
    wait_until(lambda: reader.stats()["in_flight"] == 0, what="nothing left in flight")
    assert reader.stats()["failed"] == 0 and reader.text == "local only"


def test_structured_state_in_the_same_document_syncs_too(replicas: Replicas) -> None:
    import pycrdt

    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)

    def add_task(doc: pycrdt.Doc) -> int:
        tasks = doc.get("tasks", type=pycrdt.Array)
        tasks.append("write notes")
        doc.get("meta", type=pycrdt.Map)["title"] = "Meeting"
        return len(tasks)

    assert alice.edit(add_task) == 1
    alice.insert(0, "text too")

    def snapshot(doc: pycrdt.Doc) -> tuple[list[str], dict[str, str]]:
        return doc.get("tasks", type=pycrdt.Array).to_py(), doc.get("meta", type=pycrdt.Map).to_py()

    bob.wait_for_text("text too", TIMEOUT)
    wait_until(lambda: bob.read(snapshot) == (["write notes"], {"title": "Meeting"}), what="structured state")
    bob.edit(lambda d: d.get("tasks", type=pycrdt.Array).append("review"))
    wait_until(lambda: alice.read(snapshot)[0] == ["write notes", "review"], what="bob's task at alice")
    with pytest.raises(TypeError):
        alice.edit("not callable")  # type: ignore[arg-type]


def test_a_failing_edit_still_shares_what_it_changed(replicas: Replicas) -> None:
    import pycrdt

    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)

    def half_done(doc: pycrdt.Doc) -> None:
        doc.get("meta", type=pycrdt.Map)["step"] = 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        alice.edit(half_done)
    wait_until(
        lambda: bob.read(lambda d: d.get("meta", type=pycrdt.Map).to_py()) == {"step": 1}, what="shared"
    )
    wait_until(lambda: converged([alice, bob]), what="convergence")
