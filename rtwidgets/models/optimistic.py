"""``OptimisticList``: the design's ``useOptimisticRealtime`` hook as a traitlets
model (docs/design.md#optimistic-updates).

All list logic is :class:`rtwidgets.core.optimistic.OptimisticStore` (confirmed layer +
pending ops, exact rollback); this model only moves frames between the store and a keyed
channel, drives the store's ack-timeout ``tick`` with a runtime timer, and mirrors the
store into traits. The store is touched on the runtime thread only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from traitlets import Bool, Dict, HasTraits, Int, List, Unicode

from rtwidgets.core.optimistic import OptimisticStore, RolledBack, StoreError
from rtwidgets.errors import OperationRolledBack  # defined there; re-exported from here
from rtwidgets.models._binding import DeadlineTimer, LoopClock, TaskGroup, on_runtime, run_blocking
from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime

__all__ = ["OperationRolledBack", "OptimisticList"]

log = logging.getLogger("rtwidgets.models")


class OptimisticList(HasTraits):
    """A shared list of ``{"id": str, ...}`` items with optimistic local edits.

    ``create``/``update``/``delete`` change :attr:`data` at once and publish the op on the
    channel's keyed state; the op is confirmed by the gateway's ack (or its echo) and
    rolled back exactly on refusal (``error`` frame, e.g. ``forbidden`` for a read-only
    token) or when no ack came within ``ack_timeout`` seconds. ``initial`` items are shown
    until the channel's keyed state arrives; from then on the server's list wins.

    Args:
        connection: the :class:`Connection` to share over.
        name: the channel whose keyed state holds the list (one key per item id).
        initial: items shown until the server's list arrives, each with a unique string
            ``id``.
        ack_timeout: seconds (> 0) an op may wait for its ack before it is rolled back.

    Raises:
        ValueError: an empty ``name``, ``ack_timeout`` not > 0, or an ``initial`` item without
            a non-empty string ``id`` or with a duplicate one.
        TypeError: an ``initial`` item is not a mapping.
        ProtocolError: ``name`` is not a valid channel name.
    """

    name = Unicode(read_only=True)
    data: List[dict[str, Any]] = List(help="visible items (confirmed + pending ops), in list order")
    pending_ops: List[str] = List(help="ids of ops not yet confirmed, oldest first")
    pending_items: List[str] = List(help="ids of items touched by a pending op")
    has_pending_ops = Bool(False)
    last_rollback = Dict(help="{opId, itemId, kind, reason, ts (epoch ms)} of the newest rollback")
    rollbacks = Int(0)
    confirmed = Int(0)
    is_subscribed = Bool(False)
    error = Unicode("")

    def __init__(
        self,
        connection: Connection,
        name: str,
        initial: Iterable[Mapping[str, Any]] = (),
        ack_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.set_trait("name", name)
        self.store = OptimisticStore(name, ack_timeout=ack_timeout, initial=list(initial))
        self.connection = connection
        self._runtime = get_runtime()
        self._loop = self._runtime.loop
        self._clock = LoopClock(self._loop)
        self._tasks = TaskGroup(f"optimistic list {name!r}")
        self._tick_timer = DeadlineTimer(self._loop, self._on_tick)
        self._outcomes: dict[str, concurrent.futures.Future[str]] = {}
        self._listeners: list[Callable[[list[Any]], None]] = []
        self._loaded_handle: Any = None
        self._closed = False
        self.channel = Channel(connection, name, state=True)
        self._unsubs = [self.channel.on_message(self._on_message), self.channel.on_reset(self._on_reset)]
        self.channel.observe(self._on_subscribed, names=["is_subscribed"])
        connection.attached.add(self)
        self._mirror([])
        # The subscription may have completed before the observer was in place.
        on_runtime(lambda: self._after_subscribe(self.channel.is_subscribed))

    # ------------------------------------------------------------------ public API

    def create(self, item: Mapping[str, Any], *, wait: bool = False, timeout: float = 10.0) -> str:
        """Add ``item`` (needs a string ``id``) now; return the op id.

        ``wait=True`` blocks until the gateway confirmed it and raises
        :class:`OperationRolledBack` if it was rolled back instead.

        Args:
            item: the new item, a mapping with a non-empty string ``id`` not listed yet.
            wait: block until the op is confirmed or rolled back.
            timeout: seconds to wait for the local change and, with ``wait``, again for the
                outcome.

        Returns:
            The op id.

        Raises:
            ValueError: no non-empty string ``id``, or an item with that id exists.
            TypeError: ``item`` is not a mapping.
            RuntimeError: the list is closed, or ``wait=True`` on the runtime thread.
            OperationRolledBack: ``wait`` and the gateway refused the op or did not ack it.
            TimeoutError: ``wait`` and the op did not settle within ``timeout`` seconds.
        """
        return self._op("create", dict(item), wait, timeout)

    def update(self, item: Mapping[str, Any], *, wait: bool = False, timeout: float = 10.0) -> str:
        """Replace the item with ``item['id']`` now; return the op id (see :meth:`create`).

        Args:
            item: the whole new item; its ``id`` names the item to replace.
            wait: block until the op is confirmed or rolled back.
            timeout: as for :meth:`create`.

        Raises:
            KeyError: no visible item has that id.
            ValueError: no non-empty string ``id``.
            TypeError: ``item`` is not a mapping.
            RuntimeError: the list is closed, or ``wait=True`` on the runtime thread.
            OperationRolledBack: ``wait`` and the op was rolled back.
            TimeoutError: ``wait`` and the op did not settle within ``timeout`` seconds.
        """
        return self._op("update", dict(item), wait, timeout)

    def delete(self, item_id: str, *, wait: bool = False, timeout: float = 10.0) -> str:
        """Remove the item now; return the op id (see :meth:`create`).

        Args:
            item_id: the id of a visible item.
            wait: block until the op is confirmed or rolled back.
            timeout: as for :meth:`create`.

        Raises:
            KeyError: no visible item has that id.
            ValueError: ``item_id`` is not a non-empty string.
            RuntimeError: the list is closed, or ``wait=True`` on the runtime thread.
            OperationRolledBack: ``wait`` and the op was rolled back.
            TimeoutError: ``wait`` and the op did not settle within ``timeout`` seconds.
        """
        return self._op("delete", item_id, wait, timeout)

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The visible item with ``item_id`` (a copy), or None.

        Args:
            item_id: the item's id.
        """
        for item in self.data:
            if item.get("id") == item_id:
                return dict(item)
        return None

    def is_pending(self, item_id: str) -> bool:
        """Whether an op on the item is waiting for its confirmation.

        Args:
            item_id: the item's id.
        """
        return item_id in self.pending_items

    def on_change(self, callback: Callable[[list[Any]], None]) -> Callable[[], None]:
        """``callback(events)`` on the runtime thread after every store change (widgets use it).

        Args:
            callback: receives the store's events of that change (possibly none); an exception
                it raises is logged.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def submit(self, kind: str, arg: Any) -> concurrent.futures.Future[str]:
        """Non-blocking variant of create/update/delete for handlers on other threads.

        The returned future resolves to the op id once applied locally; a bad argument
        sets its exception (``ValueError``/``KeyError``/``TypeError``).

        Args:
            kind: ``"create"``, ``"update"`` or ``"delete"`` (an unknown kind sets
                ``ValueError`` on the future).
            arg: the item (create, update) or the item id (delete).
        """
        result: concurrent.futures.Future[str] = concurrent.futures.Future()

        def apply() -> None:
            try:
                result.set_result(self._apply_local(kind, arg))
            except Exception as exc:
                result.set_exception(exc)

        on_runtime(apply)
        return result

    def wait_settled(self, timeout: float = 10.0) -> OptimisticList:
        """Block until no op is pending (each was confirmed or rolled back).

        Args:
            timeout: seconds to wait.

        Returns:
            This list, for chaining.

        Raises:
            TimeoutError: ops still pending after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.has_pending_ops:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"ops still pending after {timeout} s: {self.pending_ops}")
            time.sleep(0.01)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Unsubscribe and stop the ack-timeout timer (idempotent).

        Args:
            timeout: seconds to wait for the unsubscribe; past it the list is closed anyway.
        """
        if self._closed:
            return
        self._closed = True
        self.channel.unobserve(self._on_subscribed, names=["is_subscribed"])
        for unsub in self._unsubs:
            unsub()
        on_runtime(self._tick_timer.cancel)
        self._tasks.cancel_all()
        self.channel.close(timeout)

    def __repr__(self) -> str:
        return f"<OptimisticList {self.name!r} items={len(self.data)} pending={len(self.pending_ops)}>"

    # ------------------------------------------------------------------ any thread

    def _op(self, kind: str, arg: Any, wait: bool, timeout: float) -> str:
        if self._closed:
            raise RuntimeError(f"OptimisticList {self.name!r} is closed")
        if self._runtime.in_runtime_thread():
            if wait:
                raise RuntimeError(f"OptimisticList.{kind}(wait=True) cannot block on the runtime thread")
            return self._apply_local(kind, arg)

        async def local() -> tuple[str, concurrent.futures.Future[str]]:
            op_id = self._apply_local(kind, arg)
            return op_id, self._outcomes[op_id]

        op_id, outcome = run_blocking(local(), timeout, f"OptimisticList.{kind}")
        if wait:
            try:
                outcome.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"{kind} op {op_id} not settled within {timeout} s") from None
        return op_id

    # ------------------------------------------------------------------ runtime thread

    def _apply_local(self, kind: str, arg: Any) -> str:
        if self._closed:
            raise RuntimeError(f"OptimisticList {self.name!r} is closed")
        now = self._clock()
        if kind == "create":
            frame = self.store.create(arg, now)
        elif kind == "update":
            frame = self.store.update(arg, now)
        elif kind == "delete":
            frame = self.store.delete(arg, now)
        else:
            raise ValueError(f"unknown op kind {kind!r} (create, update or delete)")
        op_id = str(frame["msgId"])
        self._outcomes[op_id] = concurrent.futures.Future()
        self._publish_events()
        self._tasks.spawn(self._send(op_id, frame))
        self._tick_timer.schedule(self._next_tick())
        return op_id

    async def _send(self, op_id: str, frame: dict[str, Any]) -> None:
        try:
            handle = await self.channel._ready_handle()
            ack = await handle.publish(frame["data"], key=frame["key"], msg_id=op_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            self.store.fail(op_id, str(code))
            kind = frame["data"]["type"] if isinstance(frame["data"], dict) else "delete"
            self._set(error=f"{kind} of {frame['key']!r} refused: {exc}")
        else:
            ack = ack or {}
            offset = ack.get("offset")
            self.store.confirm(
                op_id,
                offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
                duplicate=ack.get("duplicate") is True,
            )
        self._publish_events()

    def _on_message(self, frame: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self.store.on_message(frame)
        except StoreError as exc:
            # Another publisher put something on the channel that is not an item: say so.
            log.warning("list %r: ignored a message that is not an item op: %s", self.name, exc)
            self._set(error=f"ignored a malformed message: {exc}")
        self._publish_events()

    def _on_reset(self, reset: Any) -> None:
        self._load(getattr(reset, "state", None) or {}, getattr(reset, "offset", None), reset.epoch)

    def _on_subscribed(self, change: dict[str, Any]) -> None:
        on_runtime(self._after_subscribe, bool(change["new"]))

    def _after_subscribe(self, subscribed: bool) -> None:
        self._set(is_subscribed=subscribed)
        handle = self.channel.handle
        if not subscribed or handle is None or handle is self._loaded_handle or self._closed:
            return
        # A new subscription (not a resume): its keyed state is the server's list.
        self._loaded_handle = handle
        self._load(handle.state or {}, handle.offset, handle.epoch)

    def _load(self, state: Mapping[str, Any], offset: Any, epoch: Any) -> None:
        try:
            self.store.load_snapshot(
                state,
                offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
                epoch=epoch if isinstance(epoch, str) else None,
            )
        except StoreError as exc:
            log.warning("list %r: snapshot not usable: %s", self.name, exc)
            self._set(error=f"snapshot not usable: {exc}")
        self._publish_events()

    def _next_tick(self) -> float | None:
        pending = self.store.pending()
        if not pending:
            return None
        return min(op.sent_at for op in pending) + self.store.ack_timeout

    def _on_tick(self, when: float) -> None:
        if self._closed:
            return
        self.store.tick(self._clock(when))
        self._publish_events()
        self._tick_timer.schedule(self._next_tick())

    def _publish_events(self) -> None:
        events = self.store.events()
        if not events and self.data == self.store.data:
            return
        self._mirror(events)
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("list %r: change listener failed", self.name)

    def _mirror(self, events: list[Any]) -> None:
        store = self.store
        pending = store.pending()
        updates: dict[str, Any] = {
            "data": [dict(item) for item in store.data],
            "pending_ops": [op.op_id for op in pending],
            "pending_items": sorted({op.item_id for op in pending}),
            "has_pending_ops": bool(pending),
        }
        for ev in events:
            kind = type(ev).__name__
            if isinstance(ev, RolledBack):
                updates["last_rollback"] = {
                    "opId": ev.op_id,
                    "itemId": ev.item_id,
                    "kind": ev.kind,
                    "reason": ev.reason,
                    "ts": round(time.time() * 1000.0, 3),
                }
                updates["rollbacks"] = updates.get("rollbacks", self.rollbacks) + 1
                self._settle(ev.op_id, OperationRolledBack(ev.op_id, ev.kind, ev.item_id, ev.reason))
            elif kind == "Confirmed":
                updates["confirmed"] = updates.get("confirmed", self.confirmed) + 1
                self._settle(ev.op_id, None)
        # Ops settled without an event (e.g. already gone from the store) must not hang waiters.
        live = {op.op_id for op in pending}
        for op_id in [o for o in self._outcomes if o not in live]:
            self._settle(op_id, None)
        self._set(**updates)

    def _settle(self, op_id: str, error: Exception | None) -> None:
        outcome = self._outcomes.pop(op_id, None)
        if outcome is None or outcome.done():
            return
        if error is None:
            outcome.set_result(op_id)
        else:
            outcome.set_exception(error)

    def _set(self, **updates: Any) -> None:
        with self.hold_trait_notifications():
            for name, value in updates.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
