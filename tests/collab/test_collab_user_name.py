"""A CollabDoc without an explicit ``user_name`` is shown to others under the gateway's user id,
however its construction interleaves with the connection's handshake.

Regression for the e2e flake where a remote caret read "anonymous" instead of "bob": the notebook
calls ``conn.connect()`` (non-blocking) and builds the document in the next cell, so the gateway's
``hello`` can land while ``CollabDoc.__init__`` runs. These tests force each interleaving
deterministically and watch every name a peer ever receives for the document's connection.
"""

from __future__ import annotations

import threading
from typing import Any

from traitlets import observe

from rtwidgets.models import Connection
from rtwidgets.models.collab import CollabDoc
from rtwidgets.widgets._base import color_for

from .conftest import FAST_RECONNECT, TIMEOUT, Replicas, fresh_channel, wait_until


class HandshakeDuringConstruction(CollabDoc):
    """Completes the connection's handshake inside ``__init__``: right after the constructor read
    ``connection.user_id`` (still unknown) to pick its first name, before the document attaches
    to the channel on the runtime thread. That is the window the e2e notebook hit by chance."""

    hook_saw_user_id: str | None = None

    @observe("user_name")
    def _connect_now(self, change: dict[str, Any]) -> None:
        if change["old"] == "" and self.hook_saw_user_id is None:  # the constructor's first assignment
            self.hook_saw_user_id = self.connection.user_id
            self.connection.connect(wait=True, timeout=TIMEOUT)


class NamesSeen:
    """Every presence name ``watcher`` receives, per connection (in order, repeats collapsed)."""

    def __init__(self, watcher: CollabDoc) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, list[str]] = {}
        watcher.observe(self._record, names=["peers"])

    def _record(self, change: dict[str, Any]) -> None:
        with self.lock:
            for peer in change["new"]:
                names = self.names.setdefault(peer["clientId"], [])
                if not names or names[-1] != peer["name"]:
                    names.append(peer["name"])

    def of(self, client_id: str) -> list[str]:
        with self.lock:
            return list(self.names.get(client_id, []))


def _new_connection(replicas: Replicas, user: str) -> Connection:
    conn = Connection(replicas.gateway.url, token=replicas.gateway.token(user), reconnect=FAST_RECONNECT)
    replicas.connections.append(conn)
    return conn


def _assert_known_to_alice_as_bob(alice: CollabDoc, bob: CollabDoc, seen: NamesSeen) -> None:
    bob.wait_synced(TIMEOUT)
    wait_until(lambda: bob.user_name == "bob", what=f"bob's document named after his user id ({bob!r})")
    assert bob.color == color_for("bob")
    bob.set_cursor(0)
    wait_until(
        lambda: [(c["name"], c["color"]) for c in alice.cursors] == [("bob", color_for("bob"))],
        what=f"alice sees bob's cursor labelled 'bob' (she has {alice.cursors!r})",
    )
    # Never shown under a placeholder, not even briefly: the subscribe already carried the name.
    assert seen.of(bob.connection.client_id) == ["bob"]


def test_user_id_arriving_while_the_document_is_built_names_it(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    conn = _new_connection(replicas, "bob")
    seen = NamesSeen(alice)
    bob = HandshakeDuringConstruction(conn, name)
    replicas.docs.append(bob)
    # The interleaving really happened: the constructor looked before the handshake finished.
    assert bob.hook_saw_user_id == "" and conn.user_id == "bob"
    _assert_known_to_alice_as_bob(alice, bob, seen)


def test_document_built_before_connecting_never_appears_as_anonymous(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    conn = _new_connection(replicas, "bob")
    seen = NamesSeen(alice)
    bob = CollabDoc(conn, name)  # no user id yet: a placeholder name until the gateway says who
    replicas.docs.append(bob)
    assert bob.user_name == "anonymous"
    conn.connect(wait=True, timeout=TIMEOUT)
    _assert_known_to_alice_as_bob(alice, bob, seen)


def test_explicit_name_and_colour_are_kept_when_the_user_id_arrives(replicas: Replicas) -> None:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    conn = _new_connection(replicas, "bob")
    bob = HandshakeDuringConstruction(conn, name, user_name="Robert", color="#123456")
    replicas.docs.append(bob)
    bob.wait_synced(TIMEOUT)
    bob.set_cursor(0)
    wait_until(
        lambda: [(c["name"], c["color"]) for c in alice.cursors] == [("Robert", "#123456")],
        what=f"alice sees bob's chosen name and colour (she has {alice.cursors!r})",
    )
    assert (bob.user_name, bob.color) == ("Robert", "#123456")
