"""RedisBroker: several gateways share channels, history, state and presence through Redis.

Layout (``P`` is ``key_prefix``, ``{c}`` the channel name; the braces are literal and
double as a Redis Cluster hash tag so one channel's keys share a slot):

* ``P:{c}:offset`` (INCR counter), ``P:{c}:epoch`` (random hex, created when missing),
  ``P:{c}:events`` (stream: history; the stream id *is* the event id),
  ``P:{c}:state`` (hash key -> latest frame), ``P:{c}:msgids`` + ``P:{c}:msgq``
  (hash msgId -> event id and its FIFO, bounded to ``history_size``: the dedupe window),
  ``P:{c}:presence`` (hash clientId -> ``"gw\\njoin_ms\\nmember_json"``);
* ``P:gw:{id}`` liveness key (TTL ``presence_ttl``), ``P:gw:{id}:owned`` (set of the
  (channel, clientId) pairs that gateway added), ``P:gateways`` (set of gateway ids);
* pub/sub channel ``P:ch:{c}`` carries every fan-out frame, already encoded.

Rules of this module:

* A publish is ONE round trip: a Lua script (EVALSHA) dedupes the msgId, checks the
  state bound, INCRs the offset, XADDs, updates state and issues exactly one PUBLISH.
  It goes through a pipelined connection of its own (:mod:`.resp_conn`), not redis-py's
  pool; a broken connection gets one reconnect-and-retry only when that cannot store the
  message twice (it was never sent, or it has a msgId the script dedupes).
  Python encodes the frame without ``id/eventId/offset/epoch``; Lua splices those in
  as text (``{"id":..,"eventId":..,"offset":..,"epoch":..,<rest>``), because the id is
  only known after XADD and because re-encoding user data with Lua's cjson would lose
  number precision. The stream entry stores the frame without its id; readers splice
  it back in the same way.
* Fan-out uses one SUBSCRIBE per attached channel (not PSUBSCRIBE ``P:ch:*``): Redis
  then sends a gateway only the channels it has subscribers for, instead of every
  gateway receiving every channel's traffic.
* One reader task owns the pub/sub connection (:mod:`.resp_conn`, not redis-py: its
  messages are handed to the gateway in the callback that read them). On connection loss
  it reconnects with backoff, resubscribes, and refills the gap of each channel from the
  stream (offsets dedupe what arrives twice; live messages of a channel being refilled
  wait until its refill is delivered), so each gateway delivers a channel's messages in
  offset order without holes while Redis keeps its data. After an empty Redis restart the
  epoch changes, which tells clients their history is gone.
* Presence: each gateway refreshes ``P:gw:{id}`` (TTL ``presence_ttl``) every
  ``presence_ttl / 3`` and sweeps dead gateways every ``sweep_interval``; removal is an
  HDEL inside a script, so of several gateways sweeping one dead member exactly one
  broadcasts its ``presence_leave``. If its own key was lost (stall, empty restart) a
  gateway puts its members back and broadcasts ``presence_join`` for them.
* Redis errors surface as :class:`BrokerUnavailable`; nothing is dropped silently.
  Every command gets redis-py's one reconnect-and-retry on a broken connection (a pooled
  socket that died with a restarted server); idempotent reads (``snapshot``,
  ``presence_members``) get one more round of that before giving up; writes do not.
  Ephemeral broadcasts (not stored) published while a gateway's pub/sub connection is
  down are not refilled: they are at-most-once by design.
* One Redis server (or a primary with replicas behind one URL). The presence scripts
  build gateway key names at run time, so Redis Cluster is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from ...protocol import encode
from .base import Broker, BrokerUnavailable, SnapshotResult, StateFull
from .resp import RespError
from .resp_conn import (
    CommandConnection,
    NotSentError,
    PubSubConnection,
    Push,
    check_url,
    open_command,
    open_pubsub,
)

__all__ = ["RedisBroker", "safe_redis_url"]

log = logging.getLogger(__name__)

_GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
# Server-assigned fields that Lua splices into the encoded frame.
_SERVER_FIELDS = ("id", "eventId", "offset", "epoch")
# Approximate stream trimming (MAXLEN ~) only drops whole radix-tree nodes (100 entries
# by default), so a small history would never be trimmed: trim exactly below this size.
_EXACT_TRIM_BELOW = 1000
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
# Worth one more try for an idempotent read: the socket broke (e.g. a pooled connection
# that died with a restarted server). Timeouts are not retried: Redis may be hung, and a
# retry would double the wait before the client hears ``unavailable``.
_RETRYABLE_ERRORS = (RedisConnectionError, OSError)
_NOT_RETRYABLE_ERRORS = (RedisTimeoutError, TimeoutError)

_T = TypeVar("_T")

# KEYS: offset, epoch, events, state, msgids, msgq
# ARGV: new_epoch, body (frame JSON without server fields), pubsub channel, history_size,
#       key ('' = none), is_delete ('1'/'0'), msg_id ('' = none), state_max_keys, trim ('='/'~'),
#       ttl_ms ('' = keep: channel_ttl, refreshed on every publish)
_PUBLISH_LUA = """
local function full(sid, stored)
  return '{"id":"' .. sid .. '","eventId":"' .. sid .. '",' .. stored
