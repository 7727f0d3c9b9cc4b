"""Fan-out of the Redis broker: the pub/sub reader, attach/detach, and the gap refill.

Rules of this module:

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
* Ephemeral broadcasts (not stored) published while a gateway's pub/sub connection is
  down are not refilled: they are at-most-once by design.
* A listener that raises is logged and fan-out goes on: one bad handler must not stop
  delivery for every channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .base import BrokerUnavailable
from .redis_base import CONNECTION_ERRORS, RedisBrokerBase, log
from .redis_keys import splice_id
from .resp_conn import PubSubConnection, Push, open_pubsub

__all__ = ["RedisFanOut"]


class RedisFanOut(RedisBrokerBase):
    """The fan-out part of :class:`~.redis.RedisBroker` (see the module rules)."""

    _ps_idle: float  # pub/sub PING after this much silence
    _ps_conn: PubSubConnection | None
    _ps_ready_future: asyncio.Future[None] | None
    _ps_ready: bool  # pub/sub connection is up and subscribed
    # ps channel -> live payloads that arrived while its gap fill runs (delivered after it)
    _filling: dict[str, list[bytes]]
    _attached: set[str]
    _pending_sub: dict[str, list[asyncio.Future[None]]]
    # channel -> (epoch, offset, event id) of the newest message this gateway delivered,
    # or (before the first one) of the channel when it was attached: the gap-fill start.
    _last_seen: dict[str, tuple[str | None, int, str | None]]
    _needs_gap_fill: set[str]
    _gap_tasks: set[asyncio.Task[None]]

    def _init_fanout(self) -> None:
        self._ps_idle = min(5.0, max(1.0, self.presence_ttl / 3))
        self._ps_conn = None
        self._ps_ready_future = None
        self._ps_ready = False
        self._filling = {}
        self._attached = set()
        self._pending_sub = {}
        self._last_seen = {}
        self._needs_gap_fill = set()
        self._gap_tasks = set()

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up (fan-out is flowing)."""
        return self._ps_ready

    def _fail_pending_subscriptions(self, error: BrokerUnavailable) -> None:
        for futures in self._pending_sub.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(error)
        self._pending_sub.clear()

    async def attach(self, channel: str) -> None:
        """Subscribe ``channel``; returns once Redis confirmed the subscription, so every
        message published afterwards reaches the listener. Idempotent.

        Raises:
            BrokerUnavailable: Redis is unreachable or the pub/sub connection is reconnecting.
        """
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
            with contextlib.suppress(*CONNECTION_ERRORS, RedisError):
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
                conn.subscribe(self._keys.control, *(self._ps_channel(c) for c in self._attached))
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
            except (*CONNECTION_ERRORS, RedisError, BrokerUnavailable, ValueError) as exc:
                if conn is not None:
                    conn.abort(exc)
                self._ps_ready = False
                self._filling = {}
                self._fail_pending_subscriptions(
                    BrokerUnavailable(f"Redis at {self.safe_url} unavailable: {exc}")
                )
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
        if ps_channel == self._keys.control:
            self._ps_ready = True
            ready = self._ps_ready_future
            if ready is not None and not ready.done():
                ready.set_result(None)
            return
        channel = self._keys.channel_of(ps_channel)
        if channel is None:
            return
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
            self._on_message(self._ps_channel(channel), splice_id(sid, fields["f"]).encode())

    def _on_message(self, ps_channel: str, payload: bytes) -> None:
        channel = self._keys.channel_of(ps_channel)
        if channel is None or channel not in self._attached:
            return
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.error("RedisBroker %s: dropped non-JSON frame on %s", self.gateway_id, ps_channel)
            return
        if not isinstance(frame, dict):
            log.error("RedisBroker %s: dropped non-object frame on %s", self.gateway_id, ps_channel)
            return
        if not self._first_time(channel, frame):
            return  # already delivered (gap fill and live pub/sub overlap)
        self._stats["delivered"] += 1
        try:
            self.deliver(channel, frame, payload)
        except Exception:  # a listener bug must not kill fan-out for every channel
            log.exception("RedisBroker %s: listener failed on channel %r", self.gateway_id, channel)

    def _first_time(self, channel: str, frame: dict[str, Any]) -> bool:
        """False for a stored message this gateway already delivered (by epoch and offset);
        records the newest one delivered. Frames that are not stored messages always pass."""
        offset = frame.get("offset")
        epoch = frame.get("epoch")
        if frame.get("type") == "message" and isinstance(offset, int) and isinstance(epoch, str):
            seen = self._last_seen.get(channel)
            if seen is not None and seen[0] == epoch and offset <= seen[1]:
                return False
            self._last_seen[channel] = (epoch, offset, str(frame.get("id")))
        return True
