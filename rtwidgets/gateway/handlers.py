"""The gateway's client-frame dispatch and its six message handlers.

``ping``, ``subscribe`` (in :mod:`.subscribe`, with its catch-up), ``unsubscribe``,
``publish``, ``presence_update`` and ``sync``. Each handler takes a validated frame
(:func:`rtwidgets.protocol.parse_client_frame`) and returns the ``ack``'s extra fields, or
raises :class:`~rtwidgets.protocol.ProtocolError` to be answered with an ``error``.

Rules of this module:

* One asyncio task per connection reads frames and hands them to :meth:`Handlers.on_frame`
  **one at a time**, so a client's operations apply in the order it sent them (per-sender FIFO).
* Every client frame gets exactly one answer when it carries ``_id``: ``ack`` after the
  operation was applied, or ``error`` with a code. Bad input never closes the socket.
* A broker outage is answered ``unavailable`` (retry later); any other exception is a bug,
  logged and answered ``internal``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rtwidgets import protocol
from rtwidgets.protocol import ErrorCode, ProtocolError

from .brokers.base import BrokerUnavailable, StateFull
from .hub import Hub, log, now_ms
from .session import Session
from .subscribe import check_presence_size, on_subscribe

__all__ = ["Handlers"]

_Handler = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any] | None]]

# Refusals raised before the frame's _id was read (see Handlers.on_frame).
_SALVAGE_ID_CODES = frozenset({ErrorCode.TOO_DEEP, ErrorCode.TOO_LARGE})


class Handlers:
    """The message handlers of one gateway, over its :class:`~rtwidgets.gateway.hub.Hub`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._handlers: dict[str, _Handler] = {
            "ping": self.on_ping,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "publish": self.on_publish,
            "presence_update": self.on_presence_update,
            "sync": self.on_sync,
        }

    async def on_frame(self, session: Session, raw: str | bytes) -> None:
        """Parse, handle and answer one client frame (never raises for bad input)."""
        hub = self.hub
        conn = session.conn
        msg: dict[str, Any] | None = None
        try:
            if isinstance(raw, bytes):
                raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not supported; send JSON text")
            msg = protocol.parse_client_frame(raw.encode(), max_bytes=hub.config.max_message_bytes)
            handler = self._handlers[msg["type"]]
            extra = await handler(session, msg)
        except ProtocolError as exc:
            msg_id = exc.msg_id if exc.msg_id is not None else _id_of(msg)
            if msg_id is None and exc.code in _SALVAGE_ID_CODES and isinstance(raw, str):
                # protocol.parse_client_frame refuses too-deep and oversize frames before it
                # reads their _id; recover it so the sender's pending request is answered
                # (error path only; the frame is below hard_max_bytes, so decoding is bounded).
                msg_id = _salvage_id(raw)
            hub.send_error(conn, exc.code, exc.reason, msg_id, _channel_of(msg), exc.retry_after)
        except BrokerUnavailable as exc:
            log.warning("broker unavailable while handling %s: %s", _type_of(msg), exc)
            hub.send_error(
                conn, ErrorCode.UNAVAILABLE, "broker unavailable, retry later", _id_of(msg), _channel_of(msg)
            )
        except Exception:
            log.exception(
                "internal error handling a %s frame from client %s", _type_of(msg), session.client_id
            )
            hub.send_error(conn, ErrorCode.INTERNAL, "internal server error", _id_of(msg), _channel_of(msg))
        else:
            msg_id = msg.get("_id")
            if msg_id is not None:
                ack: dict[str, Any] = {"type": "ack", "id": msg_id}
                if extra:
                    ack.update(extra)
                hub.send(conn, ack)

    # ------------------------------------------------------------------ handlers

    async def on_ping(self, session: Session, msg: dict[str, Any]) -> dict[str, Any] | None:
        pong: dict[str, Any] = {"type": "pong", "serverTime": now_ms()}
        if msg.get("t") is not None:
            pong["t"] = msg["t"]
        self.hub.send(session.conn, pong)
        return None

    async def on_subscribe(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        return await on_subscribe(self.hub, session, msg)

    async def on_unsubscribe(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        channel: str = msg["channel"]
        sub = session.subscriptions.pop(channel, None)
        if sub is None:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel!r}", msg.get("_id"))
        await self.hub.leave(session, sub)
        return {"channel": channel}

    async def on_publish(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        hub = self.hub
        channel: str = msg["channel"]
        msg_id = msg.get("_id")
        if not session.can("publish", channel):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to publish to {channel!r}", msg_id)
        key = msg.get("key")
        ephemeral = bool(msg.get("ephemeral"))
        if ephemeral and key is not None:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "an ephemeral message cannot carry 'key' (it is not stored)", msg_id
            )
        bucket = session.bucket
        now = session.conn.loop.time()
        if not bucket.try_acquire(now):
            wait = bucket.retry_after(now)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"over {hub.config.publish_rate:g} publishes/s; retry in {wait:.3f} s",
                msg_id,
                retry_after=wait,
            )
        frame: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "data": msg["data"],
            "senderId": session.user_id,
            "clientId": session.client_id,
        }
        for field in ("seq", "key", "msgId"):
            value = msg.get(field)
            if value is not None:
                frame[field] = value
        if ephemeral:
            frame["timestamp"] = now_ms()
            frame["ephemeral"] = True
            await hub.broker.broadcast(channel, frame)
            hub.metrics.messages_published += 1
            return {"channel": channel, "ephemeral": True}
        try:
            out = await hub.broker.publish(channel, frame, key=key, msg_id=msg.get("msgId"))
        except StateFull as exc:  # any other error is a bug: answered ``internal`` by on_frame
            raise ProtocolError(ErrorCode.STATE_FULL, str(exc), msg_id) from None
        extra: dict[str, Any] = {
            "channel": channel,
            "eventId": out.get("eventId"),
            "offset": out.get("offset"),
        }
        if out.get("duplicate"):
            extra["duplicate"] = True
        else:
            hub.metrics.messages_published += 1
        return extra

    async def on_presence_update(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        hub = self.hub
        channel: str = msg["channel"]
        msg_id = msg.get("_id")
        sub = session.subscriptions.get(channel)
        if sub is None:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel!r}", msg_id)
        if sub.member is None:
            raise ProtocolError(
                ErrorCode.PRESENCE_DISABLED, f"subscribed to {channel!r} without presence", msg_id
            )
        data = msg["data"]
        check_presence_size(hub.config, data, msg_id)
        member = {**sub.member, "data": data}
        await hub.broker.presence_set(channel, member)
        sub.member = member
        await hub.broker.broadcast(channel, {"type": "presence_update", "channel": channel, "member": member})
        return {"channel": channel}

    async def on_sync(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        msg_id = msg.get("_id")
        explicit = msg.get("channel")
        if explicit is not None:
            if not session.can("subscribe", explicit):
                raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to read {explicit!r}", msg_id)
            channels = [explicit]
        else:
            channels = list(session.subscriptions)
        last_event_id = msg.get("lastEventId")
        epoch = msg.get("epoch")
        pending = msg.get("pendingOps")
        for channel in channels:
            response = await self._sync_response(channel, last_event_id, epoch)
            if pending:
                response["confirmedOps"] = await self._confirmed_ops(channel, pending, response)
            self.hub.send(session.conn, response)
        return {"channels": channels}

    async def _sync_response(
        self, channel: str, last_event_id: str | None, epoch: str | None
    ) -> dict[str, Any]:
        broker = self.hub.broker
        if last_event_id is not None:
            snap = await broker.snapshot(
                channel, last_event_id=last_event_id, epoch=epoch, history=0, want_state=False
            )
            if snap.recovered:
                return {
                    "type": "sync_response",
                    "channel": channel,
                    "syncType": "delta",
                    "events": snap.events,
                    "latestEventId": snap.latest_event_id,
                    "version": snap.offset,
                    "epoch": snap.epoch,
                }
        # Not resumable (or no position given): a snapshot, which must carry the keyed state, so
        # it is read with want_state (the resume attempt above did not ask for it).
        snap = await broker.snapshot(
            channel, last_event_id=None, epoch=None, history=self.hub.config.history_size, want_state=True
        )
        return {
            "type": "sync_response",
            "channel": channel,
            "syncType": "snapshot",
            "state": snap.state or {},
            "events": snap.events,
            "latestEventId": snap.latest_event_id,
            "version": snap.offset,
            "epoch": snap.epoch,
        }

    async def _confirmed_ops(self, channel: str, pending: list[str], response: dict[str, Any]) -> list[str]:
        """The msgIds among ``pending`` that are stored on ``channel`` (retained history or state)."""
        wanted = set(pending)
        if response["syncType"] == "snapshot":
            events, state = response["events"], response["state"]
        else:
            snap = await self.hub.broker.snapshot(
                channel, last_event_id=None, epoch=None, history=self.hub.config.history_size, want_state=True
            )
            events, state = snap.events, snap.state or {}
        found = {f.get("msgId") for f in events} | {f.get("msgId") for f in state.values()}
        return [op for op in pending if op in wanted and op in found]


# ---------------------------------------------------------------------- helpers


def _type_of(msg: dict[str, Any] | None) -> str:
    return str(msg.get("type"))[:40] if msg else "unparsed"


def _id_of(msg: dict[str, Any] | None) -> Any:
    return msg.get("_id") if msg else None


def _salvage_id(raw: str) -> Any:
    try:
        value = protocol.decode(raw)
    except ProtocolError:
        return None
    msg_id = value.get("_id") if isinstance(value, dict) else None
    if isinstance(msg_id, bool):
        return None
    if isinstance(msg_id, int) and abs(msg_id) <= 2**53:
        return msg_id
    if isinstance(msg_id, str) and 0 < len(msg_id) <= protocol.MAX_ID_LENGTH:
        return msg_id
    return None


def _channel_of(msg: dict[str, Any] | None) -> str | None:
    if not msg:
        return None
    channel = msg.get("channel")
    try:
        return protocol.validate_channel(channel) if channel is not None else None
    except ProtocolError:
        return None
