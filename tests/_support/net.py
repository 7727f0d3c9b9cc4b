"""Free TCP ports on 127.0.0.1."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now.

    Only for processes that must keep one fixed port across restarts (a server given the
    port on its command line); in-process servers bind port 0 instead. The port is released
    before it is returned, so another process could take it first: callers check that the
    process they started is the one answering.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
