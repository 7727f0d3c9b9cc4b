"""RedisBroker: several gateways share channels, history, state and presence through Redis.

The broker is assembled from parts, one concern per module: key names and stored formats
(:mod:`.redis_keys`), shared state and error policy (:mod:`.redis_base`), fan-out
(:mod:`.redis_pubsub`), presence (:mod:`.redis_presence`), the Lua scripts
(:mod:`.lua`); this module holds the lifecycle, ``publish`` and ``snapshot``.

Rules of this module:

* A publish is ONE round trip: a Lua script (``lua/publish.lua``, EVALSHA) dedupes the
  msgId, checks the state bound, INCRs the offset, XADDs, updates state and issues exactly
  one PUBLISH. It goes through a pipelined connection of its own (:mod:`.resp_conn`), not
  redis-py's pool; a broken connection gets one reconnect-and-retry only when that cannot
  store the message twice (it was never sent, or it has a msgId the script dedupes).
  Python encodes the frame without ``id/eventId/offset/epoch``; Lua splices those in
  as text (``{"id":..,"eventId":..,"offset":..,"epoch":..,<rest>``), because the id is
  only known after XADD and because re-encoding user data with Lua's cjson would lose
  number precision. The stream entry stores the frame without its id; readers splice
  it back in the same way.
* A snapshot is one atomic script (``lua/snapshot.lua``); it is idempotent (it only
  creates a missing epoch), so it gets the one extra retry of idempotent reads.
* Redis errors surface as :class:`BrokerUnavailable` (see :mod:`.redis_base`).
* One Redis server (or a primary with replicas behind one URL). Redis Cluster is served by
  :class:`~.redis_cluster.RedisClusterBroker`, built from the same parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.typing import EncodableT

from ...protocol import encode
from .base import BrokerUnavailable, SnapshotResult, StateFull
from .lua import script_source
from .redis_base import CONNECTION_ERRORS, log
from .redis_keys import CHANNEL_KEYS, KeyLayout, safe_redis_url
from .redis_presence import RedisPresence
from .redis_pubsub import RedisFanOut
from .resp import RespError
from .resp_conn import CommandConnection, NotSentError, check_url, open_command

# BrokerUnavailable and StateFull are re-exported for callers that import them from here.
__all__ = ["BrokerUnavailable", "RedisBroker", "StateFull", "safe_redis_url"]

_GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
# Server-assigned fields that Lua splices into the encoded frame.
_SERVER_FIELDS = ("id", "eventId", "offset", "epoch")
# Approximate stream trimming (MAXLEN ~) only drops whole radix-tree nodes (100 entries
# by default), so a small history would never be trimmed: trim exactly below this size.
_EXACT_TRIM_BELOW = 1000


class RedisBroker(RedisFanOut, RedisPresence):
    """A :class:`Broker` over one Redis server (``redis://[:password@]host:port/db``).

    Contract beyond :class:`Broker`: ``publish`` raises :class:`BrokerUnavailable` while
    Redis is unreachable and :class:`~.base.StateFull` when a new key would take the
    channel's state over ``state_max_keys``. Members of a gateway that stops refreshing
    its liveness key (crash, ``kill -9``) leave everyone's presence within about
    ``presence_ttl + sweep_interval`` (``sweep_interval`` defaults to ``presence_ttl / 3``).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        history_size: stored messages retained per channel; also the msgId dedupe window.
        state_max_keys: keys of keyed state per channel; more raise :class:`~.base.StateFull`.
        presence_ttl: seconds a gateway's liveness key lives without a refresh.
        key_prefix: prefix of every key and pub/sub channel (``P`` in :mod:`.redis_keys`).
        connect_timeout: bound on connecting, in seconds.
        gateway_id: this gateway's id (default random); 1-64 of ``[A-Za-z0-9_.-]``.
        command_timeout: bound on one command, in seconds.
        sweep_interval: seconds between sweeps of dead gateways (default ``presence_ttl / 3``).
        channel_ttl: seconds a channel's keys live after its last write (None: forever).

    Raises:
        ValueError: an argument is out of range (nothing connects in the constructor).
    """

    def __init__(
        self,
        url: str,
        *,
        history_size: int = 1000,
        state_max_keys: int = 10000,
        presence_ttl: float = 15.0,
        key_prefix: str = "rtw",
        connect_timeout: float = 3.0,
        gateway_id: str | None = None,
        command_timeout: float = 5.0,
        sweep_interval: float | None = None,
        channel_ttl: float | None = None,
    ) -> None:
        super().__init__()
        if history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {history_size}")
        if state_max_keys < 1:
            raise ValueError(f"state_max_keys must be >= 1, got {state_max_keys}")
        if presence_ttl <= 0:
            raise ValueError(f"presence_ttl must be > 0, got {presence_ttl}")
        if channel_ttl is not None and not 0.001 <= channel_ttl < 2**31:
            raise ValueError(f"channel_ttl must be None or seconds >= 0.001, got {channel_ttl!r}")
        if connect_timeout <= 0 or command_timeout <= 0:
            raise ValueError("connect_timeout and command_timeout must be > 0")
        if not key_prefix or any(ch.isspace() for ch in key_prefix):
            raise ValueError("key_prefix must be a non-empty string without whitespace")
        gateway_id = gateway_id or secrets.token_hex(8)
        if not _GATEWAY_ID_RE.match(gateway_id):
            raise ValueError("gateway_id must be 1-64 characters of [A-Za-z0-9_.-]")
        self.url = url
        self.safe_url = safe_redis_url(url)
        self.history_size = history_size
        self.state_max_keys = state_max_keys
        self.presence_ttl = presence_ttl
        self.key_prefix = key_prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.gateway_id = gateway_id
        self.channel_ttl = channel_ttl
        self._keys = KeyLayout(key_prefix, gateway_id)
        # PEXPIRE argument for the scripts ('' = keep): channel keys live this long after a write.
        self._ttl_ms = "" if channel_ttl is None else str(max(1, round(channel_ttl * 1000)))
        self.sweep_interval = sweep_interval if sweep_interval is not None else presence_ttl / 3
        self._redis = None
        self._cmd_conn: CommandConnection | None = None  # the publish script's connection
        self._cmd_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._stats = dict.fromkeys(
            (
                "commands",
                "publishes",
                "messages",
                "broadcasts",
                "duplicates",
                "delivered",
                "reconnects",
                "presence_swept",
            ),
            0,
        )
        self._init_fanout()
        self._init_presence()

    # ------------------------------------------------------------ lifecycle
    def stats(self) -> dict[str, int]:
        """Counters: ``commands`` (Redis commands sent, a script counting as one),
        ``publishes`` (PUBLISH commands caused: exactly one per stored message or broadcast),
        ``messages``, ``broadcasts``, ``duplicates``, ``delivered``, ``reconnects``,
        ``presence_swept`` (members of dead gateways removed by this broker)."""
        return dict(self._stats)

    async def start(self) -> None:
        """Connect (bounded by ``connect_timeout``), register scripts, start tasks.

        Raises:
            BrokerUnavailable: Redis cannot be reached, the URL is malformed, or the broker
                was closed; never hangs.
        """
        if self._closed:
            raise BrokerUnavailable(f"Redis broker for {self.safe_url} is closed; create a new one")
        if self._started:
            return
        try:
            # Commands: one retry lets a pooled socket that died with a restarted server
            # reconnect once; more would turn "Redis is down" into a long hang.
            self._redis = self._make_client(self.command_timeout, 1)
            check_url(self.url)  # what the hot-path connections accept, before anything connects
        except ValueError as exc:  # malformed URL
            raise BrokerUnavailable(f"invalid Redis URL {self.safe_url}: {exc}") from None
        try:
            await asyncio.wait_for(self._redis.ping(), self.connect_timeout)
            await asyncio.wait_for(self._heartbeat(), self.connect_timeout)
        except (*CONNECTION_ERRORS, RedisError, BrokerUnavailable) as exc:
            await self._close_clients()
            raise BrokerUnavailable(f"cannot reach Redis at {self.safe_url}: {exc}") from None
        self._publish_script = self._redis.register_script(script_source("publish"))
        self._snapshot_script = self._redis.register_script(script_source("snapshot"))
        self._position_script = self._redis.register_script(script_source("position"))
        self._gap_script = self._redis.register_script(script_source("gap"))
        self._presence_set_script = self._redis.register_script(script_source("presence_set"))
        self._presence_remove_script = self._redis.register_script(script_source("presence_remove"))
        self._forget_gateway_script = self._redis.register_script(script_source("forget_gateway"))
        self._started = True
        ready = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._reader(ready), name=f"rtw-redis-reader-{self.gateway_id}"),
            asyncio.create_task(self._housekeeping(), name=f"rtw-redis-housekeeping-{self.gateway_id}"),
        ]
        try:
            await asyncio.wait_for(ready, self.connect_timeout)
        except (asyncio.TimeoutError, BrokerUnavailable) as exc:
            await self.close()
            raise BrokerUnavailable(
                f"cannot reach Redis at {self.safe_url}: pub/sub failed ({exc})"
            ) from None

    async def close(self) -> None:
        """Stop tasks, remove this gateway's presence members (broadcasting their leave),
        delete its liveness key and close connections. Idempotent; best effort if Redis is down."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *self._gap_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._gap_tasks.clear()
        self._fail_pending_subscriptions(BrokerUnavailable("broker closed"))
        if self._started and self._redis is not None:
            try:
                await asyncio.wait_for(self._cleanup_own(), self.command_timeout)
            except (*CONNECTION_ERRORS, RedisError, BrokerUnavailable) as exc:
                log.warning("RedisBroker %s: cleanup skipped, Redis unavailable: %s", self.gateway_id, exc)
        await self._close_clients()

    async def _close_clients(self) -> None:
        self._ps_ready = False
        if self._ps_conn is not None:
            self._ps_conn.close()
            self._ps_conn = None
        if self._cmd_conn is not None:
            self._cmd_conn.close()
            self._cmd_conn = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    # ---------------------------------------------------------- publishing
    async def publish(
        self, channel: str, frame: dict[str, Any], *, key: str | None = None, msg_id: str | None = None
    ) -> dict[str, Any]:
        """Store and fan out one frame in one round trip (see the module rules).

        Raises:
            BrokerUnavailable: Redis is unreachable, or the reply was lost (then the message
                may have been stored: resend it with a ``msg_id``).
            StateFull: a new ``key`` would exceed ``state_max_keys`` (nothing stored).
        """
        self._client()
        body_frame = {k: v for k, v in frame.items() if k not in _SERVER_FIELDS}
        body_frame.setdefault("type", "message")
        body_frame.setdefault("channel", channel)
        body_frame.setdefault("timestamp", int(time.time() * 1000))
        body = encode(body_frame)
        is_delete = key is not None and frame.get("data") is None
        trim = "=" if self.history_size < _EXACT_TRIM_BELOW else "~"
        keys = self._publish_keys(channel)
        args = [
            secrets.token_hex(8),
            body,
            self._ps_channel(channel),
            str(self.history_size),
            key if key is not None else "",
            "1" if is_delete else "0",
            msg_id if msg_id is not None else "",
            str(self.state_max_keys),
            trim,
            self._ttl_ms,
            *self._publish_extra_args,
        ]
        async with self._guard("publish"):
            reply = await self._eval_publish(keys, args, idempotent=msg_id is not None)
            result = [v.decode() if isinstance(v, bytes) else v for v in reply]
        status = result[0]
        if status == "dup":
            self._stats["duplicates"] += 1
            earlier: dict[str, Any] = orjson.loads(result[1])
            earlier["duplicate"] = True
            return earlier
        if status == "state_full":
            raise StateFull(
                f"channel {channel!r} state already holds {result[1]} keys (limit {self.state_max_keys})",
            )
        _, sid, offset, epoch = result
        self._stats["publishes"] += 1
        self._stats["messages"] += 1
        out = dict(body_frame)
        out.update(id=sid, eventId=sid, offset=int(offset), epoch=epoch)
        return out

    # What the cluster broker adds to the publish script's call (see lua/publish.lua).
    _publish_extra_args: tuple[str, ...] = ()

    def _publish_keys(self, channel: str) -> list[str]:
        return [self._k(channel, w) for w in CHANNEL_KEYS]

    async def _eval_publish(self, keys: list[str], args: list[str], *, idempotent: bool) -> list[Any]:
        """Run the publish script (EVAL if Redis lost its script cache, e.g. after a restart).

        A broken connection gets one reconnect-and-retry when that cannot store the message
        twice: the command was never sent (the connection was already down), or the publish
        has a msgId (the script dedupes it). A connection lost while a publish without msgId
        awaited its reply is not retried (it may have been stored): the caller hears
        ``unavailable``. A timeout is never retried.
        """
        for attempt in (1, 2):
            try:
                conn = await self._command_connection()
                try:
                    reply: list[Any] = await conn.call(
                        "EVALSHA", self._publish_script.sha, "6", *keys, *args, timeout=self.command_timeout
                    )
                    return reply
                except RespError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
                    reply = await conn.call(
                        "EVAL", script_source("publish"), "6", *keys, *args, timeout=self.command_timeout
                    )
                    return reply
            except (RedisConnectionError, OSError) as exc:
                sent = isinstance(exc, RedisConnectionError) and not isinstance(exc, NotSentError)
                if attempt == 2 or self._closed or (sent and not idempotent):
                    raise
                log.info("RedisBroker %s: publish connection broke (%s); retrying once", self.gateway_id, exc)
        raise AssertionError("unreachable")

    async def _command_connection(self) -> CommandConnection:
        conn = self._cmd_conn
        if conn is not None and conn.is_open:
            return conn
        async with self._cmd_lock:  # one reconnect for all the publishes waiting on it
            conn = self._cmd_conn
            if conn is None or not conn.is_open:
                if self._closed:
                    raise RedisConnectionError("broker closed")
                conn = self._cmd_conn = await open_command(self.url, self.connect_timeout)
            return conn

    async def broadcast(self, channel: str, frame: dict[str, Any]) -> None:
        """Fan out a frame that is not stored: one PUBLISH.

        Raises:
            BrokerUnavailable: Redis is unreachable or the broker is not started.
        """
        self._client()
        await self._broadcast_raw(channel, frame)

    async def snapshot(
        self,
        channel: str,
        *,
        last_event_id: str | None,
        epoch: str | None,
        history: int,
        want_state: bool,
    ) -> SnapshotResult:
        """Catch-up data in one atomic script; see :meth:`Broker.snapshot`.

        An ``last_event_id`` that is not a stream id of this channel (garbage, trimmed,
        or from before an empty restart) yields ``recovered=False`` with state.

        Raises:
            ValueError: ``history`` is negative.
            BrokerUnavailable: Redis is unreachable (after one retry of the read).
        """
        if history < 0:
            raise ValueError(f"history must be >= 0, got {history}")
        self._client()
        asked = last_event_id is not None
        lid = last_event_id if asked and _STREAM_ID_RE.match(last_event_id or "") else ""
        keys = [self._k(channel, w) for w in ("offset", "epoch", "events", "state")]
        # A malformed id cannot be retained: ask with a valid id that matches nothing.
        args: list[EncodableT] = [
            secrets.token_hex(8),
            lid or ("0-0" if asked else ""),
            epoch or "",
            history,
            int(want_state),
            self._ttl_ms,
        ]
        # Idempotent (the script only creates a missing epoch), so retried on a broken connection.
        out = await self._read("snapshot", lambda: self._snapshot_script(keys=keys, args=args))
        cur_epoch, offset, latest, recovered_s, n = out[0], int(out[1]), out[2], out[3], int(out[4])
        events = [orjson.loads(raw) for raw in out[5 : 5 + n]]
        rest = out[5 + n :]
        recovered = None if recovered_s == "" else recovered_s == "1"
        state: dict[str, dict[str, Any]] | None = None
        if want_state or recovered is False:
            state = {rest[i]: orjson.loads(rest[i + 1]) for i in range(0, len(rest), 2)}
        return SnapshotResult(
            channel=channel,
            epoch=cur_epoch,
            offset=offset,
            latest_event_id=latest or None,
            events=events,
            recovered=recovered,
            state=state,
        )
