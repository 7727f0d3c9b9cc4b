"""Process limits for the gateway command: as many open files as the system allows.

Every WebSocket connection is one file descriptor, and the usual soft ``RLIMIT_NOFILE`` (1024)
caps a gateway far below what its memory and CPU could serve. The hard limit is what an
unprivileged process may raise itself to, so ``rtwidgets gateway`` does that at start.

Rules of this module:

* Only the soft limit moves, and only upwards; the hard limit is never touched.
* Failure to raise is not fatal (the gateway still serves, with fewer connections): the caller
  gets the limits that are in force and can say so.
"""

from __future__ import annotations

import contextlib
import resource

__all__ = ["raise_nofile_limit"]

# When the hard limit is unlimited, Linux still refuses a soft limit above fs.nr_open
# (1048576 by default): aim there rather than at "infinity".
_UNLIMITED_TARGET = 1_048_576


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return ``(soft, hard)`` now in force.

    A soft limit already at or above the target is left as it is. If the kernel refuses the
    new value (``ValueError``/``OSError`` from ``setrlimit``), the limits stay unchanged.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _UNLIMITED_TARGET
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # refused: unchanged, read back below
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)