end
if ARGV[7] ~= '' then
  local sid = redis.call('HGET', KEYS[5], ARGV[7])
  if sid then
    local e = redis.call('XRANGE', KEYS[3], sid, sid)
    if e[1] then return {'dup', full(sid, e[1][2][2])} end
  end
end
if ARGV[5] ~= '' and ARGV[6] == '0' and redis.call('HEXISTS', KEYS[4], ARGV[5]) == 0 then
  local n = redis.call('HLEN', KEYS[4])
  if n >= tonumber(ARGV[8]) then return {'state_full', tostring(n)} end
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
local offset = redis.call('INCR', KEYS[1])
local stored = '"offset":' .. offset .. ',"epoch":"' .. epoch .. '",' .. string.sub(ARGV[2], 2)
local sid = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[9], ARGV[4], '*', 'f', stored)
local frame = full(sid, stored)
if ARGV[5] ~= '' then
  if ARGV[6] == '1' then
    redis.call('HDEL', KEYS[4], ARGV[5])
  else
    redis.call('HSET', KEYS[4], ARGV[5], frame)
  end
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[7], sid)
  redis.call('RPUSH', KEYS[6], ARGV[7])
  if redis.call('LLEN', KEYS[6]) > tonumber(ARGV[4]) then
    local old = redis.call('LPOP', KEYS[6])
    redis.call('HDEL', KEYS[5], old)
  end
end
if ARGV[10] ~= '' then
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
end
redis.call('PUBLISH', ARGV[3], frame)
return {'ok', sid, tostring(offset), epoch}
"""

# KEYS: offset, epoch, events, state
# ARGV: new_epoch, last_event_id ('' = none), client epoch ('' = none), history, want_state,
#       ttl_ms ('' = keep: a newly created epoch key expires like the channel's other keys)
# Returns {epoch, offset, latest_id, recovered ('' / '1' / '0'), n_events, events..., state k/v...}
_SNAPSHOT_LUA = """
local function full(e)
  return '{"id":"' .. e[1] .. '","eventId":"' .. e[1] .. '",' .. e[2][2]
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[2], epoch, 'PX', ARGV[6])
  else
    redis.call('SET', KEYS[2], epoch)
  end
end
local offset = redis.call('GET', KEYS[1]) or '0'
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local latest = ''
if newest[1] then latest = newest[1][1] end
local history = tonumber(ARGV[4])
local recovered = ''
local entries = {}
if ARGV[2] ~= '' then
  recovered = '0'
  if ARGV[3] == '' or ARGV[3] == epoch then
    -- the id must still be retained: then everything after it is too
    if redis.call('XRANGE', KEYS[3], ARGV[2], ARGV[2])[1] then
      recovered = '1'
      entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[2], '+')
    end
  end
  if recovered == '0' then
    if history == 0 then
      entries = redis.call('XRANGE', KEYS[3], '-', '+')
    else
      local rev = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', history)
      for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
    end
  end
elseif history > 0 then
  local rev = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', history)
  for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
