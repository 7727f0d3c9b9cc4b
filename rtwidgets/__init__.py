"""rtwidgets: reactive realtime widgets for Jupyter.

Public names are imported lazily, so ``python -m rtwidgets gateway`` does not pay for
ipywidgets/anywidget, and importing the package never starts a thread.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rtwidgets._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # gateway and auth
    "Gateway": "rtwidgets.gateway",
    "GatewayConfig": "rtwidgets.gateway",
    "issue_token": "rtwidgets.auth",
    # asyncio client and sync facade
    "RealtimeConnection": "rtwidgets.client",
    "connect": "rtwidgets.sync_client",
    # models (the design's hooks: docs/design.md#hooks-and-models)
    "Connection": "rtwidgets.models",
    "Channel": "rtwidgets.models",
    "Presence": "rtwidgets.models",
    "OptimisticList": "rtwidgets.models",
    "OperationRolledBack": "rtwidgets.errors",
    "CollabDoc": "rtwidgets.models",
    "SharedState": "rtwidgets.models",
    # any widget, shared
    "share": "rtwidgets.sharing",
    "ShareLink": "rtwidgets.sharing",
    # widgets
    "ConnectionStatus": "rtwidgets.widgets",
    "Chat": "rtwidgets.widgets",
    "PresenceBar": "rtwidgets.widgets",
    "TodoList": "rtwidgets.widgets",
    "LiveChart": "rtwidgets.widgets",
    "Inspector": "rtwidgets.widgets",
    "CollabText": "rtwidgets.widgets",
    "GatewayMonitor": "rtwidgets.widgets",
    # widget message budget
    "set_message_budget": "rtwidgets.models._binding",
    # fault injection
    "ChaosProxy": "rtwidgets.chaos",
    # errors (all defined in rtwidgets.errors)
    "RealtimeError": "rtwidgets.errors",
    "AuthenticationError": "rtwidgets.errors",
    "ConnectionClosedError": "rtwidgets.errors",
    "ConnectionFailedError": "rtwidgets.errors",
    "QueueFullError": "rtwidgets.errors",
    "AckTimeoutError": "rtwidgets.errors",
    "ServerError": "rtwidgets.errors",
    "ChannelClosedError": "rtwidgets.errors",
    "CollabError": "rtwidgets.errors",
    "SharedGatewayError": "rtwidgets.errors",
    "BundleMissingError": "rtwidgets.errors",
}

__all__ = [
    "AckTimeoutError",
    "AuthenticationError",
    "BundleMissingError",
    "Channel",
    "ChannelClosedError",
    "ChaosProxy",
    "Chat",
    "CollabDoc",
    "CollabError",
    "CollabText",
    "Connection",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "ConnectionStatus",
    "Gateway",
    "GatewayConfig",
    "GatewayMonitor",
    "Inspector",
    "LiveChart",
    "OperationRolledBack",
    "OptimisticList",
    "Presence",
    "PresenceBar",
    "QueueFullError",
    "RealtimeConnection",
    "RealtimeError",
    "ServerError",
    "ShareLink",
    "SharedGatewayError",
    "SharedState",
    "TodoList",
    "__version__",
    "connect",
    "issue_token",
    "set_message_budget",
    "share",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtwidgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from rtwidgets.auth import issue_token
    from rtwidgets.chaos import ChaosProxy
    from rtwidgets.client import RealtimeConnection
    from rtwidgets.errors import (
        AckTimeoutError,
        AuthenticationError,
        BundleMissingError,
        ChannelClosedError,
        CollabError,
        ConnectionClosedError,
        ConnectionFailedError,
        OperationRolledBack,
        QueueFullError,
        RealtimeError,
        ServerError,
        SharedGatewayError,
    )
    from rtwidgets.gateway import Gateway, GatewayConfig
    from rtwidgets.models import Channel, Connection, OptimisticList, Presence, SharedState
    from rtwidgets.models._binding import set_message_budget
    from rtwidgets.models.collab import CollabDoc
    from rtwidgets.sharing import ShareLink, share
    from rtwidgets.sync_client import connect
    from rtwidgets.widgets import Chat, ConnectionStatus, Inspector, LiveChart, PresenceBar, TodoList
    from rtwidgets.widgets.collab_text import CollabText
    from rtwidgets.widgets.gateway_monitor import GatewayMonitor
