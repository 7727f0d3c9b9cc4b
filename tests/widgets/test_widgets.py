"""anywidget widgets without a kernel, against a real gateway on 127.0.0.1.

Browser intents are driven exactly as the comm delivers them: ``w._handle_custom_msg(content,
buffers)`` (ipywidgets' entry point for ``method: custom`` messages, which runs the
``on_msg`` callbacks). Trait changes are observed as the browser would receive them.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from typing import Any

import pytest

from rtwidgets.models import Channel, OptimisticList, Presence
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets import (
    Chat,
    ConnectionStatus,
    Inspector,
    IntentError,
    LiveChart,
    PresenceBar,
    TodoList,
    _base,
)
from rtwidgets.widgets.live_chart import float64_bytes
from rtwidgets.widgets.presence_bar import group_members

from .conftest import wait_until
from .test_live_chart_stream import ViewSeries as ChartView
from .test_live_chart_stream import check_view as check_chart_view
from .test_live_chart_stream import record as record_chart_messages


def intent(widget: Any, **content: Any) -> None:
    """Deliver a browser intent the way ipywidgets does for a ``custom`` comm message."""
    widget._handle_custom_msg(content, [])


def count_comm_updates(widget: Any) -> list[float]:
    """Record the time of every state update the widget sends over its comm."""
    stamps: list[float] = []
    original = widget._send

    def spy(msg: dict[str, Any], buffers: Any = None) -> None:
        if msg.get("method") == "update":
            stamps.append(time.monotonic())
        original(msg, buffers=buffers)

    widget._send = spy
    return stamps


def max_in_window(stamps: list[float], window: float) -> int:
    """The largest number of stamps inside any window of ``window`` seconds."""
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# ---------------------------------------------------------------------------- base


def test_missing_bundle_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, connect: Any) -> None:
    conn = connect("alice", wait=False)
    monkeypatch.setattr(_base, "STATIC_DIR", _base.STATIC_DIR / "nowhere")
    with pytest.raises(_base.BundleMissingError, match=r"scripts/dev.sh setup"):
        ConnectionStatus(conn)


def test_esm_is_the_built_bundle(connect: Any) -> None:
    w = ConnectionStatus(connect("alice", wait=False))
    try:
        assert w._esm == (_base.STATIC_DIR / "connection_status.js").read_text(encoding="utf-8")
    finally:
        w.close()


def test_bad_intents_are_refused_clearly(connect: Any) -> None:
    chat = Chat(connect("alice"), "room")
    try:
        with pytest.raises(IntentError, match="no action"):
            chat.handle_intent({"action": "explode"})
        with pytest.raises(IntentError, match="object"):
            chat.handle_intent(["send"])
        with pytest.raises(IntentError, match="'text'"):
            chat.handle_intent({"action": "send", "text": 3, "localId": "l1"})
        with pytest.raises(IntentError, match="empty"):
            chat.handle_intent({"action": "send", "text": "   ", "localId": "l1"})
        with pytest.raises(IntentError, match="boolean"):
            chat.handle_intent({"action": "typing", "typing": "yes"})
        # Through the comm path a bad intent is logged, not raised, and changes nothing.
        intent(chat, action="explode")
        assert chat.feed == []
    finally:
        chat.close()


def test_refused_intent_is_reported_to_the_browser(connect: Any) -> None:
    """A refused intent is not only logged: the view gets an ``intent_error`` custom message."""
    chat = Chat(connect("alice"), "room")
    sent: list[tuple[Any, Any]] = []
    chat.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    try:
        intent(chat, action="explode")
        chat._handle_custom_msg(["send"], [])
        intent(chat, action="send", text="   ", localId="l1")
        assert [content for content, _ in sent] == [
            {"type": "intent_error", "action": "explode", "message": "Chat has no action 'explode'"},
            {"type": "intent_error", "action": None, "message": "an intent must be an object, got list"},
            {"type": "intent_error", "action": "send", "message": "intent 'send' has an empty 'text'"},
        ]
        assert chat.feed == []
    finally:
        chat.close()


# ---------------------------------------------------------------------------- ConnectionStatus


def test_connection_status_mirrors_and_obeys(connect: Any) -> None:
    conn = connect("alice")
    w = ConnectionStatus(conn)
    try:
        assert (w.state, w.user_id, w.url) == ("connected", "alice", conn.url)
        assert w.max_attempts == 10 and w.client_id == conn.client_id
        intent(w, action="disconnect")
        wait_until(lambda: w.state == "disconnected", what="disconnect intent")
        intent(w, action="reconnect")
        wait_until(lambda: w.state == "connected", what="reconnect intent")
        assert repr(w) == "<ConnectionStatus state='connected' user='alice'>"
    finally:
        w.close()


def test_connection_status_shows_reconnecting_with_countdown(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    conn = connect("alice", reconnect=ReconnectConfig(base_delay=2.0, max_delay=2.0, jitter_factor=0.0))
    w = ConnectionStatus(conn)
    seen: list[tuple[str, float]] = []
    w.observe(lambda c: seen.append((w.state, w.retry_at)), names=["state", "retry_at"])
    try:
        conn.simulate_drop()
        wait_until(lambda: any(s == "reconnecting" and r > 0 for s, r in seen), what="countdown shown")
        retry_at = next(r for s, r in seen if s == "reconnecting" and r > 0)
        assert retry_at > time.time() * 1000.0 - 1000  # an epoch-ms instant, not a delay
        # The browser gets a delay (its countdown runs on its own clock), never the instant.
        assert "retry_at" not in w.keys and "retry_in_ms" in w.keys
        wait_until(lambda: 0 < w.retry_in_ms <= 2000, what="relative delay synced")
        intent(w, action="reconnect")  # skip the backoff
        wait_until(lambda: w.state == "connected", what="reconnected now")
        assert w.retry_at == 0.0
        wait_until(lambda: w.retry_in_ms == 0.0, what="no retry pending once connected")
    finally:
        w.close()


# ---------------------------------------------------------------------------- Chat


def test_chat_pending_then_confirmed_and_seen_by_peer(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    # A long backoff keeps alice offline until we say so: the send stays pending meanwhile.
    alice = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    bob = connect("bob")
    chat_a, chat_b = Chat(alice, "room"), Chat(bob, "room")
    try:
        chat_a.model.wait_subscribed()
        chat_b.model.wait_subscribed()
        alice.simulate_drop()
        wait_until(lambda: chat_a.state == "reconnecting", what="offline")
        intent(chat_a, action="send", text="hello bob", localId="L1")
        wait_until(lambda: chat_a.messages and chat_a.messages[-1]["pending"], what="shown at once, pending")
        mine = chat_a.messages[-1]
        assert (mine["id"], mine["user"], mine["text"], mine["failed"]) == ("L1", "alice", "hello bob", False)
        assert chat_b.messages == []
        alice.reconnect_now()
        wait_until(lambda: any(m["text"] == "hello bob" for m in chat_b.messages), what="bob sees it")
        wait_until(lambda: not chat_a.messages[-1]["pending"], what="confirmed")
        assert chat_a.messages[-1]["failed"] is False and chat_a.messages[-1]["color"].startswith("#")
        theirs = chat_b.messages[-1]
        assert theirs["user"] == "alice" and theirs["pending"] is False and theirs["id"] == "1"
        # The same intent delivered twice (a re-sent comm message) is shown and sent once.
        intent(chat_a, action="send", text="hello bob", localId="L1")
        chat_a.post("second")
        wait_until(lambda: len(chat_b.messages) == 2, what="second message")
        assert [m["text"] for m in chat_b.messages] == ["hello bob", "second"]
        wait_until(lambda: len(chat_a.messages) == 2 and not chat_a.messages[-1]["pending"], what="mine")
        assert repr(chat_b) == "<Chat channel='room' messages=2>"
    finally:
        chat_a.close()
        chat_b.close()


def test_chat_refused_send_is_marked_failed(connect: Any) -> None:
    chat = Chat(connect("reader", publish=[]), "room")
    try:
        chat.model.wait_subscribed()
        intent(chat, action="send", text="can I?", localId="L9")
        wait_until(lambda: chat.messages and chat.messages[-1]["failed"], what="failed mark")
        assert chat.messages[-1]["pending"] is False and chat.messages[-1]["text"] == "can I?"
    finally:
        chat.close()


def test_chat_typing_excludes_me_and_history_for_late_joiner(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    chat_a = Chat(alice, "room", user_colors={"alice": "#123456"})
    chat_b = Chat(bob, "room")
    try:
        chat_a.model.wait_subscribed()
        chat_b.model.wait_subscribed()
        intent(chat_a, action="typing", typing=True)
        wait_until(lambda: chat_b.typing == ["alice"], what="bob sees alice typing")
        assert chat_a.typing == []  # never my own
        intent(chat_a, action="typing", typing=False)
        wait_until(lambda: chat_b.typing == [], what="typing cleared")
        chat_a.post("for the record")
        wait_until(lambda: len(chat_b.messages) == 1, what="delivered")
        late = Chat(connect("carol"), "room")
        try:
            wait_until(lambda: [m["text"] for m in late.messages] == ["for the record"], what="history")
            # carol was given no colours: alice's stable palette colour, the same on every kernel
            assert late.messages[0]["user"] == "alice"
            assert late.messages[0]["color"] == _base.color_for("alice")
        finally:
            late.close()
        assert chat_a.messages[0]["color"] == "#123456"
    finally:
        chat_a.close()
        chat_b.close()


def test_chat_memory_stays_bounded_and_ids_never_repeat(connect: Any) -> None:
    from rtwidgets.widgets.chat import MAX_MESSAGES

    alice, bob = connect("alice"), connect("bob")
    chat = Chat(alice, "busy")
    ever: dict[str, str] = {}  # every id the browser was ever shown -> its text
    reused: list[str] = []

    def record(change: dict[str, Any]) -> None:
        for m in change["new"]:
            if ever.setdefault(m["id"], m["text"]) != m["text"]:
                reused.append(m["id"])

    chat.observe(record, names=["messages"])
    try:
        chat.model.wait_subscribed()
        sender = Channel(bob, "busy").wait_subscribed()
        for i in range(260):
            sender.publish({"text": f"bob {i}"})
            if i % 50 == 0:
                chat.post(f"alice {i}")
        wait_until(lambda: chat.messages and chat.messages[-1]["text"] == "bob 259", what="the last one")
        wait_until(lambda: not any(m["pending"] for m in chat.feed), what="alice's settled")
        feed = chat.feed
        assert len(feed) == MAX_MESSAGES and len({m["id"] for m in feed}) == MAX_MESSAGES
        assert [m["text"] for m in feed if m["user"] == "bob"][-1] == "bob 259"
        # Frames without an event id (anon) beyond the feed's size: trimmed ids never come back.
        ghost = [{"type": "message", "data": {"text": f"ghost {i}"}, "senderId": "ghost"} for i in range(250)]

        async def deliver() -> None:
            for frame in ghost:
                chat._on_frame(frame)

        get_runtime().run(deliver())
        wait_until(lambda: chat.messages[-1]["text"] == "ghost 249", what="ghost frames shown")
        feed = chat.feed
        assert len(feed) == MAX_MESSAGES and len({m["id"] for m in feed}) == MAX_MESSAGES
        assert [m["text"] for m in feed] == [f"ghost {i}" for i in range(50, 250)]
        # Nothing inside grows with the number of messages: the store, our ids, in-flight sends.
        assert len(chat._store.confirmed_data) == MAX_MESSAGES
        assert chat._mine == set() and chat._outgoing == {} and chat._failed == {}
        assert reused == [] and len(ever) == 260 + 6 + 250
    finally:
        chat.close()


def test_chat_send_not_acknowledged_in_time_fails_visibly_then_a_late_echo_confirms(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    alice = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    chat = Chat(alice, "room", ack_timeout=0.3)
    bob = Chat(connect("bob"), "room")
    try:
        chat.model.wait_subscribed()
        alice.simulate_drop()
        wait_until(lambda: chat.state == "reconnecting", what="offline")
        local_id = chat.post("are you there?")
        wait_until(lambda: chat.feed and chat.feed[-1]["failed"], what="failed after the ack timeout")
        entry = chat.feed[-1]
        assert (entry["id"], entry["text"], entry["pending"]) == (local_id, "are you there?", False)
        alice.reconnect_now()  # the queued publish goes out after all: its echo confirms it
        wait_until(lambda: not chat.feed[-1]["failed"], what="confirmed by the late echo")
        assert [(m["id"], m["pending"]) for m in chat.feed] == [(local_id, False)]
        wait_until(lambda: [m["text"] for m in bob.messages] == ["are you there?"], what="bob got it once")
    finally:
        chat.close()
        bob.close()


def test_chat_needs_a_name_with_a_connection(connect: Any) -> None:
    with pytest.raises(ValueError, match="name"):
        Chat(connect("alice", wait=False))
    with pytest.raises(TypeError):
        Chat("room")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- PresenceBar


def test_group_members_one_entry_per_user() -> None:
    members = [
        {"userId": "alice", "clientId": "a1", "data": {"name": "Alice"}, "joinedAt": 10},
        {"userId": "bob", "clientId": "b1", "data": {}, "joinedAt": 11},
        {"userId": "alice", "clientId": "a2", "data": {"name": "Alice", "typing": True}, "joinedAt": 12},
        {"clientId": "broken"},
    ]
    grouped = group_members(members)
    assert [g["userId"] for g in grouped] == ["alice", "bob"]
    alice = grouped[0]
    assert alice["devices"] == 2 and alice["typing"] is True and alice["joinedAt"] == 10
    assert alice["name"] == "Alice" and grouped[1]["name"] == "bob"
    assert grouped[1]["color"] == group_members(members[1:2])[0]["color"]  # stable colour


def test_group_members_display_fields_fall_back_per_key() -> None:
    members = [
        {"userId": "alice", "clientId": "a1", "data": {"name": "Alice", "color": "#123456"}, "joinedAt": 30},
        {"userId": "alice", "clientId": "a2", "data": {"typing": True}},  # no name, colour or joinedAt
    ]
    (alice,) = group_members(members)
    # The phone's data is the newest, but it does not erase the laptop's name and colour.
    assert alice["data"] == {"typing": True}
    assert (alice["name"], alice["color"], alice["clientId"]) == ("Alice", "#123456", "a1")
    assert alice["joinedAt"] == 30  # a device without joinedAt does not reset the user's join time
    (carol,) = group_members([{"userId": "carol", "clientId": "c1"}])
    assert (carol["name"], carol["joinedAt"], carol["data"], carol["typing"]) == ("carol", 0, {}, False)


def test_presence_bar_members_devices_and_recent(connect: Any) -> None:
    alice = connect("alice")
    presence = Presence(alice, "lobby", {"name": "Alice"}).wait_joined()
    bar = PresenceBar(presence)
    try:
        wait_until(lambda: [m["userId"] for m in bar.members] == ["alice"], what="me")
        assert bar.me == "alice"
        bob_phone, bob_laptop = connect("bob"), connect("bob")
        p1 = Presence(bob_phone, "lobby", {"name": "Bob"}).wait_joined()
        p2 = Presence(bob_laptop, "lobby", {"name": "Bob"}).wait_joined()
        wait_until(lambda: len(bar.members) == 2 and bar.members[1]["devices"] == 2, what="bob x2")
        assert bar.recent[0]["kind"] == "join" and bar.recent[0]["name"] == "Bob"
        # Bob's second device is not a second join: one line per person.
        assert [(e["kind"], e["userId"]) for e in bar.recent] == [("join", "bob")]
        p1.close()
        wait_until(lambda: bar.members[1]["devices"] == 1, what="one device left")
        p2.close()
        wait_until(lambda: bar.users == ["alice"], what="bob gone")
        assert bar.recent[0]["kind"] == "leave" and bar.recent[0]["userId"] == "bob"
        assert repr(bar) == "<PresenceBar channel='lobby' users=1>"
    finally:
        bar.close()


def test_presence_bar_joins_and_leaves_seen_in_a_resync(connect: Any) -> None:
    """Changes missed while offline arrive as one PresenceSynced: its joined/left become lines."""
    from rtwidgets.client import ReconnectConfig

    alice = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    bob = connect("bob")
    p_alice = Presence(alice, "lobby", {"name": "Alice"}).wait_joined()
    p_bob = Presence(bob, "lobby", {"name": "Bob"}).wait_joined()
    bar = PresenceBar(p_alice)
    try:
        wait_until(lambda: bar.users == ["alice", "bob"], what="both here")
        assert bar.recent == []  # who was here before the bar existed did not "join"
        alice.simulate_drop()
        wait_until(lambda: alice.state == "reconnecting", what="alice offline")
        p_bob.close()
        carol = connect("carol")
        p_carol = Presence(carol, "lobby", {"name": "Carol"}).wait_joined()
        alice.reconnect_now()
        wait_until(lambda: sorted(bar.users) == ["alice", "carol"], what="resynced")
        wait_until(lambda: len(bar.recent) == 2, what="lines from the resync")
        assert sorted((e["kind"], e["userId"], e["name"]) for e in bar.recent) == [
            ("join", "carol", "Carol"),
            ("leave", "bob", "Bob"),
        ]
        p_carol.close()
    finally:
        bar.close()
        p_alice.close()


def test_presence_bar_refuses_channel_without_presence(connect: Any) -> None:
    ch = Channel(connect("alice", wait=False), "plain")
    with pytest.raises(ValueError, match="presence"):
        PresenceBar(ch)


# ---------------------------------------------------------------------------- TodoList


def test_todo_list_intents_round_trip(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    todo_a = TodoList(OptimisticList(alice, "todos"))
    todo_b = TodoList(OptimisticList(bob, "todos"))
    try:
        wait_until(lambda: todo_a.model.is_subscribed and todo_b.model.is_subscribed, what="subscribed")
        intent(todo_a, action="create", text="  buy milk ")
        wait_until(lambda: len(todo_b.items) == 1, what="bob sees the todo")
        item_id = todo_b.items[0]["id"]
        assert todo_b.items[0] == {"id": item_id, "text": "buy milk", "done": False, "pending": False}
        intent(todo_b, action="toggle", id=item_id)
        wait_until(lambda: todo_a.items and todo_a.items[0]["done"], what="toggle propagates")
        intent(todo_a, action="edit", id=item_id, text="buy oat milk")
        wait_until(lambda: todo_b.items[0]["text"] == "buy oat milk", what="edit propagates")
        intent(todo_b, action="delete", id=item_id)
        wait_until(lambda: todo_a.items == [] and todo_b.items == [], what="delete propagates")
        assert todo_a.pending_count == 0 and todo_a.last_rollback == {}
        with pytest.raises(IntentError, match="no todo"):
            todo_a.handle_intent({"action": "toggle", "id": item_id})
        with pytest.raises(IntentError, match="'text'"):
            todo_a.handle_intent({"action": "create"})
    finally:
        todo_a.close()
        todo_b.close()
        todo_a.model.close()
        todo_b.model.close()


def test_todo_list_rollback_with_read_only_token(connect: Any) -> None:
    model = OptimisticList(connect("reader", publish=[]), "todos")
    todo = TodoList(model)
    pending_seen = threading.Event()
    # The model's traits are set directly (the widget's are coalesced and may skip the blip).
    model.observe(lambda c: pending_seen.set() if c["new"] else None, names=["has_pending_ops"])
    try:
        wait_until(lambda: model.is_subscribed, what="subscribed")
        intent(todo, action="create", text="not allowed")
        wait_until(lambda: todo.last_rollback, what="rollback")
        assert todo.last_rollback["reason"] == "forbidden" and todo.last_rollback["kind"] == "create"
        assert todo.items == [] and todo.pending_count == 0
        assert pending_seen.is_set() and model.rollbacks == 1  # shown pending, then rolled back
    finally:
        todo.close()
        model.close()


# ---------------------------------------------------------------------------- LiveChart


def test_float64_bytes_is_little_endian() -> None:
    assert float64_bytes([1.5, -2.0]) == struct.pack("<2d", 1.5, -2.0)


def test_live_chart_coalesces_a_10khz_stream(connect: Any) -> None:
    # A 50-sample buffer released at most every 1/60 s passes at most 3000 samples/s.
    chart = LiveChart(title="10 kHz", window_ms=5000, max_points=500, max_buffer_size=50)
    messages = record_chart_messages(chart)
    updates = count_comm_updates(chart)
    try:
        # A producer at 10 kHz for one second, paced by the wall clock (a slow machine pushes
        # bigger blocks, never fewer samples): 10 000 samples whatever the scheduling.
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < 1.0:
            due = int(elapsed * 10_000)
            while sent < due:
                chart.push(math.sin(sent / 100.0))
                sent += 1
            time.sleep(0.001)
        while sent < 10_000:  # the last block, if the final sleep overshot the second
            chart.push(math.sin(sent / 100.0))
            sent += 1
        wait_until(lambda: chart.stats.get("received") == sent, what="every sample counted")
        wait_until(lambda: chart.stats.get("buffered") == 0, what="buffer drained")
        stats = chart.stats
        assert stats["received"] == stats["delivered"] + stats["merged"] + stats["dropped"]
        # The buffer delivers at most 50 samples per 1/60 s (3000/s), so 10 000 in about a second
        # cannot all pass: load was shed (strategy latest, no key -> dropped) and counted.
        assert stats["dropped"] > 0
        # The browser saw at most 60 flushes in any second, whatever the input rate (61 = the
        # window's two edges), timed on the coalescer's own clock; a flush is one comm message
        # (a window/append data message; no trait sync: pressure and stats travel inside it).
        times = chart.flush_times
        assert 2 <= len(messages) == len(times) and updates == []
        assert max_in_window(times, 1.0) <= 61
        # What a view rebuilds from those messages is what the chart says it shows.
        check_chart_view(chart, ChartView(), messages, 0)
        x = struct.unpack(f"<{len(chart.x) // 8}d", chart.x)
        y = struct.unpack(f"<{len(chart.y) // 8}d", chart.y)
        assert 2 <= len(x) == len(y) <= 500 and list(x) == sorted(x)
        assert chart.flushes == len(times)
    finally:
        chart.close()


def test_live_chart_from_channel_with_key_merges(connect: Any) -> None:
    pub, sub = connect("pub"), connect("sub")
    source = Channel(sub, "sensor").wait_subscribed()
    chart = LiveChart(source, key="sensor", max_buffer_size=4, batch_interval=0.2)
    try:
        producer = Channel(pub, "sensor").wait_subscribed()
        futures = [producer.publish({"sensor": i % 2, "y": float(i)}, wait=False) for i in range(40)]
        futures.append(producer.publish({"sensor": 0, "y": "not a number"}, wait=False))
        for f in futures:
            f.result(10)
        wait_until(lambda: chart.stats.get("invalid") == 1, what="invalid sample counted")
        wait_until(lambda: chart.stats.get("received") == 40 and chart.stats["buffered"] == 0, what="drained")
        assert chart.stats["merged"] > 0  # same key replaced instead of dropping others
        assert (
            chart.stats["received"]
            == chart.stats["delivered"] + chart.stats["merged"] + chart.stats["dropped"]
        )
        ys = struct.unpack(f"<{len(chart.y) // 8}d", chart.y)
        assert ys[-1] in (38.0, 39.0)  # the newest values survive
        assert repr(chart) == "<LiveChart channel='sensor' window_ms=10000>"
    finally:
        chart.close()


def test_live_chart_validates_arguments() -> None:
    with pytest.raises(ValueError, match="sampling_strategy"):
        LiveChart(strategy="newest")
    with pytest.raises(ValueError, match="window_ms"):
        LiveChart(window_ms=0)
    with pytest.raises(TypeError, match="Channel"):
        LiveChart("sensor")  # type: ignore[arg-type]


def test_live_chart_nan_limits_serialise_as_null() -> None:
    chart = LiveChart(y_min=0.0)
    try:
        state = chart.get_state(["y_min", "y_max"])
        assert state == {"y_min": 0.0, "y_max": None}
    finally:
        chart.close()


# ---------------------------------------------------------------------------- Inspector


def test_inspector_snapshot_and_event_log(connect: Any) -> None:
    conn = connect("alice")
    inspector = Inspector(conn)
    try:
        ch = Channel(conn, "watched").wait_subscribed()
        ch.publish({"hello": "world"})
        wait_until(lambda: any(e["type"] == "message" for e in inspector.events), what="message logged")
        wait_until(
            lambda: (
                [(c["name"], c["last_event_id"]) for c in inspector.snapshot.get("channels", [])]
                == [("watched", "1")]
            ),
            what="channel and its position in the snapshot",
        )
        snap = inspector.snapshot
        assert snap["state"] == "connected" and snap["user_id"] == "alice"
        assert snap["channels"][0]["subscribed"] is True and snap["channels"][0]["epoch"]
        wait_until(lambda: inspector.snapshot["counters"]["received"] >= 2, what="counters")
        event = next(e for e in inspector.events if e["type"] == "message")
        assert event["dir"] == "in" and "hello" in event["summary"]
        conn.simulate_drop()
        wait_until(
            lambda: any(e["type"] == "state" and "reconnecting" in e["summary"] for e in inspector.events)
        )
        wait_until(lambda: inspector.snapshot["state"] == "connected", what="back")
        assert len(inspector.events) <= 100
    finally:
        inspector.close()


# ---------------------------------------------------------------------------- lifecycle


def test_close_releases_everything(connect: Any) -> None:
    alice = connect("alice")
    chat = Chat(alice, "room")
    chart = LiveChart(chat.model)
    inspector = Inspector(alice)
    chat.model.wait_subscribed()
    owned = chat.model
    for w in (chart, inspector, chat):
        w.close()
        assert w.closed and w.comm is None
        w.close()  # idempotent
    wait_until(lambda: not owned.is_subscribed, what="owned channel unsubscribed")
    assert "room" not in alice.client.channels
    assert len(owned._tasks) == 0
    assert owned._listeners["message"] == []  # the chart's and the chat's listeners are gone

    async def timers_cancelled() -> bool:
        return not chart._timer.pending and not inspector._timer.pending

    assert get_runtime().run(timers_cancelled())
    with pytest.raises(IntentError, match="closed"):
        chat.handle_intent({"action": "send", "text": "late", "localId": "z"})


def test_widgets_work_when_created_before_the_connection_is_up(connect: Any) -> None:
    alice = connect("alice", wait=False)
    bob = connect("bob")
    status = ConnectionStatus(alice)
    chat_a = Chat(alice, "early")
    chat_b = Chat(bob, "early")
    try:
        assert status.state == "disconnected" and chat_a.state == "disconnected"
        alice.connect(wait=True)
        wait_until(lambda: status.state == "connected" and chat_a.state == "connected", what="mirrored")
        chat_a.model.wait_subscribed()
        chat_b.model.wait_subscribed()
        chat_a.post("I am here")
        wait_until(lambda: [m["text"] for m in chat_b.messages] == ["I am here"], what="delivered")
        assert chat_a.me == "alice"
    finally:
        for w in (status, chat_a, chat_b):
            w.close()


def test_todo_list_two_rollbacks_in_one_flush_both_reach_the_browser(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    # Offline (a long backoff): both creates stay pending, nothing is acknowledged meanwhile.
    conn = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    model = OptimisticList(conn, "todos-two")
    todo = TodoList(model)
    sent: list[Any] = []
    todo.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    try:
        wait_until(lambda: model.is_subscribed, what="subscribed")
        conn.simulate_drop()
        wait_until(lambda: conn.state == "reconnecting", what="offline")
        first, second = todo.add("one"), todo.add("two")
        wait_until(lambda: len(model.pending_ops) == 2, what="two pending creates")
        op1, op2 = model.pending_ops

        async def refuse_both() -> None:
            # Both refusals land in one store change (as when two error frames arrive in one
            # read), so the widget gets them in one event batch and sends them in one flush.
            model.store.fail(op1, "forbidden")
            model.store.fail(op2, "state_full")
            model._publish_events()

        get_runtime().run(refuse_both())
        wait_until(lambda: todo.rollbacks_sent == 2, what="both rollbacks sent")
        rollback_msgs = [m for m in sent if m.get("type") == "rollback"]
        assert len(rollback_msgs) == 1  # one flush ...
        got = [(r["itemId"], r["kind"], r["reason"]) for r in rollback_msgs[0]["rollbacks"]]
        assert got == [(first, "create", "forbidden"), (second, "create", "state_full")]  # ... both
        assert all(r["ts"] > 0 and r["opId"] in (op1, op2) for r in rollback_msgs[0]["rollbacks"])
        assert todo.last_rollback["reason"] == "state_full" and todo.rollbacks_dropped == 0
        wait_until(lambda: todo.items == [], what="both rolled back in the list")
    finally:
        todo.close()
        model.close()


def test_todo_list_op_refused_locally_is_shown_to_the_browser(connect: Any) -> None:
    model = OptimisticList(connect("alice"), "todos-local")
    todo = TodoList(model)
    try:
        wait_until(lambda: model.is_subscribed, what="subscribed")
        # The item vanished between the intent's validation and its turn on the runtime thread
        # (e.g. deleted by an earlier intent): the model refuses the op before sending anything.
        todo._submit("delete", "gone")
        wait_until(lambda: todo.last_rollback, what="refusal shown")
        notice = todo.last_rollback
        assert (notice["kind"], notice["itemId"]) == ("delete", "gone")
        assert notice["reason"].startswith("refused locally:") and notice["ts"] > 0
        assert todo.items == [] and model.rollbacks == 0 and not model.has_pending_ops
    finally:
        todo.close()
        model.close()


def test_live_chart_follows_what_its_views_can_draw() -> None:
    """Each view reports its animation frames (js/src/lib/frame_meter.js): with only a stalled
    view (a background tab) the chart sends less; the fastest view decides; back at full rate
    once a view draws at full speed again."""
    chart = LiveChart(title="adaptive")
    try:
        assert chart.render_rate == 60
        for _ in range(12):  # 60 x 0.7^10 < 2: ten reports reach the floor
            chart.handle_intent({"action": "frames", "view": "tab", "count": 0, "elapsed_ms": 1000})
        wait_until(lambda: chart.render_rate == 2, what="a stalled view lowers the rate to its floor")
        assert chart._sync.budget_share <= 2  # its share of the message budget is capped at once
        chart.push(1.0)
        wait_until(lambda: chart._sync.max_rate <= 2, what="the chart's next flush adopts it")
        for _ in range(12):
            chart.handle_intent({"action": "frames", "view": "visible", "count": 60, "elapsed_ms": 1000})
            chart.handle_intent({"action": "frames", "view": "tab", "count": 0, "elapsed_ms": 1000})
        wait_until(lambda: chart.render_rate == 60, what="a visible view brings it back")
        chart.push(1.0)
        wait_until(lambda: chart._sync.max_rate == 60, what="full rate again at the next flush")
        with pytest.raises(IntentError, match="'count'"):
            chart.handle_intent({"action": "frames", "view": "x", "count": -1, "elapsed_ms": 1})
    finally:
        chart.close()