end
local out = {epoch, offset, latest, recovered, tostring(#entries)}
for _, e in ipairs(entries) do out[#out + 1] = full(e) end
if ARGV[5] == '1' or recovered == '0' then
  local st = redis.call('HGETALL', KEYS[4])
  for _, v in ipairs(st) do out[#out + 1] = v end
end
return out
"""

# KEYS: presence hash, owned set of this gateway
# ARGV: clientId, gateway id, join ms, member JSON, pair, key prefix
# Keeps the first join time of a replaced member, and moves ownership to this gateway.
_PRESENCE_SET_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local t = ARGV[3]
if old then
  local ogw, ot = string.match(old, '^([^\\n]*)\\n([^\\n]*)\\n')
  if ot then t = ot end
  if ogw and ogw ~= ARGV[2] then redis.call('SREM', ARGV[6] .. ':gw:' .. ogw .. ':owned', ARGV[5]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\\n' .. t .. '\\n' .. ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return t
"""

# KEYS: presence hash
# ARGV: clientId, required owner gateway ('' = any), pair, key prefix, only if owner dead ('1'/'0')
# Returns the removed record, or false. HDEL happens once, so only one caller (of many
# gateways sweeping the same dead member) gets the record and broadcasts the leave.
# A sweep re-checks the owner's liveness key here, atomically: an owner that came back
# (and put its members back) between the sweeper's check and this call keeps them.
_PRESENCE_REMOVE_LUA = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local gw = string.match(v, '^([^\\n]*)\\n')
if ARGV[2] ~= '' and gw ~= ARGV[2] then return false end
if ARGV[5] == '1' and gw and redis.call('EXISTS', ARGV[4] .. ':gw:' .. gw) == 1 then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
if gw then redis.call('SREM', ARGV[4] .. ':gw:' .. gw .. ':owned', ARGV[3]) end
return v
"""

# KEYS: liveness key of the dead gateway, its owned set, the gateways set; ARGV: gateway id
# Forget a swept gateway, unless it came back meanwhile.
_FORGET_GATEWAY_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""


def safe_redis_url(url: str) -> str:
    """``scheme://host:port/db`` of ``url`` without user name or password (for messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        db = (parts.path or "/0").lstrip("/") or "0"
        return f"{parts.scheme or 'redis'}://{host}:{port}/{db}"
    except ValueError:
        return "<invalid redis url>"


def _pair(channel: str, client_id: str) -> str:
    return orjson.dumps([channel, client_id]).decode()


def _parse_record(value: str) -> tuple[str, int, dict[str, Any]]:
    """Split a presence record ``gw\\njoin_ms\\nmember_json``."""
    gw, t, member_json = value.split("\n", 2)
    try:
        joined = int(t)
    except ValueError:
        joined = 0
    return gw, joined, orjson.loads(member_json)


class RedisBroker(Broker):
    """A :class:`Broker` over one Redis server (``redis://[:password@]host:port/db``).

    Contract beyond :class:`Broker`: ``publish`` raises :class:`BrokerUnavailable` while
    Redis is unreachable and :class:`~.base.StateFull` when a new key would take the
    channel's state over ``state_max_keys``. Members of a gateway that stops refreshing
    its liveness key (crash, ``kill -9``) leave everyone's presence within about
    ``presence_ttl + sweep_interval`` (``sweep_interval`` defaults to ``presence_ttl / 3``).
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
        # PEXPIRE argument for the scripts ('' = keep): channel keys live this long after a write.
        self._ttl_ms = "" if channel_ttl is None else str(max(1, round(channel_ttl * 1000)))
        self.sweep_interval = sweep_interval if sweep_interval is not None else presence_ttl / 3
        self._ps_idle = min(5.0, max(1.0, presence_ttl / 3))  # pub/sub PING after this much silence
        self._redis: aioredis.Redis | None = None
        self._ps_conn: PubSubConnection | None = None
        self._cmd_conn: CommandConnection | None = None  # the publish script's connection
        self._cmd_lock = asyncio.Lock()
        self._ps_ready_future: asyncio.Future[None] | None = None
        # ps channel -> live payloads that arrived while its gap fill runs (delivered after it)
        self._filling: dict[str, list[bytes]] = {}
        self._ps_ready = False  # pub/sub connection is up and subscribed
        self._attached: set[str] = set()
        self._pending_sub: dict[str, list[asyncio.Future[None]]] = {}
        # channel -> (epoch, offset, event id) of the newest message this gateway delivered,
        # or (before the first one) of the channel when it was attached: the gap-fill start.
        self._last_seen: dict[str, tuple[str | None, int, str | None]] = {}
        self._needs_gap_fill: set[str] = set()
        self._own: dict[tuple[str, str], dict[str, Any]] = {}  # presence members added here
        # removals that failed while Redis was unreachable; retried by housekeeping
        self._pending_removals: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False
        self._stats: dict[str, int] = dict.fromkeys(
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

    # ----------------------------------------------------------------- keys
    def _k(self, channel: str, what: str) -> str:
        return f"{self.key_prefix}:{{{channel}}}:{what}"

    def _ps_channel(self, channel: str) -> str:
        return f"{self.key_prefix}:ch:{channel}"

    def _gw_key(self, gateway_id: str) -> str:
        return f"{self.key_prefix}:gw:{gateway_id}"

    def _owned_key(self, gateway_id: str) -> str:
        return f"{self.key_prefix}:gw:{gateway_id}:owned"

    @property
    def _gateways_key(self) -> str:
        return f"{self.key_prefix}:gateways"

    @property
    def _control_channel(self) -> str:
        # Always subscribed, so the pub/sub connection exists even with no channel attached.
        return f"{self.key_prefix}:ctl:{self.gateway_id}"

    # ------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up (fan-out is flowing)."""
        return self._ps_ready

    def stats(self) -> dict[str, int]:
        """Counters: ``commands`` (Redis commands sent, a script counting as one),
        ``publishes`` (PUBLISH commands caused: exactly one per stored message or broadcast),
        ``messages``, ``broadcasts``, ``duplicates``, ``delivered``, ``reconnects``,
        ``presence_swept`` (members of dead gateways removed by this broker)."""
        return dict(self._stats)

    def _client(self) -> aioredis.Redis:
        if self._redis is None or self._closed:
            raise BrokerUnavailable(f"Redis broker for {self.safe_url} is not started")
        return self._redis

    @contextlib.asynccontextmanager
    async def _guard(self, what: str, commands: int = 1) -> AsyncIterator[None]:
        """Count commands and turn connection trouble into :class:`BrokerUnavailable`."""
        self._stats["commands"] += commands
        try:
            yield
        except _CONNECTION_ERRORS as exc:
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
        except _CONNECTION_ERRORS as exc:
            if not isinstance(exc, _RETRYABLE_ERRORS) or isinstance(exc, _NOT_RETRYABLE_ERRORS):
                raise BrokerUnavailable(
                    f"Redis at {self.safe_url} unavailable during {what}: {exc}"
                ) from None
            log.info("RedisBroker %s: %s failed (%s); retrying once", self.gateway_id, what, exc)
        async with self._guard(what, commands):
            return await call()

    def _make_client(self, socket_timeout: float | None, retries: int) -> aioredis.Redis:
        # The asyncio Retry: redis-py's sync ``redis.retry.Retry`` given to an asyncio client
        # returns the un-awaited coroutine from its loop, so it silently never retries.
        # ``retries=0`` also catches nothing, so redis-py never reconnects inside a failed call.
        errors: tuple[type[RedisError], ...] = (RedisConnectionError,) if retries else ()
        return aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries, supported_errors=errors),
        )

    async def start(self) -> None:
        """Connect (bounded by ``connect_timeout``), register scripts, start tasks.

        Raises :class:`BrokerUnavailable` if Redis cannot be reached; never hangs.
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
        except (*_CONNECTION_ERRORS, RedisError, BrokerUnavailable) as exc:
            await self._close_clients()
            raise BrokerUnavailable(f"cannot reach Redis at {self.safe_url}: {exc}") from None
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._snapshot_script = self._redis.register_script(_SNAPSHOT_LUA)
        self._presence_set_script = self._redis.register_script(_PRESENCE_SET_LUA)
        self._presence_remove_script = self._redis.register_script(_PRESENCE_REMOVE_LUA)
        self._forget_gateway_script = self._redis.register_script(_FORGET_GATEWAY_LUA)
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
        for futures in self._pending_sub.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(BrokerUnavailable("broker closed"))
        self._pending_sub.clear()
        if self._started and self._redis is not None:
            try:
                await asyncio.wait_for(self._cleanup_own(), self.command_timeout)
            except (*_CONNECTION_ERRORS, RedisError, BrokerUnavailable) as exc:
                log.warning("RedisBroker %s: cleanup skipped, Redis unavailable: %s", self.gateway_id, exc)
        await self._close_clients()

    async def _cleanup_own(self) -> None:
        redis_ = self._client_unchecked()
        for channel, client_id in [*self._own, *self._pending_removals]:
            removed = await self._remove_member(channel, client_id, self.gateway_id)
            if removed is not None:
                await self._broadcast_raw(channel, _presence_frame("presence_leave", channel, removed))
        self._own.clear()
        self._pending_removals.clear()
        async with self._guard("close", 3):
            pipe = redis_.pipeline(transaction=False)
            pipe.delete(self._gw_key(self.gateway_id), self._owned_key(self.gateway_id))
            pipe.srem(self._gateways_key, self.gateway_id)
            await pipe.execute()

    def _client_unchecked(self) -> aioredis.Redis:
        assert self._redis is not None
        return self._redis

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

    # -------------------------------------------------------------- fan-out
    async def attach(self, channel: str) -> None:
        """Subscribe ``channel``; returns once Redis confirmed the subscription, so every
        message published afterwards reaches the listener. Idempotent."""
        if channel in self._attached:
            return
        self._client()
        if not self._ps_ready or self._ps_conn is None:
            raise BrokerUnavailable(f"Redis at {self.safe_url} unavailable: pub/sub reconnecting")
        # Added before subscribing so that a reconnect racing with us resubscribes it too.
        self._attached.add(channel)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_sub.setdefault(channel, []).append(fut)
        try:
            # Where the channel stands *before* subscribing: after a later pub/sub outage
            # the reader refills from here if no message arrived meanwhile. Reading it
            # first can only cause a re-delivery (caught by offsets), never a loss.
            async with self._guard("attach", 3):
                pipe = self._client_unchecked().pipeline(transaction=True)
                pipe.get(self._k(channel, "epoch"))
                pipe.get(self._k(channel, "offset"))
                pipe.xrevrange(self._k(channel, "events"), count=1)
                epoch, offset, newest = await pipe.execute()
            self._last_seen.setdefault(channel, (epoch, int(offset or 0), newest[0][0] if newest else None))
            async with self._guard("attach"):
                if self._ps_conn is None:
                    raise RedisConnectionError("pub/sub reconnecting")
                self._ps_conn.subscribe(self._ps_channel(channel))
                await asyncio.wait_for(asyncio.shield(fut), self.command_timeout)
        except BaseException:
            self._attached.discard(channel)
            self._last_seen.pop(channel, None)
            futures = self._pending_sub.get(channel, [])
            if fut in futures:
                futures.remove(fut)
            raise

    async def detach(self, channel: str) -> None:
        """Unsubscribe ``channel``. Idempotent; a Redis outage is not an error here
        (the subscription dies with the connection and is not restored)."""
        if channel not in self._attached:
            return
        self._attached.discard(channel)
        self._last_seen.pop(channel, None)
        self._needs_gap_fill.discard(channel)
        self._filling.pop(self._ps_channel(channel), None)
        if self._ps_ready and self._ps_conn is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
                self._stats["commands"] += 1
                self._ps_conn.unsubscribe(self._ps_channel(channel))

    async def _reader(self, ready: asyncio.Future[None]) -> None:
        """Own the pub/sub connection: connect, subscribe, check liveness, reconnect with backoff.

        Messages are delivered by :meth:`_on_push` as they are read; this task only waits.
        """
        backoff = 0.05
        first = True
        self._ps_ready_future = ready
        while not self._closed:
            conn: PubSubConnection | None = None
            try:
                conn = await open_pubsub(self.url, self._on_push, self.connect_timeout)
                self._ps_conn = conn
                self._filling = {}
                self._stats["commands"] += 1
                conn.subscribe(self._control_channel, *(self._ps_channel(c) for c in self._attached))
                # Every attached channel is refilled from the stream once its subscription is
                # confirmed (see _on_subscribed); the first connection has no gap.
                self._needs_gap_fill = set(self._attached)
                if not first:
                    self._stats["reconnects"] += 1
                    log.info("RedisBroker %s: pub/sub reconnected to %s", self.gateway_id, self.safe_url)
                first = False
                unanswered = 0
                while True:
                    reads = conn.reads
                    try:
                        await asyncio.wait_for(asyncio.shield(conn.closed), self._ps_idle)
                    except asyncio.TimeoutError:
                        pass
                    else:
                        raise RedisConnectionError("pub/sub connection closed")
                    if conn.reads != reads:  # something arrived during the wait: alive
                        unanswered = 0
                        backoff = 0.05
                        continue
                    # Quiet: PING it, so a silently dead TCP peer is noticed too.
                    unanswered += 1
                    if unanswered > 1:
                        raise RedisConnectionError("pub/sub connection did not answer PING")
                    conn.ping()
            except asyncio.CancelledError:
                if conn is not None:
                    conn.close()
                raise
            except (*_CONNECTION_ERRORS, RedisError, BrokerUnavailable, ValueError) as exc:
                if conn is not None:
                    conn.abort(exc)
                self._ps_ready = False
                self._filling = {}
                for channel, futures in list(self._pending_sub.items()):
                    for fut in futures:
                        if not fut.done():
                            fut.set_exception(
                                BrokerUnavailable(f"Redis at {self.safe_url} unavailable: {exc}")
                            )
                    self._pending_sub.pop(channel, None)
                if self._closed:
                    return
                log.warning(
                    "RedisBroker %s: pub/sub to %s lost (%s); retrying in %.2fs",
                    self.gateway_id,
                    self.safe_url,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
                backoff = min(backoff * 2, 2.0)

    def _on_push(self, item: Push) -> None:
        """Pub/sub connection callback, one push at a time, in the order Redis sent them."""
        kind = item[0]
        if kind == b"message" and len(item) == 3:
            ps_channel = item[1].decode()
            payload: bytes = item[2]
            held = self._filling.get(ps_channel)
            if held is not None:
                held.append(payload)  # its gap fill is running: deliver after it, in order
            else:
                self._on_message(ps_channel, payload)
        elif kind == b"subscribe" and len(item) == 3:
            self._on_subscribed(item[1].decode())
        # unsubscribe confirmations and PONGs only prove liveness (reads)

    def _on_subscribed(self, ps_channel: str) -> None:
        if ps_channel == self._control_channel:
            self._ps_ready = True
            ready = self._ps_ready_future
            if ready is not None and not ready.done():
                ready.set_result(None)
            return
        channel = ps_channel[len(self._ps_channel("")) :]
        if channel in self._needs_gap_fill:
            self._needs_gap_fill.discard(channel)
            self._filling[ps_channel] = []
            conn = self._ps_conn
            task = asyncio.get_running_loop().create_task(self._refill(channel, ps_channel, conn))
            self._gap_tasks.add(task)
            task.add_done_callback(self._gap_tasks.discard)
            return
        self._confirm(channel)

    async def _refill(self, channel: str, ps_channel: str, conn: PubSubConnection | None) -> None:
        """Gap fill for one channel, then the live messages held meanwhile, then confirm."""
        try:
            await self._fill_gap(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reader reconnects and refills again from _last_seen
            if conn is not None and conn is self._ps_conn:
                conn.abort(exc)
            return
        if conn is not self._ps_conn:
            return  # that connection died meanwhile; the new one refills on its own
        for payload in self._filling.pop(ps_channel, []):
            self._on_message(ps_channel, payload)
        self._confirm(channel)

    def _confirm(self, channel: str) -> None:
        for fut in self._pending_sub.pop(channel, []):
            if not fut.done():
                fut.set_result(None)

    async def _fill_gap(self, channel: str) -> None:
        """Deliver messages stored while the pub/sub connection was down.

        Same epoch: the events after the last one delivered. Epoch changed (Redis restarted
        empty, or the channel was new): every retained event, since all of them are newer
        than anything delivered before; their new epoch tells clients history was reset.
        """
        seen = self._last_seen.get(channel)
        if seen is None:
            return
        epoch, _, last_id = seen
        events_key = self._k(channel, "events")
        redis_ = self._client_unchecked()
        async with self._guard("gap fill", 2):
            pipe = redis_.pipeline(transaction=True)
            pipe.get(self._k(channel, "epoch"))
            pipe.xrange(events_key, min=f"({last_id}" if last_id else "-", max="+")
            current_epoch, entries = await pipe.execute()
        if current_epoch is None:
            return  # nothing stored since (e.g. Redis restarted empty and is still unused)
        if current_epoch != epoch:
            async with self._guard("gap fill"):
                entries = await redis_.xrange(events_key, min="-", max="+")
        for sid, fields in entries:
            self._on_message(self._ps_channel(channel), _splice_id(sid, fields["f"]).encode())

    def _on_message(self, ps_channel: str, payload: bytes) -> None:
        prefix = self._ps_channel("")
        if not ps_channel.startswith(prefix):
            return
        channel = ps_channel[len(prefix) :]
        if channel not in self._attached:
            return
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.error("RedisBroker %s: dropped non-JSON frame on %s", self.gateway_id, ps_channel)
            return
        if not isinstance(frame, dict):
            log.error("RedisBroker %s: dropped non-object frame on %s", self.gateway_id, ps_channel)
            return
        offset = frame.get("offset")
        epoch = frame.get("epoch")
        if frame.get("type") == "message" and isinstance(offset, int) and isinstance(epoch, str):
            seen = self._last_seen.get(channel)
            if seen is not None and seen[0] == epoch and offset <= seen[1]:
                return  # already delivered (gap fill and live pub/sub overlap)
            self._last_seen[channel] = (epoch, offset, str(frame.get("id")))
        self._stats["delivered"] += 1
        try:
            self.deliver(channel, frame, payload)
        except Exception:  # a listener bug must not kill fan-out for every channel
            log.exception("RedisBroker %s: listener failed on channel %r", self.gateway_id, channel)

    # ---------------------------------------------------------- publishing
    async def publish(
        self, channel: str, frame: dict[str, Any], *, key: str | None = None, msg_id: str | None = None
    ) -> dict[str, Any]:
        """Store and fan out one frame in one round trip (see module docstring)."""
        self._client()
        body_frame = {k: v for k, v in frame.items() if k not in _SERVER_FIELDS}
        body_frame.setdefault("type", "message")
        body_frame.setdefault("channel", channel)
        body_frame.setdefault("timestamp", int(time.time() * 1000))
        body = encode(body_frame)
        is_delete = key is not None and frame.get("data") is None
        trim = "=" if self.history_size < _EXACT_TRIM_BELOW else "~"
        keys = [self._k(channel, w) for w in ("offset", "epoch", "events", "state", "msgids", "msgq")]
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
                        "EVAL", _PUBLISH_LUA, "6", *keys, *args, timeout=self.command_timeout
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
        """Fan out a frame that is not stored: one PUBLISH."""
        self._client()
        await self._broadcast_raw(channel, frame)

    async def _broadcast_raw(self, channel: str, frame: dict[str, Any]) -> None:
        async with self._guard("broadcast"):
            await self._client_unchecked().publish(self._ps_channel(channel), encode(frame))
        self._stats["publishes"] += 1
        self._stats["broadcasts"] += 1

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

    # ------------------------------------------------------------- presence
    async def presence_set(self, channel: str, member: dict[str, Any]) -> None:
        """Insert or replace ``member`` (owned by this gateway; first join time is kept)."""
        client_id = member.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("presence member needs a non-empty string 'clientId'")
        self._client()
        await self._store_member(channel, client_id, member)
        self._own[(channel, client_id)] = member
        self._pending_removals.discard((channel, client_id))

    async def _store_member(self, channel: str, client_id: str, member: dict[str, Any]) -> None:
        args: list[EncodableT] = [
            client_id,
            self.gateway_id,
            int(time.time() * 1000),
            encode(member),
            _pair(channel, client_id),
            self.key_prefix,
        ]
        async with self._guard("presence update"):
            await self._presence_set_script(
                keys=[self._k(channel, "presence"), self._owned_key(self.gateway_id)], args=args
            )

    async def presence_remove(self, channel: str, client_id: str) -> dict[str, Any] | None:
        """Remove a member whichever gateway added it; return it or None."""
        self._client()
        self._own.pop((channel, client_id), None)
        try:
            removed = await self._remove_member(channel, client_id, "")
        except BrokerUnavailable:
            # Never leave a ghost: housekeeping removes it (and broadcasts the leave) later.
            self._pending_removals.add((channel, client_id))
            raise
        self._pending_removals.discard((channel, client_id))
        return removed

    async def _remove_member(
        self, channel: str, client_id: str, owner: str, *, only_if_dead: bool = False
    ) -> dict[str, Any] | None:
        async with self._guard("presence remove"):
            value = await self._presence_remove_script(
                keys=[self._k(channel, "presence")],
                args=[client_id, owner, _pair(channel, client_id), self.key_prefix, int(only_if_dead)],
            )
        if not value:
            return None
        return _parse_record(value)[2]

    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        """Live members in join order. Members of gateways whose liveness key expired are
        removed here (and their ``presence_leave`` broadcast, once across all gateways)."""
        redis_ = self._client()
        # decode_responses=True (see _make_client): the reply is str -> str, although redis-py
        # annotates every reply as bytes | str whatever the client's mode.
        raw = cast(
            "dict[str, str]",
            await self._read("presence members", lambda: redis_.hgetall(self._k(channel, "presence"))),
        )
        records: list[tuple[int, str, str, dict[str, Any]]] = []
        for client_id, value in raw.items():
            try:
                gw, joined, member = _parse_record(value)
            except (ValueError, orjson.JSONDecodeError):
                log.error("RedisBroker: malformed presence record for %r on %r", client_id, channel)
                continue
            records.append((joined, client_id, gw, member))
        others = sorted({gw for _, _, gw, _ in records if gw != self.gateway_id})
        dead = set(await self._dead_gateways(others))
        live: list[tuple[int, str, str, dict[str, Any]]] = []
        for rec in records:
            if rec[2] in dead:
                await self._sweep_member(channel, rec[1], rec[2])
            else:
                live.append(rec)
        live.sort(key=lambda r: (r[0], r[1]))
        return [r[3] for r in live]

    async def _dead_gateways(self, gateway_ids: Iterable[str]) -> list[str]:
        ids = list(gateway_ids)
        if not ids:
            return []

        async def check() -> list[Any]:
            pipe = self._client_unchecked().pipeline(transaction=False)
            for gw in ids:
                pipe.exists(self._gw_key(gw))
            return await pipe.execute()

        alive = await self._read("gateway liveness", check, len(ids))
        return [gw for gw, ok in zip(ids, alive, strict=True) if not ok]

    async def _sweep_member(self, channel: str, client_id: str, gateway_id: str) -> None:
        removed = await self._remove_member(channel, client_id, gateway_id, only_if_dead=True)
        if removed is not None:
            self._stats["presence_swept"] += 1
            await self._broadcast_raw(channel, _presence_frame("presence_leave", channel, removed))

    # ---------------------------------------------------------- housekeeping
    async def _heartbeat(self) -> None:
        """Refresh this gateway's liveness key; restore its members if the key was lost
        (expired while stalled, or Redis restarted empty)."""
        redis_ = self._client_unchecked()
        async with self._guard("liveness refresh", 2):
            pipe = redis_.pipeline(transaction=False)
            pipe.set(self._gw_key(self.gateway_id), "1", px=int(self.presence_ttl * 1000), get=True)
            pipe.sadd(self._gateways_key, self.gateway_id)
            previous, _ = await pipe.execute()
        if previous is None and self._own:
            for (channel, client_id), member in list(self._own.items()):
                await self._store_member(channel, client_id, member)
                await self._broadcast_raw(channel, _presence_frame("presence_join", channel, member))

    async def _retry_removals(self) -> None:
        for channel, client_id in list(self._pending_removals):
            if (channel, client_id) in self._own:  # re-joined meanwhile
                self._pending_removals.discard((channel, client_id))
                continue
            removed = await self._remove_member(channel, client_id, self.gateway_id)
            self._pending_removals.discard((channel, client_id))
            if removed is not None:
                await self._broadcast_raw(channel, _presence_frame("presence_leave", channel, removed))

    async def _sweep_dead_gateways(self) -> None:
        redis_ = self._client_unchecked()
        async with self._guard("sweep"):
            # decode_responses=True: members are str (redis-py annotates them bytes | str).
            ids = cast("set[str]", await redis_.smembers(self._gateways_key))
        for gw in await self._dead_gateways(sorted(i for i in ids if i != self.gateway_id)):
            async with self._guard("sweep"):
                pairs = await redis_.smembers(self._owned_key(gw))
            for pair in pairs:
                try:
                    channel, client_id = orjson.loads(pair)
                except (orjson.JSONDecodeError, ValueError):
                    continue
                await self._sweep_member(channel, client_id, gw)
            async with self._guard("sweep"):
                await self._forget_gateway_script(
                    keys=[self._gw_key(gw), self._owned_key(gw), self._gateways_key], args=[gw]
                )

    async def _housekeeping(self) -> None:
        """Refresh liveness at least every ``presence_ttl / 3``; sweep every ``sweep_interval``."""
        tick = min(self.presence_ttl / 3, self.sweep_interval)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_interval
        while not self._closed:
            await asyncio.sleep(tick)
            try:
                await self._heartbeat()
                await self._retry_removals()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval
                    await self._sweep_dead_gateways()
            except asyncio.CancelledError:
                raise
            except (BrokerUnavailable, RedisError) as exc:
                log.warning("RedisBroker %s: housekeeping failed: %s", self.gateway_id, exc)


def _presence_frame(kind: str, channel: str, member: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "channel": channel, "member": member}


def _splice_id(sid: str, stored: str) -> str:
    """Rebuild a full frame from a stream entry (the same splice the Lua scripts do)."""
    return f'{{"id":"{sid}","eventId":"{sid}",{stored}'
