"""A widget's catch-up snapshot must never overwrite a newer model value.

Widgets mirror model traits that change on the runtime thread. At construction they catch
up with the model's current values; if that snapshot were read on the caller's thread and
queued after a newer update from the runtime thread, "latest wins" would apply the stale
snapshot (seen in CI as a ConnectionStatus stuck on "connecting"). The test forces exactly
that interleaving: the model changes on the runtime thread right after the widget starts
its catch-up from the caller's thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtwidgets.gateway import Gateway
from rtwidgets.models import Connection
from rtwidgets.models._binding import CoalescedSync
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets import ConnectionStatus
from rtwidgets.widgets._base import RealtimeWidget

from .conftest import wait_until


async def _set_state(conn: Connection, state: str) -> None:
    conn.set_trait("state", state)


def test_catch_up_never_applies_a_stale_snapshot(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Connection(gateway.url, token=gateway.token("alice"))  # never connected: nothing else moves
    rt = get_runtime()
    assert conn.state == "disconnected"
    raced: list[str] = []

    def race() -> None:
        # The model changes on the runtime thread after the widget read it on this thread.
        if not raced and not rt.in_runtime_thread():
            raced.append("changed")
            rt.run(_set_state(conn, "connecting"), timeout=10)

    original_set, original_run = CoalescedSync.set, RealtimeWidget._run
    original_refresh = CoalescedSync.refresh

    def racing_set(self: CoalescedSync, **values: Any) -> None:
        race()
        original_set(self, **values)

    def racing_run(self: RealtimeWidget, fn: Any, *args: Any) -> None:
        race()
        original_run(self, fn, *args)

    def racing_refresh(self: CoalescedSync, read: Any) -> None:
        race()
        original_refresh(self, read)

    monkeypatch.setattr(CoalescedSync, "set", racing_set)
    monkeypatch.setattr(CoalescedSync, "refresh", racing_refresh)
    monkeypatch.setattr(RealtimeWidget, "_run", racing_run)
    widget = ConnectionStatus(conn)
    try:
        assert raced == ["changed"], "the interleaving under test did not happen"
        wait_until(lambda: widget.state == "connecting", what="the widget shows the newer state")
        # Let every queued update land (nothing pending in the coalescer, the loop drained),
        # then check that no stale value overwrote the newer one.
        wait_until(lambda: rt.run(_pending(widget), timeout=10) == 0, what="queued updates flushed")
        assert widget.state == conn.state == "connecting"
    finally:
        widget.close()
        conn.close()


async def _pending(widget: ConnectionStatus) -> int:
    """Updates still waiting in the widget's coalescer, read on the runtime thread after a turn
    of the loop (so hand-offs queued before this call have run)."""
    await asyncio.sleep(0)
    return widget._sync._coalescer.stats().pending
