"""RedisBroker against a real redis-server: what is particular to it (several gateways sharing
one Redis, one PUBLISH and one script call per message, the Lua splice, key layout and TTLs,
presence of dead gateways, its URL handling, its Lua files).

The behaviour every broker shares (fan-out, history, snapshots, keyed state, msgId dedupe,
presence, close, an unreachable store) is the contract suite in ``tests/brokers/``, which
runs on this broker too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.gateway import Gateway, GatewayConfig
from rtwidgets.gateway.brokers.base import BrokerUnavailable
from rtwidgets.gateway.brokers.lua import SCRIPTS, script_source
from rtwidgets.gateway.brokers.memory import StateFull
from rtwidgets.gateway.brokers.redis import RedisBroker, safe_redis_url
from rtwidgets.protocol import decode
from tests._support.broker_listener import Collector, msg
from tests._support.net import free_port
from tests._support.redis_server import RedisServer
from tests._support.waiting import eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_broker(redis_server: RedisServer, prefix: str) -> AsyncIterator[Callable[..., Any]]:
    brokers: list[RedisBroker] = []

    async def make(**kwargs: Any) -> tuple[RedisBroker, Collector]:
        kwargs.setdefault("key_prefix", prefix)
        broker = RedisBroker(redis_server.url, **kwargs)
        listener = Collector()
        broker.set_listener(listener)
        await broker.start()
        brokers.append(broker)
        return broker, listener

    yield make
    for broker in brokers:
        await broker.close()


async def test_publish_fans_out_across_brokers_in_offset_order(make_broker: Any) -> None:
    a, la = await make_broker()
    b, lb = await make_broker()
    await a.attach("room")
    await b.attach("room")
    sent = [await (a if i % 2 else b).publish("room", msg(i)) for i in range(20)]
    assert [f["offset"] for f in sent] == list(range(1, 21))
    assert len({f["epoch"] for f in sent}) == 1
    for listener in (la, lb):
        await listener.wait(lambda listener=listener: len(listener.of("room")) == 20, "20 frames")
        got = listener.of("room")
        assert [f["data"] for f in got] == list(range(20))
        assert [f["offset"] for f in got] == list(range(1, 21))
        assert all(f["id"] == f["eventId"] == s["id"] for f, s in zip(got, sent, strict=True))
    # the listener gets the payload Redis carried, already encoded, equal to the frame
    for _, frame, encoded in la.frames:
        assert decode(encoded) == frame


async def test_detached_channels_are_not_delivered(make_broker: Any) -> None:
    a, la = await make_broker()
    b, lb = await make_broker()
    await b.attach("x")
    await a.attach("y")
    await a.publish("x", msg("to-x"))
    await a.publish("y", msg("to-y"))
    await lb.wait(lambda: len(lb.of("x")) == 1, "x frame")
    await la.wait(lambda: len(la.of("y")) == 1, "y frame")
    await b.detach("x")
    await a.publish("x", msg("after-detach"))
    await a.publish("y", msg("marker"))
    await la.wait(lambda: len(la.of("y")) == 2, "marker")
    assert [f["data"] for f in lb.of("x")] == ["to-x"]
    assert la.of("x") == []


async def test_broadcast_is_delivered_but_not_stored(make_broker: Any) -> None:
    a, _ = await make_broker()
    b, lb = await make_broker()
    await b.attach("room")
    await a.broadcast("room", {"type": "message", "channel": "room", "data": "blink", "ephemeral": True})
    await lb.wait(lambda: len(lb.of("room")) == 1, "ephemeral frame")
    snap = await a.snapshot("room", last_event_id=None, epoch=None, history=10, want_state=False)
    assert snap.events == [] and snap.offset == 0


async def test_snapshot_of_new_channel_creates_a_stable_epoch(make_broker: Any) -> None:
    a, _ = await make_broker()
    b, _ = await make_broker()
    s1 = await a.snapshot("fresh", last_event_id=None, epoch=None, history=5, want_state=True)
    s2 = await b.snapshot("fresh", last_event_id=None, epoch=None, history=5, want_state=True)
    assert s1.epoch == s2.epoch and len(s1.epoch) == 16
    assert s1.offset == 0 and s1.latest_event_id is None and s1.state == {}
    frame = await b.publish("fresh", msg(1))
    assert frame["epoch"] == s1.epoch


async def test_msg_id_duplicates_are_counted(make_broker: Any) -> None:
    # What a duplicate returns, and that it is neither stored nor sent: tests/brokers/test_messages.py.
    a, _ = await make_broker()
    first = await a.publish("d", msg("x"), msg_id="m-1")
    again = await a.publish("d", msg("x-retry"), msg_id="m-1")
    assert again["duplicate"] is True and again["offset"] == first["offset"]
    assert a.stats()["duplicates"] == 1


async def test_msg_id_window_is_bounded(make_broker: Any, redis_server: RedisServer, prefix: str) -> None:
    a, _ = await make_broker(history_size=3)
    for i in range(10):
        await a.publish("w", msg(i), msg_id=f"m{i}")
    assert int(redis_server.command("HLEN", f"{prefix}:{{w}}:msgids").split(b":")[1]) == 3
    assert int(redis_server.command("XLEN", f"{prefix}:{{w}}:events").split(b":")[1]) == 3
    # m0 has left the window: a new publish with it is stored again
    again = await a.publish("w", msg("late"), msg_id="m0")
    assert "duplicate" not in again and again["offset"] == 11


async def test_state_full_names_the_limit(make_broker: Any) -> None:
    # Set, replace, delete and the bound itself: tests/brokers/test_messages.py (every broker).
    a, _ = await make_broker(state_max_keys=2)
    await a.publish("s", msg({"v": 1}), key="k1")
    await a.publish("s", msg({"v": 3}), key="k2")
    with pytest.raises(StateFull, match="limit 2"):  # a ValueError: the gateway answers state_full
        await a.publish("s", msg({"v": 4}), key="k3")


async def test_exactly_one_publish_per_message(make_broker: Any, redis_server: RedisServer) -> None:
    brokers = [await make_broker() for _ in range(3)]
    for b, _ in brokers:
        await b.attach("fan")
    sender = brokers[0][0]
    await sender.publish("fan", msg("warm-up"))  # the script is loaded (EVALSHA cached) by now
    for _, listener in brokers:
        await listener.wait(lambda listener=listener: len(listener.of("fan")) == 1, "warm-up")
    before = {cmd: redis_server.commandstat(cmd) for cmd in ("publish", "evalsha", "eval", "xadd")}
    for i in range(25):
        await sender.publish("fan", msg(i))
    for _, listener in brokers:
        await listener.wait(lambda listener=listener: len(listener.of("fan")) == 26, "25 frames")
    delta = {cmd: redis_server.commandstat(cmd) - n for cmd, n in before.items()}
    # Redis' own counters: one PUBLISH per message no matter how many gateways listen,
    # and one script call (one round trip) that also did the XADD
    assert delta == {"publish": 25, "evalsha": 25, "eval": 0, "xadd": 25}
    assert sender.stats()["publishes"] == 26


async def test_presence_across_brokers(make_broker: Any) -> None:
    a, _ = await make_broker()
    b, _ = await make_broker()
    await a.presence_set("room", {"clientId": "c1", "userId": "alice", "data": {}})
    await b.presence_set("room", {"clientId": "c2", "userId": "bob", "data": {}})
    await a.presence_set("room", {"clientId": "c1", "userId": "alice", "data": {"typing": True}})
    for broker in (a, b):
        members = await broker.presence_members("room")
        assert [m["clientId"] for m in members] == ["c1", "c2"]  # replace keeps join order
        assert members[0]["data"] == {"typing": True}
    removed = await b.presence_remove("room", "c1")  # any gateway may remove any member
    assert removed is not None and removed["userId"] == "alice"
    assert await a.presence_remove("room", "c1") is None
    assert [m["clientId"] for m in await a.presence_members("room")] == ["c2"]
    with pytest.raises(ValueError, match="clientId"):
        await a.presence_set("room", {"userId": "nobody"})


async def test_members_of_a_dead_gateway_leave_once(make_broker: Any, redis_server: RedisServer) -> None:
    alive, la = await make_broker(presence_ttl=30)
    other, lo = await make_broker(presence_ttl=30)
    doomed = RedisBroker(redis_server.url, key_prefix=alive.key_prefix, presence_ttl=0.6)
    await doomed.start()
    for broker in (alive, other):
        await broker.attach("room")
    await doomed.presence_set("room", {"clientId": "d1", "userId": "dora"})
    await alive.presence_set("room", {"clientId": "a1", "userId": "ann"})
    assert {m["clientId"] for m in await other.presence_members("room")} == {"a1", "d1"}
    # simulate a crash: stop its tasks without cleanup, so its liveness key just expires
    for task in doomed._tasks:
        task.cancel()
    await eventually(
        lambda: redis_server.command("EXISTS", f"{alive.key_prefix}:gw:{doomed.gateway_id}") == b":0\r\n",
        "liveness key to expire",
    )
    # both survivors look concurrently; the leave is broadcast exactly once
    got_a, got_o = await asyncio.gather(alive.presence_members("room"), other.presence_members("room"))
    assert [m["clientId"] for m in got_a] == [m["clientId"] for m in got_o] == ["a1"]
    for listener in (la, lo):
        await listener.wait(
            lambda listener=listener: len(listener.of("room", "presence_leave")) == 1, "leave"
        )
    await alive.broadcast("room", {"type": "marker"})
    await la.wait(lambda: len(la.of("room", "marker")) == 1, "marker")
    assert [f["member"]["clientId"] for f in la.of("room", "presence_leave")] == ["d1"]
    doomed._closed = True  # already "crashed": only release its sockets
    await doomed._close_clients()


async def test_sweeper_removes_dead_members_without_anyone_asking(
    make_broker: Any, redis_server: RedisServer
) -> None:
    watcher, lw = await make_broker(presence_ttl=0.6)  # sweeps every 0.2 s
    await watcher.attach("lobby")
    doomed = RedisBroker(redis_server.url, key_prefix=watcher.key_prefix, presence_ttl=0.6)
    await doomed.start()
    await doomed.presence_set("lobby", {"clientId": "z1", "userId": "zed"})
    for task in doomed._tasks:
        task.cancel()
    await lw.wait(lambda: len(lw.of("lobby", "presence_leave")) == 1, "swept leave")
    assert lw.of("lobby", "presence_leave")[0]["member"]["clientId"] == "z1"
    assert await watcher.presence_members("lobby") == []
    assert watcher.stats()["presence_swept"] == 1
    doomed._closed = True
    await doomed._close_clients()


async def test_close_removes_own_members_and_is_idempotent(
    make_broker: Any, redis_server: RedisServer
) -> None:
    a, la = await make_broker()
    await a.attach("room")
    b = RedisBroker(redis_server.url, key_prefix=a.key_prefix)
    await b.start()
    await b.presence_set("room", {"clientId": "b1", "userId": "bea"})
    await b.close()
    await b.close()
    await la.wait(lambda: len(la.of("room", "presence_leave")) == 1, "leave on close")
    assert await a.presence_members("room") == []
    assert redis_server.command("EXISTS", f"{a.key_prefix}:gw:{b.gateway_id}") == b":0\r\n"
    with pytest.raises(BrokerUnavailable):
        await b.publish("room", msg(1))


async def test_unreachable_redis_raises_quickly_without_password() -> None:
    port = free_port()  # nothing listens here
    broker = RedisBroker(f"redis://:s3cret@127.0.0.1:{port}/2", connect_timeout=1.0)
    with pytest.raises(BrokerUnavailable) as err:
        await asyncio.wait_for(broker.start(), 10)  # bounded: a hang fails the test
    text = str(err.value)
    assert f"redis://127.0.0.1:{port}/2" in text and "s3cret" not in text
    await broker.close()


def test_safe_url_and_argument_checks() -> None:
    assert safe_redis_url("redis://user:pw@h.example:7000/3") == "redis://h.example:7000/3"
    assert safe_redis_url("redis://localhost") == "redis://localhost:6379/0"
    with pytest.raises(ValueError, match="history_size"):
        RedisBroker("redis://x", history_size=0)
    with pytest.raises(ValueError, match="gateway_id"):
        RedisBroker("redis://x", gateway_id="bad id\n")


scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


async def test_lua_splice_keeps_any_json_exact(redis_server: RedisServer, prefix: str) -> None:
    """The frame Redis carries (spliced as text in Lua) decodes to exactly what was published."""
    broker = RedisBroker(redis_server.url, key_prefix=prefix)
    listener = Collector()
    broker.set_listener(listener)
    await broker.start()
    await broker.attach("j")
    sent: list[dict[str, Any]] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=json_values, key=st.one_of(st.none(), st.text(min_size=1, max_size=10)))
    def check(data: Any, key: str | None) -> None:
        # hypothesis drives a sync function: run each publish on this loop's thread
        future = asyncio.run_coroutine_threadsafe(broker.publish("j", msg(data), key=key), loop)
        sent.append(future.result(10))

    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(check)
        await listener.wait(lambda: len(listener.of("j")) == len(sent), "all frames")
        assert listener.of("j") == sent
        snap = await broker.snapshot("j", last_event_id=None, epoch=None, history=len(sent), want_state=False)
        assert snap.events == sent[-broker.history_size :]
    finally:
        await broker.close()


async def test_sweep_spares_a_gateway_that_came_back(make_broker: Any, redis_server: RedisServer) -> None:
    owner, _ = await make_broker(presence_ttl=30)
    sweeper, ls = await make_broker(presence_ttl=30)
    await sweeper.attach("room")
    await owner.presence_set("room", {"clientId": "o1", "userId": "olga"})
    # the sweeper's liveness check and its removal are one atomic step: a live owner keeps its member
    assert await sweeper._remove_member("room", "o1", owner.gateway_id, only_if_dead=True) is None
    assert [m["clientId"] for m in await sweeper.presence_members("room")] == ["o1"]

    # the owner stalls past its TTL and is swept...
    redis_server.command("DEL", f"{owner.key_prefix}:gw:{owner.gateway_id}")
    assert [m["clientId"] for m in await sweeper.presence_members("room")] == []
    await ls.wait(lambda: len(ls.of("room", "presence_leave")) == 1, "leave")
    # ...then its next refresh notices the lost key and puts its member back, announcing it
    await owner._heartbeat()
    assert [m["clientId"] for m in await sweeper.presence_members("room")] == ["o1"]
    await ls.wait(lambda: len(ls.of("room", "presence_join")) == 1, "join after restore")


async def test_channel_ttl_expires_idle_channels(redis_server: RedisServer, prefix: str) -> None:
    broker = RedisBroker(redis_server.url, key_prefix=prefix, channel_ttl=0.5)
    broker.set_listener(Collector())
    await broker.start()
    try:
        first = await broker.publish("idle", msg("a"), key="k", msg_id="m1")
        keys = [
            f"{prefix}:{{idle}}:{what}" for what in ("offset", "epoch", "events", "state", "msgids", "msgq")
        ]
        for key in keys:
            ttl = int(redis_server.command("PTTL", key)[1:-2])
            assert 0 < ttl <= 500, (key, ttl)  # every channel key expires with the channel
        # Idle past the TTL: everything is gone, and the channel starts over with a new epoch.
        await eventually(lambda: redis_server.command("EXISTS", *keys) == b":0\r\n", "keys expired", 10)
        snap = await broker.snapshot(
            "idle", last_event_id=first["id"], epoch=first["epoch"], history=10, want_state=True
        )
        assert (
            snap.recovered is False
            and snap.epoch != first["epoch"]
            and snap.events == []
            and snap.state == {}
        )
        assert 0 < int(redis_server.command("PTTL", keys[1])[1:-2]) <= 500  # the new epoch expires too
    finally:
        await broker.close()


def test_channel_ttl_is_validated() -> None:
    with pytest.raises(ValueError, match="channel_ttl"):
        RedisBroker("redis://127.0.0.1:1/0", channel_ttl=0)
    with pytest.raises(ValueError, match="channel_ttl"):
        Gateway(channel_ttl=60)  # the in-memory broker keeps channels for its lifetime
    with pytest.raises(ValueError, match="channel_ttl"):
        GatewayConfig(channel_ttl=-1)
    assert Gateway(redis="redis://127.0.0.1:1/0", channel_ttl=60).broker.channel_ttl == 60  # type: ignore[attr-defined]


def test_lua_scripts_are_package_files_with_a_contract_header() -> None:
    assert {
        "publish",
        "snapshot",
        "position",
        "gap",
        "presence_set",
        "presence_remove",
        "forget_gateway",
    } == SCRIPTS
    for name in sorted(SCRIPTS):
        source = script_source(name)
        lines = source.splitlines()
        header = []
        for line in lines:
            if not line.startswith("--"):
                break
            header.append(line)
        text = "\n".join(header)
        assert header[0].startswith(f"-- {name}.lua:"), name
        for part in ("KEYS[1]", "ARGV[1]", "Returns"):
            assert part in text, (name, part)
        assert "redis.call" in source[len(text) :], name  # a script follows its header
    with pytest.raises(ValueError, match="unknown Redis broker script"):
        script_source("../base")
