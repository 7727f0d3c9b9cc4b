"""The shared gateway's runtime file and its lock: where they live, what they hold, who may read it.

:mod:`rtwidgets.gateway.discovery` finds the gateway every kernel of a host shares through these;
the gateway process writes and removes its own record (``rtwidgets gateway --runtime-file``) and
the idle stop (:mod:`rtwidgets.gateway.idle`) takes the lock.

Rules of this module:

* A record is written atomically (a 0600 temporary file renamed into place): readers never see
  half a file. Its directory is created 0700.
* A record is trusted only if this user owns it, nobody else may read it, and it is not a
  symbolic link; otherwise :class:`SharedGatewayError` says why and what to do, and it is not
  used (its secret may be known to others). Unparsable garbage reads as no record (stale).
* The lock is an exclusive ``fcntl.flock`` on a lock file that is never removed (every process
  locks the same inode); it is per open file, so it also excludes threads of one process. A wait
  for it is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rtwidgets._version import __version__
from rtwidgets.errors import SharedGatewayError  # defined there; re-exported from here

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "RUNTIME_DIR_ENV",
    "GatewayRecord",
    "RuntimeLock",
    "RuntimePaths",
    "SharedGatewayError",
    "read_record",
    "remove_record",
    "runtime_dir",
    "touch_record",
    "write_record",
]

log = logging.getLogger("rtwidgets.gateway.discovery")

RUNTIME_DIR_ENV = "RTWIDGETS_RUNTIME_DIR"
DEFAULT_LOCK_TIMEOUT = 120.0  # a start under the lock may take a minute on a busy machine
RECORD_NAME = "rtwidgets-gateway.json"
LOCK_NAME = "rtwidgets-gateway.lock"
LOG_NAME = "rtwidgets-gateway.log"


# ----------------------------------------------------------------------------- where


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user directory holding the runtime file (not created here).

    In order: ``$RTWIDGETS_RUNTIME_DIR``; Jupyter's runtime directory
    (``jupyter_core.paths.jupyter_runtime_dir()``, which honours ``$JUPYTER_RUNTIME_DIR``) when
    jupyter_core is installed, else ``$JUPYTER_RUNTIME_DIR``; ``$XDG_RUNTIME_DIR/rtwidgets``;
    ``~/.local/share/rtwidgets/runtime``. Kernels share a gateway when they resolve the same
    directory: a host whose kernels run with different Jupyter directories sets
    ``RTWIDGETS_RUNTIME_DIR`` for all of them.

    Args:
        environ: the environment to read (default ``os.environ``); jupyter_core is only asked
            when it is ``os.environ``, since it reads that itself.
    """
    env = os.environ if environ is None else environ
    if env.get(RUNTIME_DIR_ENV):
        return Path(env[RUNTIME_DIR_ENV]).expanduser()
    if environ is None:
        try:
            from jupyter_core.paths import jupyter_runtime_dir
        except ImportError:
            pass
        else:
            return Path(jupyter_runtime_dir())
    if env.get("JUPYTER_RUNTIME_DIR"):
        return Path(env["JUPYTER_RUNTIME_DIR"]).expanduser()
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "rtwidgets"
    return Path("~/.local/share/rtwidgets/runtime").expanduser()


@dataclass(frozen=True)
class RuntimePaths:
    """The runtime file, its lock and the shared gateway's log, in one directory."""

    directory: Path

    @property
    def record(self) -> Path:
        return self.directory / RECORD_NAME

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def log(self) -> Path:
        return self.directory / LOG_NAME

    def ensure(self) -> RuntimePaths:
        """Create the directory (0700) if it is missing; return ``self``.

        Raises:
            SharedGatewayError: it cannot be created.
        """
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SharedGatewayError(
                f"cannot create the runtime directory {self.directory}: {exc.strerror or exc} "
                f"(set ${RUNTIME_DIR_ENV} to a writable directory)"
            ) from None
        return self


