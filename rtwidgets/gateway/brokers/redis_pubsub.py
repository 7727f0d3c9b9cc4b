"""Fan-out of the Redis broker: the pub/sub reader, attach/detach, and the gap refill.

Rules of this module:

* Fan-out uses one SUBSCRIBE per attached channel (not PSUBSCRIBE ``P:ch:*``): Redis
  then sends a gateway only the channels it has subscribers for, instead of every
  gateway receiving every channel's traffic.
* One reader task owns the pub/sub connection (:mod:`.resp_conn`, not redis-py: its
  messages are handed to the gateway in the callback that read them). On connection loss
  it reconnects with backoff, resubscribes, and refills the gap of each channel from the
  stream, so each gateway delivers a channel's messages in offset order without holes
  while Redis keeps its data. After an empty Redis restart the epoch changes, which tells
  clients their history is gone.
* The ordering is not decided here: each attached channel has one sans-I/O
  :class:`~rtwidgets.core.catchup.CatchUp` for its lifetime. It holds the live messages
  while the channel's gap is read, then outputs the read and the held messages, each
  (epoch, offset) once; this module only feeds it (live pushes, the stream read) and
  delivers what it outputs. What a dead connection's refill held is discarded: those are
  stored messages the next refill reads again (ephemeral ones are lost, as above).
* Ephemeral broadcasts (not stored) published while a gateway's pub/sub connection is
  down are not refilled: they are at-most-once by design.
* A listener that raises is logged and fan-out goes on: one bad handler must not stop
  delivery for every channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...core.catchup import CatchUp, Deliver, Position, stream_position
from .base import BrokerUnavailable
from .redis_base import CONNECTION_ERRORS, RedisBrokerBase, log
from .redis_keys import splice_id
from .resp_conn import PubSubConnection, Push, open_pubsub

__all__ = ["RedisFanOut"]


class ChannelFeed:
    """One attached channel as this gateway receives it: its catch-up core and where a gap
    fill starts.

    ``fill_from`` is ``(epoch, stream id)`` of the newest message delivered or, before the
    first one, of the channel when it was attached; None while not known (nothing to refill
    from). ``ticket`` is the :meth:`CatchUp.hold` ticket of the refill in flight.
    """

    __slots__ = ("catchup", "fill_from", "ticket")

    def __init__(self) -> None:
        self.catchup = CatchUp()
        self.fill_from: tuple[str | None, str | None] | None = None
        self.ticket: int | None = None

    def attached_at(self, epoch: str | None, offset: int, newest_id: str | None) -> None:
        """Where the channel stood when it was attached (read before subscribing). Kept only
        if nothing newer is known: a message delivered meanwhile is a later start."""
        if self.fill_from is None:
            self.fill_from = (epoch, newest_id)
        if self.catchup.position is None and not self.catchup.holding:
            self.catchup = CatchUp(Position(epoch, offset))

    def hold(self) -> None:
        """A refill starts: live messages wait for it (a refill in flight is superseded)."""
        self.ticket = self.catchup.hold()

    def drop_held(self) -> None:
        """The pub/sub connection is gone: what its refill held is read again by the next one."""
        self.catchup.discard()
        self.ticket = None


class RedisFanOut(RedisBrokerBase):
    """The fan-out part of :class:`~.redis.RedisBroker` (see the module rules)."""

    _ps_idle: float  # pub/sub PING after this much silence
    _ps_conn: PubSubConnection | None
    _ps_ready_future: asyncio.Future[None] | None
    _ps_ready: bool  # pub/sub connection is up and subscribed
    _attached: dict[str, ChannelFeed]  # channel -> its feed, while attached
    _pending_sub: dict[str, list[asyncio.Future[None]]]
    _needs_gap_fill: set[str]
    _gap_tasks: set[asyncio.Task[None]]

    def _init_fanout(self) -> None:
        self._ps_idle = min(5.0, max(1.0, self.presence_ttl / 3))
        self._ps_conn = None
        self._ps_ready_future = None
        self._ps_ready = False
        self._attached = {}
        self._pending_sub = {}
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
        self._check_fanout_ready()
        # Added before subscribing so that a reconnect racing with us resubscribes it too.
        feed = self._attached[channel] = ChannelFeed()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_sub.setdefault(channel, []).append(fut)
        try:
            # Where the channel stands *before* subscribing: after a later pub/sub outage
            # the reader refills from here if no message arrived meanwhile. Reading it
            # first can only cause a re-delivery (caught by offsets), never a loss.
            # One script, not a MULTI pipeline: redis-py's cluster client runs a transaction
            # pipeline's commands through asyncio.run() in a thread of its own, which blocks
            # this loop and binds the client's locks to that thread's loop (seen after a
            # failover as "Lock ... is bound to a different event loop").
            keys = [self._k(channel, w) for w in ("epoch", "offset", "events")]
            async with self._guard("attach"):
                epoch, offset, newest = await self._position_script(keys=keys)
            feed.attached_at(epoch, int(offset or 0), newest or None)
            async with self._guard("attach"):
                await self._send_subscribe(channel)
                await asyncio.wait_for(asyncio.shield(fut), self.command_timeout)
        except BaseException:
            if self._attached.get(channel) is feed:
                del self._attached[channel]
            futures = self._pending_sub.get(channel, [])
            if fut in futures:
                futures.remove(fut)
            raise

    async def detach(self, channel: str) -> None:
        """Unsubscribe ``channel``. Idempotent; a Redis outage is not an error here
        (the subscription dies with the connection and is not restored)."""
        if channel not in self._attached:
            return
        self._attached.pop(channel).drop_held()
        self._needs_gap_fill.discard(channel)
        self._send_unsubscribe(channel)

    # Hooks of the subscription transport (the cluster broker routes each channel to its shard).
    def _check_fanout_ready(self) -> None:
        """Raise :class:`BrokerUnavailable` when no subscription can be sent now."""
        if not self._ps_ready or self._ps_conn is None:
            raise BrokerUnavailable(f"Redis at {self.safe_url} unavailable: pub/sub reconnecting")

    async def _send_subscribe(self, channel: str) -> None:
        """Send ``channel``'s subscription (its confirmation comes as a push)."""
        if self._ps_conn is None:
            raise RedisConnectionError("pub/sub reconnecting")
        self._ps_conn.subscribe(self._ps_channel(channel))

    def _send_unsubscribe(self, channel: str) -> None:
        """Drop ``channel``'s subscription; a connection that is down needs nothing."""
        if self._ps_ready and self._ps_conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS, RedisError):
                self._stats["commands"] += 1
                self._ps_conn.unsubscribe(self._ps_channel(channel))

    def _subscription_conn(self, channel: str) -> PubSubConnection | None:
        """The connection that carries ``channel``'s subscription now."""
        return self._ps_conn

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
                self._drop_held()
                self._stats["commands"] += 1
                conn.subscribe(self._keys.control, *(self._ps_channel(c) for c in self._attached))
                # Every attached channel is refilled from the stream once its subscription is
                # confirmed (see _on_subscribed); the first connection has no gap.
                self._needs_gap_fill = set(self._attached)
                if not first:
                    self._stats["reconnects"] += 1
                    log.info("RedisBroker %s: pub/sub reconnected to %s", self.gateway_id, self.safe_url)
                first = False

                def alive() -> None:
                    nonlocal backoff
                    backoff = 0.05

                await self._watch(conn, alive)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.close()
                raise
            except (*CONNECTION_ERRORS, RedisError, BrokerUnavailable, ValueError) as exc:
                if conn is not None:
                    conn.abort(exc)
                self._ps_ready = False
                self._drop_held()
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

    async def _watch(self, conn: PubSubConnection, alive: Callable[[], None]) -> None:
        """Return never: raise ``RedisConnectionError`` once ``conn`` closed or stopped answering.

        ``alive()`` is called whenever something arrived during a wait; a quiet connection is
        PINGed, so a silently dead TCP peer is noticed too.
        """
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
                alive()
                continue
            unanswered += 1
            if unanswered > 1:
                raise RedisConnectionError("pub/sub connection did not answer PING")
            conn.ping()

    def _drop_held(self) -> None:
        for feed in self._attached.values():
            feed.drop_held()

    def _on_push(self, item: Push) -> None:
        """Pub/sub connection callback, one push at a time, in the order Redis sent them."""
        kind = item[0]
        if kind == b"message" and len(item) == 3:
            self._on_message(item[1].decode(), item[2])
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
        feed = self._attached.get(channel)
        if feed is not None and channel in self._needs_gap_fill:
            self._needs_gap_fill.discard(channel)
            feed.hold()  # from this push on, the channel's live messages wait for the refill
            conn = self._subscription_conn(channel)
            task = asyncio.get_running_loop().create_task(self._refill(channel, conn))
            self._gap_tasks.add(task)
            task.add_done_callback(self._gap_tasks.discard)
            return
        self._confirm(channel)

    async def _refill(self, channel: str, conn: PubSubConnection | None) -> None:
        """Gap fill for one channel (which also releases the live messages held meanwhile),
        then confirm its subscription."""
        try:
            await self._fill_gap(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reader reconnects and refills again from fill_from
            if conn is not None and conn is self._subscription_conn(channel):
                conn.abort(exc)
            return
        if conn is not self._subscription_conn(channel):
            return  # that connection died meanwhile; the new one refills on its own
        self._confirm(channel)

    def _confirm(self, channel: str) -> None:
        for fut in self._pending_sub.pop(channel, []):
            if not fut.done():
                fut.set_result(None)

    async def _fill_gap(self, channel: str) -> None:
        """Read the messages stored while the pub/sub connection was down and hand them to
        the channel's catch-up, which delivers them, then the live ones it held.

        Same epoch: the events after the last one delivered. Epoch changed (Redis restarted
        empty, or the channel was new): every retained event, since all of them are newer
        than anything delivered before; their new epoch tells clients history was reset.
        A read that lost a race with a reconnect (its ticket superseded) is not applied.
        """
        feed = self._attached.get(channel)
        if feed is None or feed.ticket is None:
            return  # detached meanwhile, or its connection is gone
        ticket = feed.ticket
        frames = await self._read_gap(channel, feed.fill_from)
        if self._attached.get(channel) is feed and feed.catchup.on_read(ticket, frames):
            feed.ticket = None
            self._drain(channel, feed)

    async def _read_gap(
        self, channel: str, start: tuple[str | None, str | None] | None
    ) -> list[tuple[dict[str, Any], bytes]]:
        """The stored messages after ``start`` (see :meth:`_fill_gap`), oldest first."""
        if start is None:
            return []  # nothing delivered or read yet: no gap to fill
        epoch, last_id = start
        keys = [self._k(channel, "epoch"), self._k(channel, "events")]
        async with self._guard("gap fill"):
            out = await self._gap_script(keys=keys, args=[epoch or "", last_id or ""])
        if not out:
            return []  # nothing stored since (e.g. Redis restarted empty and is still unused)
        ps_channel = self._ps_channel(channel)
        frames: list[tuple[dict[str, Any], bytes]] = []
        for i in range(1, len(out), 2):
            payload = splice_id(out[i], out[i + 1]).encode()
            frame = self._parse(ps_channel, payload)
            if frame is not None:
                frames.append((frame, payload))
        return frames

    def _on_message(self, ps_channel: str, payload: bytes) -> None:
        """A live pub/sub message: to its channel's catch-up (held there during a refill)."""
        channel = self._keys.channel_of(ps_channel)
        feed = None if channel is None else self._attached.get(channel)
        if channel is None or feed is None:
            return
        frame = self._parse(ps_channel, payload)
        if frame is None:
            return
        feed.catchup.on_live(frame, payload)
        self._drain(channel, feed)

    def _parse(self, ps_channel: str, payload: bytes) -> dict[str, Any] | None:
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.error("RedisBroker %s: dropped non-JSON frame on %s", self.gateway_id, ps_channel)
            return None
        if not isinstance(frame, dict):
            log.error("RedisBroker %s: dropped non-object frame on %s", self.gateway_id, ps_channel)
            return None
        return frame

    def _drain(self, channel: str, feed: ChannelFeed) -> None:
        """Deliver what the channel's catch-up output, in its order; a delivered stored
        message becomes where the next gap fill starts."""
        for event in feed.catchup.events():
            if not isinstance(event, Deliver):
                continue  # ReadDone: the refill's end (confirmation follows in _refill)
            frame = event.frame
            position = stream_position(frame)
            if position is not None:
                feed.fill_from = (position.epoch, str(frame.get("id")))
            self._stats["delivered"] += 1
            try:
                self.deliver(channel, frame, event.data)
            except Exception:  # a listener bug must not kill fan-out for every channel
                log.exception("RedisBroker %s: listener failed on channel %r", self.gateway_id, channel)
