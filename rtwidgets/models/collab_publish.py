"""Publishing of a :class:`~rtwidgets.models.collab.CollabDoc`'s local updates and snapshots.

Rules of this module:

* One publish of local updates in flight at a time; what is typed meanwhile is merged into the
  next one, so typing bursts never hit the gateway's rate limit. A batch refused as
  ``rate_limited`` is re-sent after ``RATE_LIMIT_RETRY_S``; one refused for good
  (``FINAL_PUBLISH_ERRORS``) stays in this replica and is offered to live peers by announcing our
  state vector; any other failure is re-sent after the next subscribe.
* Runtime thread only. :class:`CollabPublisher` is a mixin of ``CollabDoc``: it uses the
  document's state (declared below) and holds none of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pycrdt

from rtwidgets.core import crdt_sync as cs
from rtwidgets.models._binding import TaskGroup
from rtwidgets.models.channel import Channel

__all__ = ["FINAL_PUBLISH_ERRORS", "RATE_LIMIT_RETRY_S", "CollabPublisher"]

log = logging.getLogger("rtwidgets.models.collab")

# Publish refusals that a retry cannot fix (anything else is retried after reconnecting).
FINAL_PUBLISH_ERRORS = frozenset({"forbidden", "too_large", "too_deep", "invalid_field", "state_full"})
RATE_LIMIT_RETRY_S = 0.25  # back-off before re-sending a batch the gateway refused as rate_limited


class CollabPublisher:
    """Publishing half of ``CollabDoc`` (a mixin): the outbox, its sender task and snapshots."""

    # The document's state this mixin works on (set by CollabDoc.__init__).
    name: str
    _channel: Channel
    _ydoc: pycrdt.Doc[Any]
    _tasks: TaskGroup
    _outbox: list[bytes]
    _sending: bool
    _snapshotting: bool
    _closed: bool
    _pending: cs.PendingUpdates
    _policy: cs.SnapshotPolicy

    def _my_client_id(self) -> str:
        raise NotImplementedError  # CollabDoc's

    def _set_error(self, message: str) -> None:
        raise NotImplementedError  # CollabDoc's

    def _kick_sender(self) -> None:
        if self._sending or not self._outbox or self._closed:
            return
        self._sending = True
        self._tasks.spawn(self._send_loop())

    async def _send_loop(self) -> None:
        try:
            while self._outbox and not self._closed:
                batch = self._outbox[0] if len(self._outbox) == 1 else pycrdt.merge_updates(*self._outbox)
                self._outbox.clear()
                token = self._pending.add(batch)
                try:
                    await asyncio.wrap_future(self._channel.publish(cs.update_message(batch), wait=False))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if getattr(exc, "code", None) == "rate_limited":
                        self._pending.confirm(token)  # not failed: retried right here
                        self._outbox.insert(0, batch)
                        await asyncio.sleep(RATE_LIMIT_RETRY_S)
                        continue
                    code = getattr(exc, "code", None)
                    if code in FINAL_PUBLISH_ERRORS:
                        # Re-sending cannot help. The edit stays in this replica; announcing our
                        # state vector lets live peers ask for it (a diff, if that one fits).
                        self._pending.confirm(token)
                        self._set_error(f"an edit could not be published ({exc})")
                        log.error("collab %r: edit not published: %s", self.name, exc)
                        if self._my_client_id():
                            self._send_ephemeral(
                                cs.state_vector_message(self._ydoc.get_state(), self._my_client_id())
                            )
                        continue
                    self._pending.fail(token)
                    if self._channel.is_subscribed:
                        # Failed with the old socket while a new subscription is already up.
                        failed = self._pending.take_failed()
                        if failed is not None:
                            self._outbox.insert(0, failed)
                        continue
                    self._set_error(f"publishing an edit failed ({exc}); it is re-sent after reconnecting")
                    return
                self._pending.confirm(token)
        finally:
            self._sending = False
        if self._outbox and not self._closed and self._channel.is_subscribed:
            self._kick_sender()

    def _maybe_snapshot(self) -> None:
        if not self._policy.due or self._snapshotting or not self._channel.is_subscribed or self._closed:
            return
        self._policy.started()
        self._snapshotting = True
        self._tasks.spawn(self._publish_snapshot())

    async def _publish_snapshot(self) -> None:
        try:
            data = cs.snapshot_message(self._ydoc.get_update())
            await asyncio.wrap_future(self._channel.publish(data, key=cs.STATE_KEY, wait=False))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # History still holds the updates; a newcomer only needs the snapshot once they roll over.
            # A dropped connection is routine (the next due snapshot follows); anything else is not.
            level = logging.INFO if getattr(exc, "code", None) == "connection_closed" else logging.WARNING
            log.log(level, "collab %r: snapshot not published: %s", self.name, exc)
            if level == logging.WARNING:
                self._set_error(f"publishing a snapshot failed ({exc})")
        finally:
            self._snapshotting = False

    def _send_ephemeral(self, data: dict[str, Any]) -> None:
        if not self._channel.is_subscribed or self._closed:
            return

        async def send() -> None:
            try:
                await asyncio.wrap_future(self._channel.publish(data, ephemeral=True, wait=False))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A lost handshake is repaired by the next (re)subscribe; say so, do not crash.
                log.info("collab %r: %s not delivered: %s", self.name, data.get("t"), exc)

        self._tasks.spawn(send())
