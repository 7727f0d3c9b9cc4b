"""What every part of the Redis broker shares: configuration, the redis-py client, error policy.

:class:`~.redis.RedisBroker` is assembled from parts, one concern per module:
:mod:`.redis_pubsub` (fan-out: the pub/sub reader, attach/detach, gap refill),
:mod:`.redis_presence` (presence, liveness heartbeat, dead-gateway sweeps) and
:mod:`.redis` (lifecycle, publish, snapshot). Each part derives from
:class:`RedisBrokerBase`, which declares the state they share and the helpers they all use.

Rules of this module:

* Redis errors surface as :class:`~.base.BrokerUnavailable`; nothing is dropped silently.
  Every command gets redis-py's one reconnect-and-retry on a broken connection (a pooled
  socket that died with a restarted server); idempotent reads (:meth:`RedisBrokerBase._read`)
  get one more round of that before giving up; writes do not.
* Every Redis command sent is counted in ``stats()["commands"]`` (a script counts as one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...protocol import encode
from .base import Broker, BrokerUnavailable
from .redis_keys import KeyLayout

__all__ = ["CONNECTION_ERRORS", "RedisBrokerBase"]

log = logging.getLogger("rtwidgets.gateway.brokers.redis")

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
# Connections of the command pool (redis-py's default size). Commands beyond it wait for a free
# one (a blocking pool, bounded by command_timeout) instead of failing.
POOL_CONNECTIONS = 100
# Worth one more try for an idempotent read: the socket broke (e.g. a pooled connection
# that died with a restarted server). Timeouts are not retried: Redis may be hung, and a
# retry would double the wait before the client hears ``unavailable``.
_RETRYABLE_ERRORS = (RedisConnectionError, OSError)
_NOT_RETRYABLE_ERRORS = (RedisTimeoutError, TimeoutError)

_T = TypeVar("_T")


class RedisBrokerBase(Broker):
    """Shared state and helpers of the Redis broker's parts (not a broker on its own).

    The attributes are set by :class:`~.redis.RedisBroker`'s constructor and ``start``.
    """

    url: str
    safe_url: str
    history_size: int
    state_max_keys: int
    presence_ttl: float
    key_prefix: str
    connect_timeout: float
    command_timeout: float
    gateway_id: str
    channel_ttl: float | None
    sweep_interval: float
    _keys: KeyLayout
    _ttl_ms: str  # PEXPIRE argument for the scripts ('' = keep)
    _redis: aioredis.Redis | None
    _started: bool
    _closed: bool
    _stats: dict[str, int]
    # Registered in start() (redis-py SCRIPT LOAD / EVALSHA, EVAL when Redis lost its cache).
    _publish_script: AsyncScript
    _snapshot_script: AsyncScript
    _position_script: AsyncScript
    _gap_script: AsyncScript
    _presence_set_script: AsyncScript
    _presence_remove_script: AsyncScript
    _forget_gateway_script: AsyncScript
    # What _guard/_read turn into BrokerUnavailable (the cluster broker adds its client's
    # cluster errors: no node reachable, slot not served, CLUSTERDOWN during a failover).
    _outage_errors: tuple[type[BaseException], ...] = CONNECTION_ERRORS

    # ----------------------------------------------------------------- keys
    def _k(self, channel: str, what: str) -> str:
        return self._keys.channel_key(channel, what)

    def _ps_channel(self, channel: str) -> str:
        return self._keys.pubsub(channel)

    # ----------------------------------------------------------- redis access
    def _client(self) -> aioredis.Redis:
        # Not before start() succeeded: the scripts are registered and the reader runs only then.
        if self._redis is None or self._closed or not self._started:
            raise BrokerUnavailable(f"Redis broker for {self.safe_url} is not started")
        return self._redis

    def _client_unchecked(self) -> aioredis.Redis:
        assert self._redis is not None
        return self._redis

    def _make_client(self, socket_timeout: float | None, retries: int) -> aioredis.Redis:
        # The asyncio Retry: redis-py's sync ``redis.retry.Retry`` given to an asyncio client
        # returns the un-awaited coroutine from its loop, so it silently never retries.
        # ``retries=0`` also catches nothing, so redis-py never reconnects inside a failed call.
        errors: tuple[type[RedisError], ...] = (RedisConnectionError,) if retries else ()
        # A blocking pool: with every pooled connection busy (a reconnect storm re-subscribes
        # hundreds of clients at once) a command waits up to command_timeout for one, where
        # redis-py's default pool fails it at once ("Too many connections").
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_CONNECTIONS,
            timeout=self.command_timeout,
            decode_responses=True,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries, supported_errors=errors),
        )
        return aioredis.Redis.from_pool(pool)

    @contextlib.asynccontextmanager
    async def _guard(self, what: str, commands: int = 1) -> AsyncIterator[None]:
        """Count commands and turn connection trouble into :class:`BrokerUnavailable`."""
        self._stats["commands"] += commands
        try:
            yield
        except self._outage_errors as exc:
            raise BrokerUnavailable(f"Redis at {self.safe_url} unavailable during {what}: {exc}") from None

    async def _read(self, what: str, call: Callable[[], Awaitable[_T]], commands: int = 1) -> _T:
        """Run an idempotent read; after a connection error retry it once before raising
        :class:`BrokerUnavailable`.

        redis-py already retries every command once, reconnecting (see ``_make_client``);
        right after a Redis restart that is not always enough (several pooled sockets can be
        dead), and a read may safely run again. Writes never get this second round: a publish
        whose fate is unknown is answered ``unavailable`` and the client retries with its msgId.
        """
        self._stats["commands"] += commands
        try:
            return await call()
        except self._outage_errors as exc:
            if not isinstance(exc, _RETRYABLE_ERRORS) or isinstance(exc, _NOT_RETRYABLE_ERRORS):
                raise BrokerUnavailable(
                    f"Redis at {self.safe_url} unavailable during {what}: {exc}"
                ) from None
            log.info("RedisBroker %s: %s failed (%s); retrying once", self.gateway_id, what, exc)
        async with self._guard(what, commands):
            return await call()

    async def _broadcast_raw(self, channel: str, frame: dict[str, Any]) -> None:
        """One PUBLISH of a frame that is not stored (ephemeral messages, presence events)."""
        async with self._guard("broadcast"):
            await self._fan_out(self._ps_channel(channel), encode(frame))
        self._stats["publishes"] += 1
        self._stats["broadcasts"] += 1

    async def _fan_out(self, ps_channel: str, data: str) -> None:
        """PUBLISH ``data`` on ``ps_channel`` (SPUBLISH on Redis Cluster)."""
        await self._client_unchecked().publish(ps_channel, data)
