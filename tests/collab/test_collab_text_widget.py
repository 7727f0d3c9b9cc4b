"""CollabText widget: the kernel side of the browser binding, driven the way the front end
drives it (custom messages with binary buffers), against a real gateway. A pycrdt Doc plays
the browser's Y.Doc (same Yjs encoding)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pycrdt
import pytest

from rtwidgets.core.crdt_sync import b64encode
from rtwidgets.models import _binding
from rtwidgets.models._binding import message_budget
from rtwidgets.widgets._base import STATIC_DIR, IntentError
from rtwidgets.widgets.collab_text import CollabText

from .conftest import TIMEOUT, Replicas, fresh_channel, wait_until


@pytest.fixture(scope="module", autouse=True)
def _bundle_built() -> None:
    if not (STATIC_DIR / "collab_text.js").is_file():
        pytest.fail("rtwidgets/static/collab_text.js missing: run `cd js && npm run build`")


class FakeView:
    """What one browser view holds: its own Y.Doc, fed by the widget's custom messages."""

    def __init__(self, widget: CollabText) -> None:
        self.ydoc = pycrdt.Doc()
        self.ytext = self.ydoc.get("text", type=pycrdt.Text)
        self.messages: list[str] = []
        self.lock = threading.Lock()
        self.outgoing: list[bytes] = []
        self.ydoc.observe(lambda event: self.outgoing.append(event.update))
        widget.send = self.receive  # type: ignore[method-assign]  # the comm, as the browser sees it

    def receive(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with self.lock:  # called on the runtime thread
            self.messages.append(content["type"])
            for buffer in buffers or []:
                self.ydoc.apply_update(bytes(buffer))

    @property
    def text(self) -> str:
        with self.lock:
            return str(self.ytext)

    def type(self, widget: CollabText, index: int, text: str) -> None:
        with self.lock:
            self.outgoing.clear()
            self.ytext.insert(index, text)  # ASCII in these tests: byte index == char index
            update = self.outgoing[-1]
        widget.handle_intent({"action": "update"}, [update])


@pytest.fixture
def pair(replicas: Replicas) -> Iterator[tuple[Any, Any, CollabText, FakeView]]:
    name = fresh_channel()
    alice = replicas.doc("alice", name)
    bob = replicas.doc("bob", name)
    widget = CollabText(alice, height=120)
    view = FakeView(widget)
    try:
        yield alice, bob, widget, view
    finally:
        widget.close()


def test_view_syncs_types_and_sees_remote_edits(pair: Any) -> None:
    alice, bob, widget, view = pair
    bob.insert(0, "hello")
    alice.wait_for_text("hello", TIMEOUT)
    with view.lock:
        state_vector = view.ydoc.get_state()
    widget.handle_intent({"action": "sync"}, [state_vector])
    wait_until(lambda: "sync" in view.messages, what="sync answer")
    assert view.text == "hello"
    view.type(widget, 5, " world")  # typed in the browser
    assert bob.wait_for_text("hello world", TIMEOUT) == "hello world"
    bob.insert(0, ">> ")  # typed elsewhere: relayed to the view as an update
    wait_until(lambda: view.text == ">> hello world", what="remote edit in the view")
    assert "update" in view.messages
    wait_until(lambda: widget.status == "live", what="status live")
    assert repr(widget) == f"<CollabText '{alice.name}' user='alice'>"


def test_view_cursor_is_shared_and_remote_cursors_are_mirrored(pair: Any) -> None:
    alice, bob, widget, view = pair
    alice.insert(0, "abcdef")
    bob.wait_for_text("abcdef", TIMEOUT)
    widget.handle_intent({"action": "sync"}, [view.ydoc.get_state()])
    wait_until(lambda: view.text == "abcdef", what="view synced")
    with view.lock:
        anchor = pycrdt.StickyIndex.new(view.ytext, 2, pycrdt.Assoc.AFTER).encode()
        head = pycrdt.StickyIndex.new(view.ytext, 4, pycrdt.Assoc.AFTER).encode()
    widget.handle_intent({"action": "cursor", "anchor": b64encode(anchor), "head": b64encode(head)})
    wait_until(lambda: [(c["anchor"], c["head"]) for c in bob.cursors] == [(2, 4)], what="cursor at bob")
    bob.set_cursor(1)
    wait_until(lambda: len(widget.cursors) == 1, what="bob's cursor mirrored to the widget")
    mirrored = widget.cursors[0]
    assert mirrored["userId"] == "bob" and mirrored["anchorPos"] and mirrored["headPos"]
    assert {p["userId"] for p in widget.peers} == {"alice", "bob"}
    widget.handle_intent({"action": "cursor", "anchor": None, "head": None})
    wait_until(lambda: bob.cursors == [], what="cursor cleared")


def test_kernel_to_view_updates_are_coalesced_but_complete(pair: Any) -> None:
    alice, _bob, widget, view = pair
    widget.handle_intent({"action": "sync"}, [view.ydoc.get_state()])
    wait_until(lambda: "sync" in view.messages, what="sync answer")
    # The instant (widget's own loop clock) of every update message: the widget records it
    # just before sending, so this is machine-speed independent.
    flushed: list[float] = []
    receive = view.receive

    def spy(content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if content["type"] == "update":
            flushed.append(widget._updates.flush_times[-1])  # this flush's instant
        receive(content, buffers)

    widget.send = spy  # type: ignore[method-assign]
    for i in range(60):
        alice.insert(len(alice.text), str(i % 10))
    expected = alice.text
    wait_until(lambda: view.text == expected, what="view caught up")  # nothing lost
    assert flushed and len(flushed) == widget.updates_sent <= 60
    # Never more than its rate (max_rate or its budget share): 60 quick edits are merged.
    assert widget.update_rate <= widget.max_rate
    gaps = [b - a for a, b in itertools.pairwise(flushed)]
    assert all(gap >= 1.0 / widget.update_rate - 1e-9 for gap in gaps), gaps


def test_update_messages_count_against_the_shared_budget(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_binding, "IDLE_AFTER", 0.2)
    alice, _bob, widget, view = pair
    budget = message_budget()
    members = len(budget)
    # Quiet document: its update stream counts as idle (a trickle of the budget).
    wait_until(lambda: budget.is_idle(widget._updates._member), what="idle while the document is quiet")
    assert budget.is_idle(widget._updates._member) and widget.update_rate <= 4.0
    widget.handle_intent({"action": "sync"}, [view.ydoc.get_state()])
    alice.insert(0, "x")  # a change: the stream is busy, at its share of the budget
    wait_until(lambda: view.text == "x", what="the change reached the view")
    assert not budget.is_idle(widget._updates._member)
    assert widget.update_rate == budget.share(widget._updates._member) > 4.0
    assert widget.update_rate <= widget.max_rate
    wait_until(lambda: budget.is_idle(widget._updates._member), what="quiet again after IDLE_AFTER")
    widget.close()
    assert len(budget) == members - 2  # both members (traits, updates) returned on close


def test_bad_intents_are_refused_and_change_nothing(pair: Any) -> None:
    alice, _bob, widget, _view = pair
    alice.insert(0, "keep")
    with pytest.raises(IntentError, match="exactly one binary buffer"):
        widget.handle_intent({"action": "update"}, [])
    with pytest.raises(IntentError, match="not a Yjs update"):
        widget.handle_intent({"action": "update"}, [b"\x09garbage"])
    with pytest.raises(IntentError, match="bad state vector"):
        widget.handle_intent({"action": "sync"}, [b"\x05\x01"])
    with pytest.raises(IntentError, match="base64"):
        widget.handle_intent({"action": "cursor", "anchor": "@@", "head": "@@"})
    with pytest.raises(IntentError, match="no action"):
        widget.handle_intent({"action": "explode"})
    with pytest.raises(IntentError, match="must be an object"):
        widget.handle_intent(["update"])
    assert alice.text == "keep"
    with pytest.raises(TypeError):
        CollabText("not a doc")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CollabText(alice, height=-1)


def test_refused_intent_is_reported_to_the_browser(pair: Any) -> None:
    """Through the comm path a bad intent reaches the view as an ``intent_error`` message."""
    alice, _bob, widget, _view = pair
    sent: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    widget._handle_custom_msg({"action": "update"}, [])
    widget._handle_custom_msg({"action": "sync"}, [b"\x05\x01"])
    assert [(m["type"], m["action"]) for m in sent] == [("intent_error", "update"), ("intent_error", "sync")]
    assert "exactly one binary buffer" in sent[0]["message"]
    assert "bad state vector" in sent[1]["message"]
    assert alice.text == ""


def test_close_detaches_from_the_document(pair: Any) -> None:
    alice, bob, widget, view = pair
    widget.close()
    assert widget.closed
    bob.insert(0, "after close")
    alice.wait_for_text("after close", TIMEOUT)
    assert "update" not in view.messages
    with pytest.raises(IntentError, match="closed"):
        widget.handle_intent({"action": "sync"}, [view.ydoc.get_state()])
    assert not alice.closed  # the document outlives its widgets
