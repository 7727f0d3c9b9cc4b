"""Source of the notebook cells the e2e tests generate (what a user would type).

Tokens are read from a private file (``token_file``), so they never appear in a cell,
its output, a screenshot or a saved notebook.
"""

from __future__ import annotations

__all__ = ["chat", "collab_text", "connect", "inspector", "live_chart", "todo_lists"]


def connect(url: str, token_file: str) -> str:
    """A cell that opens ``conn``, a :class:`Connection` to ``url``, and shows its status."""
    return (
        "from pathlib import Path\n"
        "from rtwidgets.models.connection import Connection\n"
        "from rtwidgets.widgets import ConnectionStatus\n"
        "\n"
        f"conn = Connection({url!r}, token=Path({token_file!r}).read_text().strip())\n"
        "conn.connect()\n"
        "ConnectionStatus(conn)"
    )


def chat(channel: str) -> str:
    """A cell showing who is on ``channel`` (PresenceBar) and a Chat on it."""
    return (
        "from rtwidgets.widgets import Chat, PresenceBar\n"
        "\n"
        f"chat = Chat(conn, {channel!r})\n"
        "display(PresenceBar(chat.model), chat)"
    )


def todo_lists(*channels: str) -> str:
    """A cell showing one TodoList per channel (an OptimisticList each)."""
    lines = [
        "from rtwidgets.models.optimistic import OptimisticList",
        "from rtwidgets.widgets import TodoList",
        "",
        f"todo_lists = [TodoList(OptimisticList(conn, name)) for name in {list(channels)!r}]",
        "display(*todo_lists)",
    ]
    return "\n".join(lines)


def live_chart(channel: str, title: str) -> str:
    """A cell plotting the numeric stream of ``channel`` in a LiveChart."""
    return (
        "from rtwidgets.models.channel import Channel\n"
        "from rtwidgets.widgets import LiveChart\n"
        "\n"
        f"chart = LiveChart(Channel(conn, {channel!r}), title={title!r}, window_ms=5000)\n"
        "chart"
    )


def collab_text(channel: str) -> str:
    """A cell showing a CollabText editor on the shared document ``channel``."""
    return (
        "from rtwidgets.models.collab import CollabDoc\n"
        "from rtwidgets.widgets.collab_text import CollabText\n"
        "\n"
        f"doc = CollabDoc(conn, {channel!r})\n"
        "CollabText(doc, height=160)"
    )


def inspector() -> str:
    """A cell showing an Inspector of ``conn``."""
    return "from rtwidgets.widgets import Inspector\n\nInspector(conn)"
