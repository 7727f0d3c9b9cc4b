"""Traitlets models: the design's React hooks (docs/design.md#hooks-and-models), observable from Python.

``Connection`` <- useRealtimeConnection, ``Channel`` <- useChannel, ``Presence`` <-
usePresence, ``OptimisticList`` <- useOptimisticRealtime; ``CollabDoc`` is a shared CRDT
text; ``SharedState`` is a shared dict with conflict policies (the design's reconciliation).
Network events update their traits on the rtwidgets runtime thread; their public
methods are thread-safe.
"""

from rtwidgets.models.channel import Channel
from rtwidgets.models.collab import CollabDoc
from rtwidgets.models.connection import Connection
from rtwidgets.models.optimistic import OptimisticList
from rtwidgets.models.presence import Presence
from rtwidgets.models.shared_state import SharedState

__all__ = ["Channel", "CollabDoc", "Connection", "OptimisticList", "Presence", "SharedState"]
