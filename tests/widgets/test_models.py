"""Models (the design's hooks as traitlets) against a real gateway on 127.0.0.1.

The hooks they follow: docs/design.md#hooks-and-models.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest

from rtwidgets.client import AuthenticationError
from rtwidgets.core.backpressure import BackpressureConfig
from rtwidgets.models import Channel, Connection, OptimisticList, Presence
from rtwidgets.models.optimistic import OperationRolledBack
from rtwidgets.runtime import get_runtime

from .conftest import wait_until


def test_connection_traits_follow_the_client(connect: Any) -> None:
    seen: list[str] = []
    conn = connect("alice", wait=False)
    conn.observe(lambda c: seen.append(c["new"]), names=["state"])
    assert conn.state == "disconnected" and not conn.is_connected
    conn.connect(wait=True)
    assert conn.state == "connected" and conn.is_connected
    assert conn.user_id == "alice" and conn.client_id
    assert "connecting" in seen and seen[-1] == "connected"
    assert "token" not in conn.url and repr(conn).startswith("<Connection ws://127.0.0.1:")
    # Idempotent: a second connect changes nothing.
    assert conn.connect(wait=True) is conn and conn.state == "connected"


def test_bad_token_raises_and_reports_error(gateway: Any) -> None:
    conn = Connection(gateway.url, token="not-a-token")
    try:
        with pytest.raises(AuthenticationError):
            conn.connect(wait=True, timeout=10)
        wait_until(lambda: conn.state in ("disconnected", "failed"), what="terminal state after 4001")
        assert conn.error  # human-readable, never the token
        assert "not-a-token" not in conn.error
    finally:
        conn.close()


def test_url_must_be_websocket() -> None:
    with pytest.raises(ValueError, match="ws://"):
        Connection("http://127.0.0.1:1")


def test_channel_publish_receive_and_presence(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    ch_a = Channel(alice, "room", presence=True, presence_data={"name": "Alice"}).wait_subscribed()
    ch_b = Channel(bob, "room", presence=True).wait_subscribed()
    ack = ch_a.publish({"text": "hi"})
    assert ack["offset"] == 1
    wait_until(lambda: len(ch_b.messages) == 1, what="bob receives")
    frame = ch_b.messages[0]
    assert frame["data"] == {"text": "hi"} and frame["senderId"] == "alice"
    wait_until(lambda: sorted(ch_a.users) == ["alice", "bob"], what="presence of both")
    names = {m["userId"]: m["data"] for m in ch_b.members}
    assert names["alice"] == {"name": "Alice"}
    ch_a.update_presence({"name": "Alice", "typing": True})
    wait_until(
        lambda: any(m["data"].get("typing") for m in ch_b.members if m["userId"] == "alice"),
        what="presence update",
    )
    ch_a.close()
    wait_until(lambda: ch_b.users == ["bob"], what="alice leaves on close")
    assert not ch_a.is_subscribed


def test_channel_created_before_connect_subscribes_later(connect: Any) -> None:
    conn = connect("alice", wait=False)
    ch = Channel(conn, "later")
    # Publishing before the subscription is up waits for it instead of failing.
    pending = ch.publish({"n": 1}, wait=False)
    assert not pending.done()
    conn.connect(wait=True)
    assert pending.result(10)["offset"] == 1
    wait_until(lambda: ch.is_subscribed and len(ch.messages) == 1, what="subscribed and echoed")


def test_channel_messages_are_bounded(connect: Any) -> None:
    conn = connect("alice")
    ch = Channel(conn, "bounded", max_messages=3).wait_subscribed()
    for i in range(5):
        ch.publish(i)
    wait_until(lambda: ch.received == 5, what="5 messages")
    assert [m["data"] for m in ch.messages] == [2, 3, 4]


def test_forbidden_subscribe_is_reported_and_final(connect: Any, gateway: Any) -> None:
    conn = Connection(gateway.url, token=gateway.token("eve", channels=("public:*",))).connect(wait=True)
    try:
        ch = Channel(conn, "secret")
        wait_until(lambda: "forbidden" in ch.error, what="subscribe refusal")
        with pytest.raises(Exception, match="forbidden"):
            ch.publish({"x": 1}, timeout=5)
        assert not ch.is_subscribed
    finally:
        conn.close()


def test_channel_rejects_bad_arguments(connect: Any) -> None:
    conn = connect("alice", wait=False)
    with pytest.raises(Exception, match="channel"):
        Channel(conn, "has space")
    with pytest.raises(ValueError, match="max_messages"):
        Channel(conn, "ok", max_messages=0)
    with pytest.raises(TypeError, match="Connection"):
        Channel("not a connection", "ok")  # type: ignore[arg-type]
    ch = Channel(conn, "nopresence")
    with pytest.raises(ValueError, match="presence=True"):
        ch.update_presence({"a": 1})
    ch.close()


def test_channel_backpressure_paces_and_counts(connect: Any) -> None:
    pub, sub = connect("pub"), connect("sub")
    config = BackpressureConfig(max_buffer_size=5, sampling_strategy="latest", batch_interval=0.05)
    ch_sub = Channel(sub, "ticks", backpressure=config, key=lambda f: f["data"]["k"]).wait_subscribed()
    ch_pub = Channel(pub, "ticks").wait_subscribed()
    futures = [ch_pub.publish({"k": i % 3, "v": i}, wait=False) for i in range(60)]
    for f in futures:
        f.result(10)
    wait_until(lambda: ch_sub.received == 60, what="all 60 frames reach the buffer")
    wait_until(lambda: ch_sub.buffer_stats.get("buffered") == 0, what="buffer drained")
    stats = ch_sub.buffer_stats
    # Nothing vanishes: every frame was delivered, merged (same key) or dropped.
    assert stats["pushed"] == 60 == stats["delivered"] + stats["merged"] + stats["dropped"]
    assert stats["merged"] + stats["dropped"] > 0
    # The newest value of every key was delivered last for that key (latest wins).
    last = {}
    for frame in ch_sub.messages:
        last[frame["data"]["k"]] = frame["data"]["v"]
    assert last == {0: 57, 1: 58, 2: 59}


def test_reconnect_recovers_missed_messages_exactly_once(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    ch_a = Channel(alice, "feed").wait_subscribed()
    ch_b = Channel(bob, "feed").wait_subscribed()
    ch_b.publish(0)
    wait_until(lambda: len(ch_a.messages) == 1, what="first message")
    assert alice.simulate_drop()
    wait_until(lambda: alice.state != "connected", what="drop noticed")
    for i in range(1, 6):
        ch_b.publish(i)
    wait_until(lambda: alice.is_connected and ch_a.is_subscribed, what="reconnected")
    wait_until(lambda: len(ch_a.messages) == 6, what="missed messages recovered")
    assert [m["data"] for m in ch_a.messages] == [0, 1, 2, 3, 4, 5]
    assert ch_a.received == 6


def test_presence_model_joins_updates_and_leaves(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    pa = Presence(alice, "lobby", {"name": "Alice"}).wait_joined()
    pb = Presence(bob, "lobby", {"name": "Bob"}).wait_joined()
    wait_until(lambda: sorted(pa.users) == ["alice", "bob"], what="both present")
    assert pa.is_joined and pa.my_presence == {"name": "Alice"}
    pb.update({"name": "Bobby"})
    assert pb.my_presence == {"name": "Bobby"}
    wait_until(
        lambda: any(m["data"] == {"name": "Bobby"} for m in pa.members), what="bob's update reaches alice"
    )
    pb.close()
    wait_until(lambda: pa.users == ["alice"], what="bob left")
    assert not pb.is_joined


def test_optimistic_list_create_update_delete_confirmed(connect: Any) -> None:
    alice, bob = connect("alice"), connect("bob")
    la = OptimisticList(alice, "todos")
    lb = OptimisticList(bob, "todos")
    wait_until(lambda: la.is_subscribed and lb.is_subscribed, what="subscribed")
    la.create({"id": "a", "text": "one", "done": False}, wait=True)
    assert la.data == [{"id": "a", "text": "one", "done": False}] and not la.has_pending_ops
    wait_until(lambda: lb.data == la.data, what="bob sees the item")
    lb.update({"id": "a", "text": "one", "done": True}, wait=True)
    wait_until(lambda: la.get("a") == {"id": "a", "text": "one", "done": True}, what="update propagates")
    la.delete("a", wait=True)
    wait_until(lambda: lb.data == [], what="delete propagates")
    assert la.confirmed == 2 and la.rollbacks == 0
    # A late joiner rebuilds the list from the channel's keyed state.
    la.create({"id": "b", "text": "two", "done": False}, wait=True)
    late = OptimisticList(connect("carol"), "todos")
    wait_until(lambda: [i["id"] for i in late.data] == ["b"], what="snapshot on subscribe")


def test_optimistic_list_rolls_back_on_refusal(connect: Any) -> None:
    writer = connect("alice")
    reader = connect("reader", publish=[])  # read-only token: publish is forbidden
    lw = OptimisticList(writer, "ro-todos")
    lw.create({"id": "x", "text": "keep", "done": False}, wait=True)
    lr = OptimisticList(reader, "ro-todos")
    wait_until(lambda: lr.data == lw.data, what="reader has the list")
    seen: list[list[str]] = []
    lr.observe(lambda c: seen.append([i["id"] for i in c["new"]]), names=["data"])
    with pytest.raises(OperationRolledBack, match="forbidden"):
        lr.create({"id": "y", "text": "nope", "done": False}, wait=True)
    assert ["x", "y"] in seen  # it was shown at once (optimistic)...
    assert lr.data == [{"id": "x", "text": "keep", "done": False}]  # ...and rolled back exactly
    assert lr.last_rollback["reason"] == "forbidden" and lr.last_rollback["itemId"] == "y"
    # An update refused restores the confirmed item, not a guess.
    with pytest.raises(OperationRolledBack):
        lr.update({"id": "x", "text": "changed", "done": True}, wait=True)
    assert lr.get("x") == {"id": "x", "text": "keep", "done": False}
    assert lr.rollbacks == 2 and not lr.has_pending_ops


def test_optimistic_list_bad_ops_raise_locally(connect: Any) -> None:
    lst = OptimisticList(connect("alice"), "bad-ops")
    with pytest.raises(ValueError, match="id"):
        lst.create({"text": "no id"})
    with pytest.raises(KeyError):
        lst.delete("missing")
    assert lst.data == [] and not lst.has_pending_ops


def test_methods_are_thread_safe_from_many_threads(connect: Any) -> None:
    conn = connect("alice")
    ch = Channel(conn, "threads").wait_subscribed()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                ch.publish({"w": n, "i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    wait_until(lambda: ch.received == 40, what="40 messages")
    per_worker: dict[int, list[int]] = {}
    for frame in ch.messages:
        per_worker.setdefault(frame["data"]["w"], []).append(frame["data"]["i"])
    # Every thread's 10 publishes arrived, each thread's order kept.
    assert per_worker == {n: list(range(10)) for n in range(4)}


def test_blocking_calls_refuse_the_runtime_thread(connect: Any) -> None:
    ch = Channel(connect("alice"), "rt").wait_subscribed()

    async def inside() -> str:
        try:
            ch.publish({"x": 1})
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    message = get_runtime().run(inside())
    assert "wait=False" in message
    # On the runtime thread the non-blocking form works: it hands back a future for the ack.
    fut = get_runtime().submit(_publish_nowait(ch))
    inner = fut.result(10)
    assert isinstance(inner, concurrent.futures.Future)
    # offset 1: the refused blocking call sent nothing, this publish really went out and was stored
    assert inner.result(10)["offset"] == 1
    wait_until(lambda: [m["data"] for m in ch.messages] == [{"x": 2}], what="only the accepted publish")


async def _publish_nowait(ch: Channel) -> Any:
    return ch.publish({"x": 2}, wait=False)


def test_connect_wait_during_automatic_reconnect_does_not_skip_backoff(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    conn = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    conn.simulate_drop()
    wait_until(lambda: conn.state == "reconnecting", what="reconnecting")
    with pytest.raises(TimeoutError, match="connected"):
        conn.connect(wait=True, timeout=0.3)  # waits for the scheduled attempt, does not force one
    assert conn.state == "reconnecting" and conn.retry_at > 0
    conn.reconnect_now()  # the explicit way to skip the wait
    conn.wait_connected(10)
    assert conn.attempt == 0 and conn.retry_at == 0.0


def test_optimistic_list_rolls_back_on_ack_timeout_then_converges(connect: Any) -> None:
    from rtwidgets.client import ReconnectConfig

    # A long backoff keeps the writer offline, so no ack can come before the store's timeout.
    conn = connect("alice", reconnect=ReconnectConfig(base_delay=30.0, max_delay=30.0, jitter_factor=0.0))
    lst = OptimisticList(conn, "slow", ack_timeout=0.2)
    wait_until(lambda: lst.is_subscribed, what="subscribed")
    conn.simulate_drop()
    wait_until(lambda: conn.state == "reconnecting", what="offline")
    with pytest.raises(OperationRolledBack, match="timeout"):
        lst.create({"id": "late", "text": "sent while offline", "done": False}, wait=True)
    assert lst.data == [] and lst.last_rollback["reason"] == "timeout"
    # The publish was still queued: once back online the server stores it, and its echo
    # brings the list to the server's state (the rollback was only local).
    conn.reconnect_now()
    wait_until(lambda: [i["id"] for i in lst.data] == ["late"], what="converged to the server's list")
    observer = OptimisticList(connect("bob"), "slow")
    wait_until(lambda: observer.data == lst.data, what="the server really has it")


def _frame(offset: int | None, seq: int, client: str = "c1") -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "message", "channel": "ord", "data": seq, "seq": seq, "clientId": client}
    if offset is not None:
        frame["offset"] = offset
        frame["eventId"] = str(offset)
    return frame


def _feed(ch: Channel, frames: list[dict[str, Any]]) -> None:
    """Hand frames to the model as its subscription would (on the runtime thread)."""

    async def feed() -> None:
        for frame in frames:
            ch._on_frame(frame)

    get_runtime().run(feed(), 10)


@pytest.mark.parametrize("ordering", ["fifo", "total"])
def test_channel_ordering_holds_a_gap_then_skips_it(connect: Any, ordering: str) -> None:
    ch = Channel(connect("alice"), "ord", ordering=ordering, ordering_wait=0.2)
    seen: list[int] = []
    ch.on_message(lambda f: seen.append(f["data"]))
    _feed(ch, [_frame(1, 1), _frame(3, 3), _frame(2, 2)])  # 3 arrives before 2: reordered
    assert seen == [1, 2, 3] and [m["data"] for m in ch.messages] == [1, 2, 3]
    _feed(ch, [_frame(5, 5)])  # 4 never comes: 5 waits, then the gap is skipped
    assert seen == [1, 2, 3]
    wait_until(lambda: seen == [1, 2, 3, 5], what="the gap skipped after ordering_wait")
    assert ch.ordering_stats["gaps_skipped"] == 1
    _feed(ch, [_frame(4, 4)])  # too late: not delivered after 5, counted
    wait_until(lambda: ch.ordering_stats["late"] == 1, what="late counted")
    assert seen == [1, 2, 3, 5]
    ch.close()


def test_channel_fifo_is_per_sender_and_total_passes_ephemerals(connect: Any) -> None:
    conn = connect("alice")
    fifo = Channel(conn, "ord", ordering="fifo")
    total = Channel(conn, "ord", ordering="total")
    got_fifo: list[tuple[str, int]] = []
    got_total: list[int] = []
    fifo.on_message(lambda f: got_fifo.append((f["clientId"], f["data"])))
    total.on_message(lambda f: got_total.append(f["data"]))
    # a's seq 2 arrives before its seq 1 (e.g. two paths); b's second message is ephemeral.
    frames = [_frame(2, 2, "a"), _frame(1, 1, "b"), _frame(None, 2, "b"), _frame(3, 1, "a")]
    _feed(fifo, frames)
    assert got_fifo == [("a", 2), ("b", 1), ("b", 2)]  # a's stream starts at its first seen seq (2)
    assert fifo.ordering_stats["late"] == 1  # a's seq 1 came after its stream started at 2
    _feed(total, [_frame(1, 1, "b"), _frame(None, 2, "b"), _frame(3, 1, "a"), _frame(2, 2, "a")])
    assert got_total == [1, 2, 2, 1]  # offsets 1, 2, 3 in order; the ephemeral (data 2) as it came
    with pytest.raises(ValueError, match="type must be one of"):
        Channel(conn, "ord", ordering="random")  # type: ignore[arg-type]
    fifo.close()
    total.close()


@pytest.mark.parametrize("ordering", ["none", "fifo", "total"])
def test_channel_ordering_over_a_real_gateway(connect: Any, ordering: str) -> None:
    alice, bob = connect("alice"), connect("bob")
    ch = Channel(alice, "live", ordering=ordering).wait_subscribed()
    writer = Channel(bob, "live").wait_subscribed()
    futures = [writer.publish(i, wait=False, ephemeral=i % 5 == 0) for i in range(30)]
    for f in futures:
        f.result(10)
    wait_until(lambda: len(ch.messages) == 30, what="every message delivered")
    assert [m["data"] for m in ch.messages] == list(range(30))
    if ordering != "none":
        assert ch.ordering_stats["gaps_skipped"] == 0 and ch.ordering_stats["late"] == 0
    ch.close()
    writer.close()
