"""RedisClusterBroker: the Redis broker on a Redis Cluster (Redis >= 7, sharded pub/sub).

Built from the Redis broker's parts (:mod:`.redis`, :mod:`.redis_presence`, the Lua
scripts) with the cluster key layout (:class:`~.redis_keys.KeyLayout` ``cluster=True``) and
the sharded fan-out (:mod:`.redis_cluster_pubsub`). Select it with a
``redis+cluster://host:port[,host:port...]`` URL (``rediss+cluster://`` for TLS; any node
works as a seed, more seeds help when one is down) — see :func:`is_cluster_url`.

Rules of this module:

* Every key a script touches shares the channel's hash slot (``P:{c}:...``), so the publish
  script stays ONE round trip to the slot's primary and ends with ``SPUBLISH``: a message
  travels to the shard that owns its channel only. Slot routing, ``MOVED``/``ASK``/
  ``TRYAGAIN`` and topology refresh come from redis-py's ``RedisCluster``; the publish is
  sent to the slot's owner with ``target_nodes`` so redis-py never retries it on its own.
  A broken connection gets one retry (after a topology refresh) only when that cannot store
  the message twice: the publish has a msgId, which the script dedupes.
* The gateway-wide keys (liveness, owned sets, the set of gateways) share one slot, tag
  ``{gateways}``: the dead-gateway sweep is then still one script and a heartbeat one
  pipeline on one node; that slot sees a few commands per gateway every ``presence_ttl / 3``.
  Presence hashes stay in their channel's slot, so the presence scripts run in split mode
  (see :mod:`.redis_presence`).
* Failover: replication is asynchronous, so a master killed right after acknowledging a
  publish may take it with it. The publish script stores the replication id of the shard
  that wrote the channel (``P:{c}:lineage``); the first publish on a promoted replica sees
  its own ``master_replid2`` there and starts a new epoch, so a lost message surfaces as a
  new epoch (``recovered: false`` for a client resuming across it), never as an offset
  issued twice. What is not detected: two failovers in a row with no publish on the channel
  in between. ``wait_replicas=N`` makes each publish wait (``WAIT``) until N replicas have
  it; a publish not confirmed within ``wait_timeout`` is answered ``unavailable`` (it *was*
  stored and sent: resend with the same msgId, which is then answered as a duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .base import BrokerUnavailable
from .lua import script_source
from .redis import RedisBroker
from .redis_base import CONNECTION_ERRORS, log
from .redis_cluster_pubsub import ClusterFanOut
from .redis_keys import CHANNEL_KEYS, KeyLayout

__all__ = ["RedisClusterBroker", "is_cluster_url", "parse_cluster_url", "redis_broker_for"]

_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return url.split("://", 1)[0].lower() in _SCHEMES


def redis_broker_for(url: str, **options: Any) -> RedisBroker:
    """The Redis broker a URL asks for: :class:`RedisClusterBroker` for ``redis+cluster://``
    (and ``rediss+cluster://``), else :class:`~.redis.RedisBroker`.

    Args:
        url: a Redis or Redis Cluster URL.
        **options: the broker's keyword arguments (``wait_replicas``/``wait_timeout`` only
            for a cluster).

    Raises:
        ValueError: a malformed cluster URL, an option out of range, or ``wait_replicas``
            for a single Redis.
    """
    if is_cluster_url(url):
        return RedisClusterBroker(url, **options)
    if options.get("wait_replicas"):
        raise ValueError("wait_replicas applies to a Redis Cluster (redis+cluster://) URL")
    options.pop("wait_replicas", None)
    options.pop("wait_timeout", None)
    return RedisBroker(url, **options)


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]], str | None, str | None]:
    """``(node scheme, seeds, username, password)`` of a ``redis+cluster://`` URL.

    Args:
        url: ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (no database:
            a cluster has only database 0).

    Raises:
        ValueError: another scheme, no seed, a seed without a valid port, or a database path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://host:port[,host:port]): {url!r}")
    auth, at, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path.strip("0"):
        raise ValueError("a Redis Cluster has only database 0; remove the /db part of the URL")
    username = password = None
    if at:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://password@host is not valid; user:password or :password
            raise ValueError("Redis Cluster URL credentials must be user:password@ or :password@")
    seeds: list[tuple[str, int]] = []
    for part in filter(None, hosts.split(",")):
        parsed = urlsplit(f"//{part}")
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"Redis Cluster seed {part!r} needs host:port")
        seeds.append((parsed.hostname, parsed.port))
    if not seeds:
        raise ValueError(f"Redis Cluster URL names no node: {url!r}")
    return _SCHEMES[scheme.lower()], seeds, username, password


