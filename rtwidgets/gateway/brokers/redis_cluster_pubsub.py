"""Fan-out of the Redis Cluster broker: sharded pub/sub, one connection per shard node.

Rules of this module:

* A channel's frames travel by sharded pub/sub (``SPUBLISH`` in the publish script,
  ``SSUBSCRIBE`` here): only the shard that owns the channel's slot carries them, instead of
  every node of the cluster. Each attached channel is subscribed on the primary that owns its
  slot, as the cluster client's slot map (redis-py ``RedisCluster``: its ``keyslot`` and
  ``nodes_manager``, refreshed with ``nodes_manager.initialize()``) says; one lean
  :class:`ShardConnection` (:mod:`.resp_conn`) per node carries all of that node's channels.
* Why not redis-py's ``ClusterPubSub``: it delivers by polling each node in turn
  (``get_sharded_message``), and after a slot migration or a failover it re-subscribes a
  channel at its new owner on its own, without telling its user. Messages stored meanwhile
  would then be skipped, since nothing refills the gap; here every move is seen and refilled.
* A channel leaves its shard when the server ends its subscription (a ``sunsubscribe`` push
  we did not ask for: its slot was migrated away), when the node refuses the ``SSUBSCRIBE``
  (``MOVED``: the slot map was stale) or when the node's connection is lost (a killed master).
  It is then *unrouted*: what its refill held is dropped, the slot map is refreshed, the
  channel is subscribed at its owner and, once confirmed, refilled from the stream exactly as
  after a reconnect on one Redis (:mod:`.redis_pubsub`: the catch-up core delivers each
  ``(epoch, offset)`` once, in order). Unrouted channels are retried with backoff until the
  cluster serves their slot again (a failover takes about ``cluster-node-timeout``).
* Replies on a pub/sub connection come in the order the commands were sent, so each shard
  keeps a FIFO of the (UN)SUBSCRIBEs it sent: a refusal names no channel and is matched there.
* Ephemeral broadcasts (not stored) sent while a channel is unrouted are not refilled: they
  are at-most-once, as on one Redis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from .base import BrokerUnavailable
from .redis_base import CONNECTION_ERRORS, log
from .redis_pubsub import RedisFanOut
from .resp import RespError, encode_command
from .resp_conn import PubSubConnection, Push, open_pubsub

__all__ = ["ClusterFanOut", "ShardConnection"]


class ShardConnection(PubSubConnection):
    """A pub/sub connection to one cluster node, for sharded channels.

    An error reply (``MOVED`` for a channel whose slot is served elsewhere) goes to
    ``on_refused`` instead of ending the connection: the node's other channels stay.
    """

    def __init__(self, on_push: Callable[[Push], None]) -> None:
        super().__init__(on_push)
        self.on_refused: Callable[[RespError], None] | None = None

    def ssubscribe(self, channel: str) -> None:
        self._write(encode_command("SSUBSCRIBE", channel))

    def sunsubscribe(self, channel: str) -> None:
        self._write(encode_command("SUNSUBSCRIBE", channel))

    def _on_value(self, value: Any) -> None:
        authenticating = self._auth is not None and not self._auth.done()
        if isinstance(value, RespError) and self.on_refused is not None and not authenticating:
            self.on_refused(value)
            return
        super()._on_value(value)


class _Shard:
    """One node's pub/sub connection and the channels routed to it."""

    __slots__ = ("channels", "conn", "name", "opened", "sent", "task", "url")

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.conn: ShardConnection | None = None
        self.channels: set[str] = set()
        # ("s" | "u", pub/sub name) of every SSUBSCRIBE / SUNSUBSCRIBE not answered yet.
        self.sent: collections.deque[tuple[str, str]] = collections.deque()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class ClusterFanOut(RedisFanOut):
    """The fan-out part of :class:`~.redis_cluster.RedisClusterBroker` (see the module rules)."""

    _cluster: RedisCluster
    _shards: dict[str, _Shard]  # node name -> its shard connection
    _route: dict[str, _Shard]  # attached channel -> the shard its subscription was sent to
    _unrouted: asyncio.Event  # set when a channel needs routing

    def _node_url(self, node: ClusterNode) -> str:
        """``redis://`` URL of ``node`` with the cluster's credentials and TLS (the broker's)."""
        raise NotImplementedError

    def _init_cluster_fanout(self) -> None:
        self._shards = {}
        self._route = {}
        self._unrouted = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while every attached channel is subscribed on a live shard connection."""
        if self._closed or not self._started:
            return False
        return all(
            (shard := self._route.get(channel)) is not None and shard.conn is not None and shard.conn.is_open
            for channel in self._attached
        )

    # ------------------------------------------------------ transport hooks
    def _check_fanout_ready(self) -> None:
        pass  # each attach opens (or reuses) its shard's connection and fails on its own

    async def attach(self, channel: str) -> None:
        """As :meth:`RedisFanOut.attach`, on the shard that owns the channel's slot.

        Raises:
            BrokerUnavailable: the owner node cannot be reached or the slot is not served.
        """
        try:
            await super().attach(channel)
        except BaseException:
            if channel not in self._attached:
                self._send_unsubscribe(channel)  # a subscription sent before the failure
            raise

    async def _send_subscribe(self, channel: str) -> None:
        try:
            await self._subscribe_at_owner(channel)
        except (RedisError, RedisClusterException) as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            raise BrokerUnavailable(
                f"Redis Cluster at {self.safe_url} cannot serve {channel!r}: {exc}"
            ) from None

    def _send_unsubscribe(self, channel: str) -> None:
        shard = self._route.pop(channel, None)
        if shard is None:
            return
        shard.channels.discard(channel)
        if shard.conn is not None and shard.conn.is_open:
            ps_channel = self._ps_channel(channel)
            with contextlib.suppress(*CONNECTION_ERRORS, RedisError):
                self._stats["commands"] += 1
                shard.conn.sunsubscribe(ps_channel)
                shard.sent.append(("u", ps_channel))

    def _subscription_conn(self, channel: str) -> PubSubConnection | None:
        shard = self._route.get(channel)
        return None if shard is None else shard.conn

    # -------------------------------------------------------------- routing
    async def _subscribe_at_owner(self, channel: str) -> None:
        """SSUBSCRIBE ``channel`` on the node that owns its slot (its confirmation is a push)."""
        ps_channel = self._ps_channel(channel)
        node = self._cluster.nodes_manager.get_node_from_slot(self._cluster.keyslot(ps_channel))
        shard = await self._shard(node)
        if channel not in self._attached or channel in self._route:
            return  # detached, or routed by someone else, while the connection opened
        conn = shard.conn
        if conn is None or not conn.is_open:
            raise RedisConnectionError(f"pub/sub connection to {node.name} lost")
        self._stats["commands"] += 1
        conn.ssubscribe(ps_channel)
        shard.sent.append(("s", ps_channel))
        shard.channels.add(channel)
        self._route[channel] = shard

    async def _shard(self, node: ClusterNode) -> _Shard:
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = _Shard(node.name, self._node_url(node))
            shard.task = asyncio.get_running_loop().create_task(
                self._run_shard(shard), name=f"rtw-redis-shard-{self.gateway_id}-{node.name}"
            )
        await asyncio.wait_for(asyncio.shield(shard.opened), self.connect_timeout)
        return shard

    async def _run_shard(self, shard: _Shard) -> None:
        """Own one node's pub/sub connection until it is lost, then unroute its channels."""
        conn: ShardConnection | None = None
        error: BaseException | None = None
        try:
            conn = await open_pubsub(
                shard.url,
                lambda item: self._on_shard_push(shard, item),
                self.connect_timeout,
                kind=ShardConnection,
            )
            conn.on_refused = lambda err: self._on_shard_refused(shard, err)
            shard.conn = conn
            shard.opened.set_result(None)
            await self._watch(conn, lambda: None)
        except asyncio.CancelledError:
            error = BrokerUnavailable("broker closed")
            raise
        except (*CONNECTION_ERRORS, RedisError, ValueError) as exc:
            error = exc
            if not self._closed:
                log.warning("RedisBroker %s: pub/sub to node %s lost (%s)", self.gateway_id, shard.name, exc)
        finally:
            if conn is not None:
                conn.abort(error or RedisConnectionError("shard closed"))
            if not shard.opened.done():
                shard.opened.set_exception(
                    BrokerUnavailable(f"cannot reach Redis node {shard.name}: {error}")
                )
                shard.opened.exception()  # marked retrieved: the attach waiting may have gone
            self._lose_shard(shard)

    def _lose_shard(self, shard: _Shard) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        for channel in list(shard.channels):
            self._unroute(channel, shard)
        shard.channels.clear()

    def _unroute(self, channel: str, shard: _Shard) -> None:
        """``channel``'s subscription on ``shard`` is gone: route it again, then refill it."""
        shard.channels.discard(channel)
        if self._route.get(channel) is not shard:
            return
        del self._route[channel]
        feed = self._attached.get(channel)
        if feed is None:
            return
        feed.drop_held()  # stored messages it held are read again by the refill
        self._needs_gap_fill.add(channel)
        self._unrouted.set()

    def _on_shard_push(self, shard: _Shard, item: Push) -> None:
        kind = item[0]
        if kind == b"smessage" and len(item) == 3:
            self._on_message(item[1].decode(), item[2])
            return
        if len(item) != 3 or kind not in (b"ssubscribe", b"sunsubscribe"):
            return  # PONGs only prove liveness (reads)
        ps_channel = item[1].decode()
        channel = self._keys.channel_of(ps_channel)
        if kind == b"ssubscribe":
            if shard.sent and shard.sent[0] == ("s", ps_channel):
                shard.sent.popleft()
            if channel is not None and self._route.get(channel) is shard:
                self._on_subscribed(ps_channel)
            return
        if shard.sent and shard.sent[0] == ("u", ps_channel):
            shard.sent.popleft()  # the answer to our own SUNSUBSCRIBE (detach)
            return
        # Not asked for: the node no longer serves the channel's slot (migrated away).
        if channel is not None:
            log.info("RedisBroker %s: %r left node %s (slot moved)", self.gateway_id, channel, shard.name)
            self._unroute(channel, shard)

    def _on_shard_refused(self, shard: _Shard, error: RespError) -> None:
        if not shard.sent:
            if shard.conn is not None:
                shard.conn.abort(
                    RedisConnectionError(f"unexpected error from Redis node {shard.name}: {error}")
                )
            return
        what, ps_channel = shard.sent.popleft()
        channel = self._keys.channel_of(ps_channel)
        if what == "s" and channel is not None:
            log.info("RedisBroker %s: node %s refused %r (%s)", self.gateway_id, shard.name, channel, error)
            self._unroute(channel, shard)

    # ---------------------------------------------------------- the router
    async def _reader(self, ready: asyncio.Future[None]) -> None:
        """Route unrouted channels until closed: refresh the slot map, subscribe each at its
        owner; retry with backoff while the cluster does not serve them (e.g. mid-failover)."""
        self._ps_ready = True
        if not ready.done():
            ready.set_result(None)
        backoff = 0.05
        while not self._closed:
            await self._unrouted.wait()
            self._unrouted.clear()
            try:
                await self._route_unrouted()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, RedisError, RedisClusterException, BrokerUnavailable) as exc:
                log.warning(
                    "RedisBroker %s: cannot route channels yet (%s); retrying in %.2fs",
                    self.gateway_id,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
                backoff = min(backoff * 2, 2.0)
                self._unrouted.set()

    async def _route_unrouted(self) -> None:
        channels = [c for c in self._attached if c not in self._route]
        if not channels:
            return
        async with self._guard("cluster topology refresh"):
            await self._cluster.nodes_manager.initialize()
        self._stats["reconnects"] += 1
        for channel in channels:
            if channel in self._attached and channel not in self._route:
                self._needs_gap_fill.add(channel)  # its confirmation starts the refill
                await self._subscribe_at_owner(channel)

    async def _close_shards(self) -> None:
        shards = list(self._shards.values())
        self._shards.clear()
        self._route.clear()
        for shard in shards:
            if shard.conn is not None:
                shard.conn.close()
            if shard.task is not None:
                shard.task.cancel()
        for shard in shards:
            if shard.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await shard.task
