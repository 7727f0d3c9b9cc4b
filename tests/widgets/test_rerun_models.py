"""Re-running a cell never breaks a widget: several models on one channel of one connection.

Each model gets what a fresh subscriber would (its own history), sees every message from its
start, and closing one never unsubscribes, unjoins or changes the others (issue 19).
"""

from __future__ import annotations

from typing import Any

import pytest

from rtwidgets.models import Channel, CollabDoc, OptimisticList, Presence
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets import Chat, PresenceBar

from .conftest import wait_until


def _texts(chat: Chat) -> list[str]:
    return [m["text"] for m in chat.messages]


def _confirmed(chat: Chat) -> list[str]:
    return [m["text"] for m in chat.messages if not m["pending"] and not m["failed"]]


def _gateway_subscriptions(gateway: Any, user: str) -> list[str]:
    """The channels the gateway holds for ``user``'s connections (read on the gateway's loop)."""

    async def read() -> list[str]:
        return sorted(c for s in gateway.sessions() if s["userId"] == user for c in s["channels"])

    return get_runtime().run(read(), 10)


@pytest.mark.parametrize("close_first", ["older", "newer"])
def test_a_chat_cell_run_twice(connect: Any, gateway: Any, close_first: str) -> None:
    alice, bob = connect("alice"), connect("bob")
    c1 = Chat(alice, "lobby")
    c1.post("first")
    wait_until(lambda: _confirmed(c1) == ["first"], what="first confirmed")
    c2 = Chat(alice, "lobby")  # the cell re-run
    wait_until(lambda: _texts(c2) == ["first"], what="the second chat shows the history")
    chat_b = Chat(bob, "lobby")
    wait_until(lambda: _texts(chat_b) == ["first"], what="bob sees the history")
    # One member per connection, whatever number of models.
    wait_until(lambda: sorted(m["userId"] for m in c2.model.members) == ["alice", "bob"], what="presence")
    assert len(c1.model.members) == 2

    closed, survivor = (c1, c2) if close_first == "older" else (c2, c1)
    closed.close()
    assert survivor.model.is_subscribed
    assert _gateway_subscriptions(gateway, "alice") == ["lobby"]
    survivor.post("third")
    chat_b.post("from bob")
    wait_until(lambda: "from bob" in _confirmed(survivor), what="the survivor receives bob")
    wait_until(lambda: "third" in _confirmed(chat_b), what="bob receives the survivor's post")
    wait_until(lambda: _confirmed(survivor) == ["first", "third", "from bob"], what="survivor's feed")
    assert not any(m["failed"] for m in survivor.messages)
    assert sorted(m["userId"] for m in survivor.model.members) == ["alice", "bob"]
    # The closed one stays closed and unchanged.
    assert not closed.model.is_subscribed and "from bob" not in _texts(closed)

    survivor.close()
    wait_until(lambda: _gateway_subscriptions(gateway, "alice") == [], what="last close unsubscribes")
    wait_until(lambda: [m["userId"] for m in chat_b.model.members] == ["bob"], what="alice left presence")
    chat_b.close()


def test_each_model_gets_its_own_history_length(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    writer = Channel(bob, "log").wait_subscribed()
    for i in range(6):
        writer.publish({"n": i})
    none = Channel(alice, "log").wait_subscribed()
    two = Channel(alice, "log", history=2).wait_subscribed()
    five = Channel(alice, "log", history=5).wait_subscribed()
    assert [m["data"]["n"] for m in two.messages] == [4, 5]
    assert [m["data"]["n"] for m in five.messages] == [1, 2, 3, 4, 5]
    assert none.messages == []
    writer.publish({"n": 6})
    for ch, expected in ((none, [6]), (two, [4, 5, 6]), (five, [1, 2, 3, 4, 5, 6])):
        wait_until(lambda ch=ch, e=expected: [m["data"]["n"] for m in ch.messages] == e, what=f"{expected}")


def test_presence_is_one_member_with_the_union_of_what_models_asked(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    watcher = Presence(bob, "room")
    plain = Channel(alice, "room").wait_subscribed()  # no presence
    assert not plain.members or [m["userId"] for m in plain.members] == ["bob"]
    p1 = Presence(alice, "room", user_data={"name": "Alice"})
    p2 = Presence(alice, "room", user_data={"color": "red"})
    wait_until(
        lambda: [m.get("data") for m in watcher.members if m["userId"] == "alice"]
        == [{"name": "Alice", "color": "red"}],
        what="one alice member with both models' data",
    )
    with pytest.raises(ValueError, match="conflicts"):
        Presence(alice, "room", user_data={"name": "Mallory"})
    p1.close()
    wait_until(
        lambda: [m.get("data") for m in watcher.members if m["userId"] == "alice"] == [{"color": "red"}],
        what="p1's data leaves with it",
    )
    p2.close()
    wait_until(lambda: [m["userId"] for m in watcher.members] == ["bob"], what="no model wants presence")
    assert plain.is_subscribed  # still subscribed, only not present
    plain.close()
    watcher.close()


def test_presence_bar_and_chat_built_separately(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    chat = Chat(alice, "team")
    presence = Presence(alice, "team")
    bar = PresenceBar(presence)
    chat_b = Chat(bob, "team")
    wait_until(lambda: len(bar.users) == 2, what="the bar shows both")
    chat.close()
    chat_b.post("still here?")
    wait_until(lambda: presence.channel.is_subscribed and len(bar.users) == 2, what="bar unaffected")
    bar.close()
    presence.close()
    chat_b.close()


def test_optimistic_lists_on_one_channel_are_independent(connect: Any) -> None:
    alice = connect("alice")
    first = OptimisticList(alice, "todos")
    first.create({"id": "a", "text": "one"}, wait=True)
    second = OptimisticList(alice, "todos")
    wait_until(lambda: [i["text"] for i in second.data] == ["one"], what="the second list loads the state")
    first.close()
    second.create({"id": "b", "text": "two"}, wait=True)
    wait_until(lambda: [i["text"] for i in second.data] == ["one", "two"], what="the survivor still works")
    second.close()


def test_collab_doc_opened_twice(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    d1 = CollabDoc(alice, "notes")
    d1.insert(0, "hello")
    d_bob = CollabDoc(bob, "notes")
    wait_until(lambda: d_bob.text == "hello", what="bob loads the document")
    d2 = CollabDoc(alice, "notes")
    wait_until(lambda: d2.text == "hello", what="the second replica loads the document")
    d1.close()
    d2.insert(5, " world")
    wait_until(lambda: d_bob.text == "hello world", what="bob gets the survivor's edit")
    d_bob.insert(0, ">> ")
    wait_until(lambda: d2.text == ">> hello world", what="the survivor gets bob's edit")
    assert d1.text == "hello"  # closed: unchanged
    d2.close()
    d_bob.close()


def test_closing_a_presence_twice_is_harmless(connect: Any) -> None:
    presence = Presence(connect("alice"), "room")
    presence.close()
    presence.close()
    assert not presence.is_joined