class RedisClusterBroker(ClusterFanOut, RedisBroker):
    """A :class:`~.base.Broker` over a Redis Cluster; contract as :class:`~.redis.RedisBroker`.

    Args:
        url: ``redis+cluster://[[user]:password@]host:port[,host:port...]``.
        wait_replicas: 0 (default: asynchronous replication, see the module rules) or the
            number of replicas each publish must reach before it is acknowledged.
        wait_timeout: seconds a publish waits for ``wait_replicas``.
        **options: as :class:`~.redis.RedisBroker` (``history_size``, ``state_max_keys``,
            ``presence_ttl``, ``key_prefix`` (no braces), ``connect_timeout``,
            ``gateway_id``, ``command_timeout``, ``sweep_interval``, ``channel_ttl``).

    Raises:
        ValueError: a malformed URL or an argument out of range (nothing connects here).
    """

    _split_presence = True
    _publish_extra_args = ("SPUBLISH",)
    # ClusterError: redis-py gave up following redirections (TTL exhausted), e.g. TRYAGAIN for
    # the whole time a channel's keys were half migrated; the script did not run.
    _outage_errors = (
        *CONNECTION_ERRORS,
        RedisClusterException,
        ClusterDownError,
        ClusterError,
        MasterDownError,
        TryAgainError,
    )

    def __init__(
        self, url: str, *, wait_replicas: int = 0, wait_timeout: float = 1.0, **options: Any
    ) -> None:
        node_scheme, seeds, username, password = parse_cluster_url(url)
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ValueError(f"wait_replicas must be an integer >= 0, got {wait_replicas!r}")
        if wait_timeout <= 0:
            raise ValueError(f"wait_timeout must be > 0, got {wait_timeout!r}")
        self._node_scheme = node_scheme
        self._seeds = seeds
        self._username = username
        self._password = password
        host, port = seeds[0]
        # The parts check and print ``url``; the first seed stands for the cluster there.
        super().__init__(self._url_of(host, port), **options)
        self.cluster_url = url
        self.safe_url = f"{node_scheme}+cluster://" + ",".join(f"{h}:{p}" for h, p in seeds)
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._keys = KeyLayout(self.key_prefix, self.gateway_id, cluster=True)
        self._init_cluster_fanout()

    def _url_of(self, host: str, port: int) -> str:
        cred = ""
        if self._password is not None:
            cred = f"{quote(self._username or '', safe='')}:{quote(self._password, safe='')}@"
        return f"{self._node_scheme}://{cred}{host}:{port}/0"

    def _node_url(self, node: ClusterNode) -> str:
        return self._url_of(node.host, int(node.port))

    def _make_client(self, socket_timeout: float | None, retries: int) -> aioredis.Redis:
        self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self._seeds],
            username=self._username,
            password=self._password,
            ssl=self._node_scheme == "rediss",
            decode_responses=True,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries),
        )
        # RedisCluster has every command method the parts call (GET, HGETALL, scripts,
        # pipelines of one slot) but is not a redis.asyncio.Redis subclass, which is what the
        # parts are typed against; the cluster-only calls go through self._cluster.
        return cast("aioredis.Redis", self._cluster)

    async def start(self) -> None:
        """Connect to the cluster (bounded by ``connect_timeout``), as :meth:`RedisBroker.start`.

        Raises:
            BrokerUnavailable: no seed answers, the cluster is down, or the broker was closed.
        """
        try:
            await super().start()
        except (RedisClusterException, ClusterDownError, MasterDownError) as exc:
            await self._close_clients()
            raise BrokerUnavailable(f"cannot reach Redis Cluster at {self.safe_url}: {exc}") from None

    async def _close_clients(self) -> None:
        await self._close_shards()
        await super()._close_clients()

    # --------------------------------------------------------- publishing
    def _publish_keys(self, channel: str) -> list[str]:
        return [self._k(channel, w) for w in (*CHANNEL_KEYS, "lineage")]

    async def _fan_out(self, ps_channel: str, data: str) -> None:
        await self._cluster.spublish(ps_channel, data)

    async def _eval_publish(self, keys: list[str], args: list[str], *, idempotent: bool) -> list[Any]:
        """Run the publish script on the slot's primary (EVAL if it lacks the script, e.g. a
        promoted replica); see the module rules for the retry and ``wait_replicas``."""
        for attempt in (1, 2):
            try:
                node = self._cluster.get_node_from_key(keys[0])
                if node is None:
                    raise RedisConnectionError(f"no Redis node serves {keys[0]!r}")
                if self.wait_replicas:
                    return await self._publish_and_wait(node, keys, args)
                try:
                    reply: list[Any] = await self._cluster.execute_command(
                        "EVALSHA", self._publish_script.sha, len(keys), *keys, *args, target_nodes=node
                    )
                except NoScriptError:
                    reply = await self._cluster.execute_command(
                        "EVAL", script_source("publish"), len(keys), *keys, *args, target_nodes=node
                    )
                return reply
            except RedisConnectionError as exc:
                if attempt == 2 or self._closed or not idempotent:
                    raise
                log.info("RedisBroker %s: publish connection broke (%s); retrying once", self.gateway_id, exc)
                await self._cluster.nodes_manager.initialize()
        raise AssertionError("unreachable")

    async def _publish_and_wait(self, node: ClusterNode, keys: list[str], args: list[str]) -> list[Any]:
        """The publish script then ``WAIT`` on one connection of ``node`` (WAIT counts the
        replicas that have this connection's writes, so it must follow them on it).

        ``MOVED`` (a stale slot map, e.g. the node is a killed master back as a replica)
        refreshes the map and raises :class:`RedisConnectionError` for the caller's one retry;
        ``ASK`` (the slot is being migrated) sends the pair again to the importing node after
        ``ASKING``; ``TRYAGAIN`` is raised as :class:`RedisConnectionError` too. In each case the
        node's answer to ``WAIT`` (an error on a replica) is read and dropped.
        """
        asking = False
        for _ in range(3):  # EVALSHA, EVAL if the node lacks the script, one ASK redirect
            try:
                return await self._publish_and_wait_once(node, keys, args, asking=asking)
            except MovedError as exc:
                with contextlib.suppress(RedisError):
                    await self._cluster.nodes_manager.initialize()
                raise RedisConnectionError(f"slot moved during publish: {exc}") from None
            except AskError as exc:
                if asking:
                    raise RedisConnectionError(f"slot migrating during publish: {exc}") from None
                target = self._cluster.get_node(exc.host, exc.port)
                if target is None:
                    raise RedisConnectionError(f"ASK to an unknown node: {exc}") from None
                node, asking = target, True
            except TryAgainError as exc:
                raise RedisConnectionError(f"slot migrating during publish: {exc}") from None
        raise RedisConnectionError("the publish could not be placed on the slot's owner")

    async def _publish_and_wait_once(
        self, node: ClusterNode, keys: list[str], args: list[str], *, asking: bool
    ) -> list[Any]:
        conn = node.acquire_connection()
        try:
            wait_ms = max(1, round(self.wait_timeout * 1000))
            for script in ("EVALSHA", "EVAL"):
                body = self._publish_script.sha if script == "EVALSHA" else script_source("publish")
                commands: list[tuple[Any, ...]] = [("ASKING",)] if asking else []
                commands += [(script, body, len(keys), *keys, *args), ("WAIT", self.wait_replicas, wait_ms)]
                await conn.send_packed_command(conn.pack_commands(commands))
                if asking:
                    await conn.read_response()  # ASKING's OK
                try:
                    reply = await conn.read_response()
                except NoScriptError:
                    await self._skip_reply(conn)  # WAIT's answer
                    continue
                except ResponseError:
                    # WAIT's answer is an error too when the node is now a replica (a killed
                    # master restarted as its replacement's replica answers MOVED, then
                    # "WAIT cannot be used with replica instances"): read it, keep the cause.
                    await self._skip_reply(conn)
                    raise
                acked = int(await conn.read_response())
                # A duplicate is held to the same bar: its earlier store may not have reached a
                # replica either (WAIT then covers this connection's latest write).
                if (
                    acked < self.wait_replicas
                    and isinstance(reply, list)
                    and reply
                    and reply[0] in ("ok", "dup")
                ):
                    raise BrokerUnavailable(
                        f"publish reached {acked} of {self.wait_replicas} replicas within "
                        f"{self.wait_timeout}s (it was stored: resend with the same msgId)"
                    )
                return cast("list[Any]", reply)
            raise RedisConnectionError("the publish script could not be loaded")
        except (RedisConnectionError, OSError, asyncio.TimeoutError):
            await conn.disconnect()
            raise
        finally:
            node.release(conn)

    @staticmethod
    async def _skip_reply(conn: Connection) -> None:
        """Read and drop one pipelined reply, an error reply included."""
        with contextlib.suppress(ResponseError):
            await conn.read_response()