# ----------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class GatewayRecord:
    """What the runtime file says about the shared gateway (secret kept out of ``repr``)."""

    url: str
    pid: int
    secret: str = field(repr=False)
    version: str = __version__
    started_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "url": self.url,
                "pid": self.pid,
                "secret": self.secret,
                "version": self.version,
                "started_at": self.started_at,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> GatewayRecord:
        """Parse a runtime file's text.

        Raises:
            ValueError: not a JSON object with a ``ws://``/``wss://`` ``url``, a positive int
                ``pid`` and a non-empty ``secret``.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the runtime file is not a JSON object")
        url, pid, secret = data.get("url"), data.get("pid"), data.get("secret")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"bad url {url!r}")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"bad pid {pid!r}")
        if not isinstance(secret, str) or not secret:
            raise ValueError("missing secret")
        version = data.get("version")
        started_at = data.get("started_at")
        return cls(
            url=url,
            pid=pid,
            secret=secret,
            version=version if isinstance(version, str) else "?",
            started_at=float(started_at) if isinstance(started_at, (int, float)) else 0.0,
        )


def write_record(path: Path, record: GatewayRecord) -> None:
    """Write ``record`` to ``path`` atomically, mode 0600 (readers never see half a file).

    Raises:
        OSError: the directory is not writable.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(record.to_json())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(path: Path) -> GatewayRecord | None:
    """The record at ``path``; None when there is none or it is unreadable garbage (stale).

    Raises:
        SharedGatewayError: the file belongs to another user or others may read it: its
            secret may be known to them, so it is not used (the message says how to fix it).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SharedGatewayError(f"the runtime file {path} is a symbolic link: remove it") from None
        raise SharedGatewayError(f"cannot read the runtime file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, encoding="utf-8") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.getuid():
            raise SharedGatewayError(
                f"the runtime file {path} belongs to another user (uid {info.st_uid}): not using it; "
                f"remove it, or set ${RUNTIME_DIR_ENV} to a directory of your own"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise SharedGatewayError(
                f"the runtime file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}): "
                "its secret may be known to them; remove it (a new gateway and secret are then made)"
            )
        text = file.read()
    try:
        return GatewayRecord.from_json(text)
    except ValueError as exc:
        log.warning("ignoring the malformed runtime file %s (%s): it will be replaced", path, exc)
        return None


def remove_record(path: Path, pid: int) -> bool:
    """Remove the runtime file if it still names ``pid``; return whether it did."""
    try:
        record = read_record(path)
    except SharedGatewayError:
        return False  # not ours to touch
    if record is None or record.pid != pid:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def touch_record(path: Path) -> None:
    """Mark an attach: the gateway's idle clock counts from the file's newest mtime."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)


# ----------------------------------------------------------------------------- the lock


class RuntimeLock:
    """An exclusive ``fcntl.flock`` on a lock file (per open file: also excludes threads).

    Args:
        path: the lock file (created 0600 when missing; never removed, so every process locks
            the same inode).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = DEFAULT_LOCK_TIMEOUT, *, poll: float = 0.05) -> RuntimeLock:
        """Wait for the lock at most ``timeout`` seconds; return ``self``.

        Raises:
            SharedGatewayError: another process held it longer, or locks are not supported here.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise SharedGatewayError(
                "a shared gateway needs POSIX file locks (fcntl); on this system run a gateway "
                "yourself and set $RTWIDGETS_GATEWAY_URL and $RTWIDGETS_GATEWAY_SECRET"
            ) from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise SharedGatewayError(
                        f"another process held {self.path} for more than {timeout:g} s "
                        "(a gateway still starting?); try again"
                    ) from None
                time.sleep(poll)  # polling a non-blocking lock, so the wait stays bounded
            else:
                self._fd = fd
                return self

    def release(self) -> None:
        """Release the lock (closing the file releases the flock). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> RuntimeLock:
        return self.acquire() if self._fd is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
