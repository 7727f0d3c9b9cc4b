"""The gateway's ``subscribe``: snapshot, presence join, and the catch-up that joins them to the live stream.

The ordering logic (which held frame goes where, what the snapshot covers, where
``presence_sync`` lands) is the sans-I/O :class:`~rtwidgets.core.catchup.CatchUp`; this module
does the broker calls around it and writes its output to the socket.

Rules of this module:

* **All-or-nothing**: every broker call happens before anything is sent to the client, and a
  failure undoes what the call did (:func:`abort_subscribe`, :func:`undo_join`), leaving the
  connection as it was before.
* While the snapshot is read, the channel's live frames for this connection are held in the
  subscription's ``CatchUp``. Once every broker call succeeded, only synchronous writes follow,
  in the core's order: the ``history`` frame (when asked for), then the held frames. A **new**
  subscription skips the held frames its snapshot covers (``covered`` = the snapshot's epoch and
  offset); a **live** subscription re-subscribing (another model of the client catching up) gets
  every held frame: it has not seen the snapshot's events, only its own stream, and the client
  drops repeats by offset.
* ``presence_sync`` goes where the member list was read (``CatchUp.mark``): frames held before
  that are older than the list, the ones after may be newer (a Redis reply and a pub/sub message
  race), so a newer update is never overwritten by the older list.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rtwidgets import protocol
from rtwidgets.core.catchup import CatchUp, Deliver, Marker, Position, ReadDone
from rtwidgets.protocol import ErrorCode, ProtocolError

from .brokers.base import SnapshotResult
from .config import GatewayConfig
from .hub import Hub, Route, log, now_ms
from .session import Session, Subscription

__all__ = ["abort_subscribe", "check_presence_size", "history_frame", "on_subscribe", "undo_join"]

_MEMBERS = "members"  # the CatchUp mark where the presence member list was read


def check_presence_size(config: GatewayConfig, data: dict[str, Any], msg_id: Any) -> None:
    """Refuse presence data above ``max_presence_bytes``.

    Raises:
        ProtocolError: ``too_large``.
    """
    size = len(protocol.encode_bytes(data))
    if size > config.max_presence_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"presence data of {size} bytes exceeds {config.max_presence_bytes}",
            msg_id,
        )


def history_frame(snap: SnapshotResult, request_id: Any = None) -> dict[str, Any]:
    """The ``history`` frame answering a subscribe with ``snap``."""
    frame: dict[str, Any] = {
        "type": "history",
        "channel": snap.channel,
        "data": snap.events,
        "epoch": snap.epoch,
        "latestEventId": snap.latest_event_id,
        "offset": snap.offset,
    }
    if request_id is not None:
        # [ext] which subscribe this answers: a client with several models on the channel routes
        # the catch-up to the one that asked.
        frame["requestId"] = request_id
    if snap.recovered is not None:
        frame["recovered"] = snap.recovered
    if snap.state is not None:
        frame["state"] = snap.state
    return frame


async def on_subscribe(hub: Hub, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
    """Handle a validated ``subscribe`` frame; returns the ack's extra fields.

    Raises:
        ProtocolError: ``forbidden``, ``too_large`` (presence data), ``too_many_channels``.
        BrokerUnavailable: the broker failed (nothing was sent; the subscribe was undone).
    """
    config = hub.config
    channel: str = msg["channel"]
    options: dict[str, Any] = msg["options"]
    msg_id = msg.get("_id")
    if not session.can("subscribe", channel):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to subscribe to {channel!r}", msg_id)
    want_presence = bool(options.get("presence"))
    if want_presence and not session.can("presence", channel):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"presence not allowed on {channel!r}", msg_id)
    presence_data = options.get("presenceData") or {}
    if want_presence:
        check_presence_size(config, presence_data, msg_id)
    sub = session.subscriptions.get(channel)
    is_new = sub is None
    if sub is None:
        if len(session.subscriptions) >= config.max_channels_per_connection:
            raise ProtocolError(
                ErrorCode.TOO_MANY_CHANNELS,
                f"at most {config.max_channels_per_connection} subscriptions per connection",
                msg_id,
            )
        sub = Subscription(channel)
        session.subscriptions[channel] = sub
    route = hub.route_for(channel)
    conn = session.conn
    # Hold live frames until the snapshot is out: no gap, no duplicate.
    route.live.discard(conn)
    catchup = sub.catchup = CatchUp()
    ticket = catchup.hold()
    route.catching[sub] = conn
    broker = hub.broker
    # These record what to undo if a broker call fails (see abort_subscribe).
    stored: dict[str, Any] | None = None  # presence member this call added (maybe stored)
    join_sent = False  # its presence_join was (maybe) broadcast
    members: list[dict[str, Any]] | None = None
    try:
        await asyncio.shield(route.attaching)
        snap = await broker.snapshot(
            channel,
            last_event_id=options.get("lastEventId"),
            epoch=options.get("epoch"),
            history=options.get("history") or 0,
            want_state=bool(options.get("state")),
        )
        if want_presence:
            if sub.member is None:
                member = {
                    "userId": session.user_id,
                    "clientId": session.client_id,
                    "data": presence_data,
                    "joinedAt": now_ms(),
                }
                stored = member  # before the await: a failed call may still have stored it
                await broker.presence_set(channel, member)
                sub.member = member
                join_sent = True
                join = {"type": "presence_join", "channel": channel, "member": member}
                await broker.broadcast(channel, join)
            elif options.get("presenceData") is not None and sub.member["data"] != presence_data:
                # Re-subscribing with new presenceData is a presence update.
                member = {**sub.member, "data": presence_data}
                await broker.presence_set(channel, member)
                sub.member = member
                await broker.broadcast(
                    channel, {"type": "presence_update", "channel": channel, "member": member}
                )
            catchup.mark(_MEMBERS)
            members = await broker.presence_members(channel)
        elif sub.member is not None:
            # Re-subscribing without presence leaves presence (the client's last model that
            # wanted it is gone; the subscription stays).
            await hub.leave_presence(session, sub)
    except BaseException as exc:
        abort_subscribe(hub, session, sub, route, ticket, is_new=is_new, joined=stored is not None)
        if stored is not None:
            undo = undo_join(hub, channel, session.client_id, join_sent)
            if isinstance(exc, Exception):
                await undo
            else:
                # Cancelled (the gateway is stopping): do not await here; undo in the background.
                hub.spawn(undo)
        raise
    # Every broker call succeeded: from here on only synchronous writes, in the core's order.
    send_history = bool(
        options.get("history") or options.get("lastEventId") is not None or options.get("state")
    )
    sub.catchup = None
    route.catching.pop(sub, None)
    catchup.on_read(ticket, covered=Position(snap.epoch, snap.offset) if is_new else None)
    for ev in catchup.events():
        if isinstance(ev, Deliver):
            hub.send_encoded(conn, ev.data)
        elif isinstance(ev, ReadDone):
            if send_history:
                hub.send(conn, history_frame(snap, msg_id))
        elif isinstance(ev, Marker) and members is not None:
            hub.send(conn, {"type": "presence_sync", "channel": channel, "members": members})
    if not session.closing:
        route.live.add(conn)
    extra: dict[str, Any] = {
        "channel": channel,
        "epoch": snap.epoch,
        "offset": snap.offset,
        "latestEventId": snap.latest_event_id,
    }
    if snap.recovered is not None:
        extra["recovered"] = snap.recovered
    return extra


def abort_subscribe(
    hub: Hub, session: Session, sub: Subscription, route: Route, ticket: int, *, is_new: bool, joined: bool
) -> None:
    """Undo the local side of a failed subscribe, leaving the connection as it was before.

    A new subscription is forgotten (and the channel detached if nobody else here uses
    it); an existing one gets the live frames held meanwhile and goes live again.
    ``joined``: the failed call added a presence member, which the caller removes with
    :func:`undo_join`. Synchronous, so it completes for a cancelled subscribe too.
    """
    channel = sub.channel
    conn = session.conn
    route.catching.pop(sub, None)
    catchup, sub.catchup = sub.catchup, None
    if joined:
        sub.member = None
    attaching = route.attaching
    attach_failed = attaching.done() and not attaching.cancelled() and attaching.exception() is not None
    if attach_failed and hub.routes.get(channel) is route:
        # The broker refused the channel: forget the route so the next subscribe retries.
        del hub.routes[channel]
    if is_new:
        # The subscription is forgotten: what it held goes with it (it was never subscribed).
        if catchup is not None:
            catchup.discard()
        if session.subscriptions.get(channel) is sub:
            del session.subscriptions[channel]
        route.live.discard(conn)
        hub.release_route(channel, route)
    elif not session.closing:
        # The earlier subscription stays: it must not miss what was held for it.
        if catchup is not None and catchup.abort(ticket):
            for ev in catchup.events():
                if isinstance(ev, Deliver):
                    hub.send_encoded(conn, ev.data)
        route.live.add(conn)


async def undo_join(hub: Hub, channel: str, client_id: str, join_sent: bool) -> None:
    """Remove the presence member a failed subscribe added; ``presence_leave`` if its join
    went out (and it was still there). Broker errors are logged, not raised: the caller
    answers the original error."""
    try:
        removed = await hub.broker.presence_remove(channel, client_id)
        if removed is not None and join_sent:
            leave = {"type": "presence_leave", "channel": channel, "member": removed}
            await hub.broker.broadcast(channel, leave)
    except Exception:
        # RedisBroker retries a failed removal itself (and then broadcasts the leave).
        log.warning("undoing the presence join of client %s on %r failed", client_id, channel, exc_info=True)
