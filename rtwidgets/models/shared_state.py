"""``SharedState``: a realtime dict shared by everyone on a channel, as a traitlets model.

The I/O layer of :class:`~rtwidgets.core.shared_state.SharedStateCore` (which decides what is
sent and how offline changes reconcile). Rules of this module:

* The model owns a :class:`~rtwidgets.models.channel.Channel` (no history, no keyed-state
  catch-up: the ``sync`` after every (re)subscribe carries the state, as a delta when the
  gateway's history covers the gap and as a snapshot otherwise).
* Everything that touches the core runs on the runtime thread; ``set``/``update``/``delete``
  may be called from any thread and take effect in ``values`` at once.
* Values must be JSON-serialisable: anything else is refused with ``TypeError`` before it
  touches the state. Nothing is dropped silently: a refused change is rolled back and named in
  ``error``; a change dropped by ``"server-wins"`` is listed in ``dropped``.
* A ``sync`` snapshot is also seen by other models on the same channel of this connection (as
  a reset); give a shared state a channel of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from traitlets import Bool, Dict, HasTraits, Int, List, Unicode

from rtwidgets.client_errors import ServerError
from rtwidgets.core.reconcile import ReconcileError
from rtwidgets.core.shared_state import MergeFunction, SharedStateCore
from rtwidgets.models._binding import DeadlineTimer, LoopClock, TaskGroup, on_runtime, run_blocking
from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime

__all__ = ["SharedState"]

log = logging.getLogger("rtwidgets.models")
_MAX_DROPPED = 100  # the newest changes dropped by "server-wins" that `dropped` keeps
_MIN_RETRY = 0.01  # seconds: a rate-limited change is re-sent no sooner than this


def check_json(key: str, value: Any) -> None:
    """Raise ``TypeError`` naming ``key`` if ``value`` cannot travel as JSON."""
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise TypeError(
            f"shared value for {key!r} is not JSON-serialisable ({type(value).__name__}: {exc}); "
            "share numbers, strings, booleans, None, lists and dicts of them"
        ) from None


class SharedState(HasTraits):
    """A dict shared in real time by every participant on ``name``.

    A change anywhere appears everywhere; a late joiner gets the current values; changes made
    while offline are reconciled on reconnect by ``conflict``: ``"client-wins"`` (default: the
    offline change is applied after the others'), ``"server-wins"`` (a key someone else changed
    meanwhile keeps their value; ours is dropped and listed in ``dropped``) or a merge function
    ``merge(key, theirs, ours) -> value``. Non-conflicting changes always go through.

    Args:
        connection: the :class:`Connection` to share over.
        name: the channel.
        conflict: the conflict policy (see above).

    Raises:
        ValueError: an unknown policy.
    """

    name = Unicode(read_only=True)
    values = Dict(help="the shared dict as this participant sees it (incl. its unsent changes)")
    synced = Bool(False, help="the state was received from the gateway at least once")
    is_live = Bool(False, help="subscribed and synced: changes go out at once")
    pending = Int(0, help="changes not yet confirmed by the gateway")
    conflicts = Int(0, help="offline changes that met someone else's change of the same key")
    dropped: List[dict[str, Any]] = List(help="changes dropped by 'server-wins': {key, value}, newest last")
    error = Unicode("", help="why the last change or sync failed; '' when fine")

    def __init__(
        self,
        connection: Connection,
        name: str,
        *,
        conflict: str | MergeFunction = "client-wins",
    ) -> None:
        self._core = SharedStateCore(name, conflict)  # validates the policy first
        super().__init__()
        self.set_trait("name", name)
        self.connection = connection
        self._runtime = get_runtime()
        self._clock = LoopClock(self._runtime.loop)
        self._tasks = TaskGroup(f"shared state {name!r}")
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._closed = False
        self._syncing = False
        self._handle_unsub: Callable[[], None] | None = None
        self._retry_timer = DeadlineTimer(self._runtime.loop, self._resend_rate_limited)
        self.channel = Channel(connection, name)
        self.channel.on_message(self._on_frame)
        self.channel.observe(self._on_subscribed, names=["is_subscribed"])
        on_runtime(self._after_subscribe, self.channel.is_subscribed)

    # ------------------------------------------------------------------ public API

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as this participant sees it (incl. its unsent changes).

        Args:
            key: the key to read.
            default: returned when ``key`` is not set.
        """
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (any thread; visible in ``values`` when it returns).

        Args:
            key: a non-empty string.
            value: any JSON-serialisable value.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
            ValueError: ``key`` is not a non-empty string, or the state is closed.
        """
        self.update({key: value})

    def update(self, changes: Mapping[str, Any]) -> None:
        """Set several keys (any thread); each is one change on the wire.

        Args:
            changes: key -> new value; keys are non-empty strings, values JSON-serialisable.
                Nothing is applied when one of them is refused.

        Raises:
            TypeError: a value is not JSON-serialisable.
            ValueError: a key is not a non-empty string, or the state is closed.
        """
        items = dict(changes)
        for key, value in items.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"a shared state key must be a non-empty string, got {key!r}")
            check_json(key, value)
        self._now(self._apply_local, items, False)

    def delete(self, key: str) -> None:
        """Delete ``key`` for everyone (any thread; gone from ``values`` at once).

        Args:
            key: the key to delete.

        Raises:
            ValueError: the state is closed.
        """
        self._now(self._apply_local, {key: None}, True)

    def on_change(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(values)`` on the runtime thread after every change.

        Args:
            callback: receives the whole ``values`` dict; it must not block.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def wait_synced(self, timeout: float = 10.0) -> SharedState:
        """Block until the state was received and changes go out at once.

        Args:
            timeout: seconds to wait.

        Returns:
            This state, for chaining.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
            RuntimeError: called on the runtime thread (it would deadlock).
        """
        if self._runtime.in_runtime_thread():
            raise RuntimeError("SharedState.wait_synced() cannot block on the rtwidgets runtime thread")
        live = threading.Event()

        def check(_change: Any = None) -> None:
            if self.is_live:
                live.set()

        self.observe(check, names=["is_live"])
        try:
            check()
            if not live.wait(timeout):
                raise TimeoutError(
                    f"SharedState {self.name!r} not synced within {timeout} s "
                    f"(connection {self.connection.state!r}, error {self.error!r})"
                )
        finally:
            self.unobserve(check, names=["is_live"])
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop sharing (idempotent): the channel model closes, pending changes stay unsent.

        Args:
            timeout: seconds to wait for the unsubscribe; past it the channel is given up
                without an error.
        """
        if self._closed:
            return
        self._closed = True
        self.channel.unobserve(self._on_subscribed, names=["is_subscribed"])
        self._tasks.cancel_all()
        self._retry_timer.cancel()
        self.channel.close(timeout)

    def __repr__(self) -> str:
        return f"<SharedState {self.name!r} keys={sorted(self.values)} live={self.is_live}>"

    # ------------------------------------------------------------------ runtime thread

    def _run(self, fn: Callable[..., None], *args: Any) -> None:
        on_runtime(fn, *args, runtime=self._runtime)

    def _now(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the runtime thread and return once it ran, so the caller sees its
        change in ``values`` (the core lives on that thread)."""
        if self._closed:
            raise ValueError(f"SharedState {self.name!r} is closed")
        if self._runtime.in_runtime_thread():
            fn(*args)
            return

        async def run() -> None:
            fn(*args)

        run_blocking(run(), 10.0, f"SharedState {self.name!r}")

    def _apply_local(self, items: dict[str, Any], delete: bool) -> None:
        if self._closed:
            return
        now = self._clock()
        for key, value in items.items():
            if delete:
                self._core.delete(key, now)
            else:
                self._core.set(key, value, now)
        self._flush()

    def _on_subscribed(self, change: dict[str, Any]) -> None:
        self._run(self._after_subscribe, change["new"])

    def _after_subscribe(self, subscribed: bool) -> None:
        if self._closed:
            return
        if not subscribed:
            self._core.go_offline()
            self._syncing = False
            self._publish_traits()
            return
        self._start_sync()

    def _start_sync(self) -> None:
        if self._syncing or self._closed:
            return
        self._syncing = True
        self._tasks.spawn(self._sync())

    async def _sync(self) -> None:
        handle = self.channel.handle
        try:
            if handle is None:
                return
            frame = self._core.sync_request()
            response = await handle.sync(frame)
            self._core.on_sync_response(response)
            self._set(error="")
        except ReconcileError as exc:  # the gateway's answer does not fit our state: say which
            self._core.go_offline()
            self._set(error=f"sync refused by the reconciler: {exc}")
            log.error("SharedState %r: sync_response not applied: %s", self.name, exc)
        except Exception as exc:  # shown in `error`; the next resubscribe syncs again
            self._core.go_offline()
            self._set(error=f"sync failed: {exc}")
            log.warning("SharedState %r: sync failed: %s", self.name, exc)
        finally:
            self._syncing = False
        self._flush()
        if self._core.needs_sync and self.channel.is_subscribed:
            self._start_sync()

    def _resend_rate_limited(self, _when: float) -> None:
        if self._closed:
            return
        self._core.resend_rate_limited()
        self._flush()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if self._closed:
            return
        self._core.on_message(frame)
        if self._core.needs_sync and self._core.live:
            self._start_sync()  # a gap or a new epoch: fetch what was missed
        self._publish_traits()

    def _flush(self) -> None:
        handle = self.channel.handle
        for frame in self._core.data_to_send():
            if handle is None:
                break  # not subscribed: the next sync re-sends it
            self._tasks.spawn(self._send(handle, frame))
        self._publish_traits()

    async def _send(self, handle: Any, frame: dict[str, Any]) -> None:
        try:
            await handle.publish(frame["data"], key=frame["key"], msg_id=frame["msgId"])
        except ServerError as exc:
            if exc.code == "rate_limited":
                # Not a refusal of the value: send it (or a newer one of its key) when allowed.
                self._core.on_rate_limited(frame["msgId"])
                self._retry_timer.schedule(self._clock() + max(exc.retry_after or 0.0, _MIN_RETRY))
                return
            self._core.on_refused(frame["msgId"])
            self._set(error=f"change of {frame['key']!r} refused: {exc}")
            self._publish_traits()
        except Exception as exc:  # connection closed: kept pending, re-sent after the next sync
            log.debug("SharedState %r: publish of %r deferred: %s", self.name, frame["key"], exc)

    def _publish_traits(self) -> None:
        core = self._core
        dropped = [{"key": k, "value": v} for k, v in core.dropped[-_MAX_DROPPED:]]
        before = self.values
        self._set(
            values=dict(core.state),
            synced=self.synced or core.live,
            is_live=core.live and self.channel.is_subscribed,
            pending=core.pending,
            conflicts=core.conflicts,
            dropped=dropped,
        )
        if self.values != before:
            for listener in list(self._listeners):
                try:
                    listener(dict(self.values))
                except Exception:
                    log.exception("SharedState listener %r failed", listener)

    def _set(self, **updates: Any) -> None:
        with self.hold_trait_notifications():
            for name, value in updates.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
