"""The gateway's reaper: closes idle connections (4009) and ones whose token expired (4002).

Rules of this module:

* A connection is idle when no bytes (frames or pongs) arrived for ``heartbeat_timeout``
  (``GatewayConnection.last_seen``); the reaper looks every ``heartbeat_timeout / 4``
  (between 0.05 and 1 s), so it closes one at most a quarter timeout late.
* A pass never raises: one bad session is logged and the next pass runs as usual.
* Closing is spawned (:meth:`Hub.close <rtwidgets.gateway.hub.Hub.close>`), so a pass never
  waits for a socket.
"""

from __future__ import annotations

import asyncio
import time

from rtwidgets.protocol import CloseCode

from .hub import Hub, log

__all__ = ["reap", "reap_once"]


async def reap(hub: Hub) -> None:
    """Run reaper passes until cancelled."""
    interval = max(0.05, min(1.0, hub.config.heartbeat_timeout / 4))
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            reap_once(hub, loop.time(), time.time())
        except Exception:  # the reaper must outlive any single bad session
            log.exception("gateway reaper pass failed")


def reap_once(hub: Hub, now: float, wall: float) -> None:
    """One pass at loop time ``now`` and wall-clock time ``wall``."""
    timeout = hub.config.heartbeat_timeout
    hub.metrics.publish_rate()  # records a sample, so the rate has history to average
    for session in list(hub.sessions.values()):
        if session.closing:
            continue
        if now - session.conn.last_seen > timeout:
            hub.metrics.idle_closes += 1
            log.info("closing idle client %s", session.client_id)
            hub.spawn(hub.close(session, CloseCode.IDLE_TIMEOUT, "Idle timeout"))
        elif session.claims.expired(wall):
            log.info("closing client %s: token expired", session.client_id)
            hub.spawn(hub.close(session, CloseCode.TOKEN_EXPIRED, "Token expired"))
