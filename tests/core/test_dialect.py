"""The cores' one verb set: renamed methods keep their old names as warning aliases."""

from __future__ import annotations

import pytest

from rtwidgets.core.optimistic import OptimisticStore
from rtwidgets.core.ordering import MessageOrderer, OrderedMessage, OrderingConfig
from rtwidgets.core.reconcile import StateReconciler


def test_optimistic_store_old_names_warn_and_do_the_same() -> None:
    store = OptimisticStore("todos")
    store.create({"id": "a", "text": "x"}, now=1.0)
    with pytest.deprecated_call(match=r"drain_events\(\) is deprecated, use events\(\)"):
        old = store.drain_events()
    assert [type(e).__name__ for e in old] == ["Created"]
    assert store.events() == []
    with pytest.deprecated_call(match="handle_frame"):
        assert store.handle_frame({"type": "pong"}) is False


def _msg(seq: int, data: str) -> OrderedMessage[str]:
    return OrderedMessage(
        id=data, sender_id="s", sequence_number=seq, global_sequence=seq, timestamp=0.0, data=data
    )


def test_orderer_receive_is_on_message() -> None:
    orderer: MessageOrderer[str] = MessageOrderer(OrderingConfig(type="total"))
    with pytest.deprecated_call(match=r"receive\(\) is deprecated, use on_message\(\)"):
        assert orderer.receive(_msg(1, "a"), now=0.0) == ["a"]
    assert orderer.on_message(_msg(2, "b"), now=0.0) == ["b"]


def test_reconciler_old_names_warn() -> None:
    rec: StateReconciler[dict[str, object]] = StateReconciler("ch", lambda state, _frame: state, {})
    with pytest.deprecated_call(match=r"drain_dropped\(\) is deprecated, use dropped\(\)"):
        assert rec.drain_dropped() == []
    assert StateReconciler.handle_server_event.__name__ == "handle_server_event"
    assert "on_sync_response" in (StateReconciler.handle_sync_response.__doc__ or "")
