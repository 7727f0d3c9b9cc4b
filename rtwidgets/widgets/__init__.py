"""anywidget front ends for the rtwidgets models (one module per widget).

Each widget's JavaScript is the bundle ``rtwidgets/static/<name>.js``; creating a widget
without it raises :class:`BundleMissingError` saying how to build it.
"""

from rtwidgets.widgets._base import BundleMissingError, IntentError
from rtwidgets.widgets.chat import Chat
from rtwidgets.widgets.collab_text import CollabText
from rtwidgets.widgets.connection_status import ConnectionStatus
from rtwidgets.widgets.gateway_monitor import GatewayMonitor
from rtwidgets.widgets.inspector import Inspector
from rtwidgets.widgets.live_chart import LiveChart
from rtwidgets.widgets.presence_bar import PresenceBar
from rtwidgets.widgets.todo_list import TodoList

__all__ = [
    "BundleMissingError",
    "Chat",
    "CollabText",
    "ConnectionStatus",
    "GatewayMonitor",
    "Inspector",
    "IntentError",
    "LiveChart",
    "PresenceBar",
    "TodoList",
]
