"""One gateway for every kernel of a host: :func:`shared_gateway` (``Gateway.shared()``).

When a notebook is served as an app (Voilà, ``marimo run``) each viewer gets a kernel of their
own; a ``Gateway(port=0)`` per kernel would keep the viewers apart. :func:`shared_gateway` gives
every kernel of one user on one machine the same gateway, found in this order:

1. ``RTWIDGETS_GATEWAY_URL`` is set: the gateway a deployment runs itself, with its secret in
   ``RTWIDGETS_GATEWAY_SECRET`` (else ``RTWIDGETS_SECRET``, the CLI's variable). Nothing is
   started, checked or written.
2. The runtime file ``rtwidgets-gateway.json`` in the runtime directory (:func:`runtime_dir`)
   names a live gateway: its process runs **and** its URL answers ``/healthz`` (the file, its
   lock and who may read it: :mod:`rtwidgets.gateway.runtime_file`).
3. Otherwise a new ``python -m rtwidgets gateway --port 0 --runtime-file ...`` process is started,
   detached (its own session), so it outlives the kernel that started it; it stops by itself once
   it had no connection for ``idle_timeout`` seconds (:mod:`rtwidgets.gateway.idle`).

Rules of this module:

* Check-and-start runs under an exclusive ``fcntl.flock`` on ``rtwidgets-gateway.lock`` next to
  the runtime file, so kernels starting at the same moment end with exactly one gateway: the
  first starts it, the others wait for the lock and then find it. The gateway takes the same
  lock before it stops for idleness, and removes its runtime file under it.
* The runtime file is written by the gateway process itself once it listens (atomically: a
  0600 temporary file renamed into place) and removed by it when it stops, only while the file
  still names its pid. A file whose process died (or whose URL does not answer) is stale: it is
  replaced by the next start.
* The secret never appears on a command line: the child gets it in ``RTWIDGETS_SECRET``; it is
  stored only in the runtime file, mode 0600, in a directory created 0700. A runtime file that
  another user owns, or that others may read, is refused with a clear error (its secret may be
  known to them), never used.
* Every attach touches the runtime file (its mtime) under the lock: the gateway's idle clock
  counts from the latest attach, so a gateway found a moment ago does not stop before its new
  client connects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from rtwidgets.auth import issue_token

# The runtime file's names are re-exported: this module is where users look for them.
from .runtime_file import (
    DEFAULT_LOCK_TIMEOUT,
    RUNTIME_DIR_ENV,
    GatewayRecord,
    RuntimeLock,
    RuntimePaths,
    SharedGatewayError,
    read_record,
    remove_record,
    runtime_dir,
    touch_record,
    write_record,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "GATEWAY_SECRET_ENV",
    "GATEWAY_URL_ENV",
    "RUNTIME_DIR_ENV",
    "GatewayRecord",
    "RuntimeLock",
    "RuntimePaths",
    "SharedGateway",
    "SharedGatewayError",
    "gateway_from_env",
    "healthz_ok",
    "healthz_url",
    "is_live",
    "pid_alive",
    "read_record",
    "remove_record",
    "runtime_dir",
    "shared_gateway",
    "touch_record",
    "write_record",
]

log = logging.getLogger("rtwidgets.gateway.discovery")

GATEWAY_URL_ENV = "RTWIDGETS_GATEWAY_URL"
GATEWAY_SECRET_ENV = "RTWIDGETS_GATEWAY_SECRET"
# The CLI's own secret variable (rtwidgets.cli.SECRET_ENV; not imported: the CLI imports this module).
CLI_SECRET_ENV = "RTWIDGETS_SECRET"
# Long enough for a viewer to reload a page or come back from a coffee, short enough that a
# forgotten gateway does not linger for the day.
DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_START_TIMEOUT = 60.0
HEALTHZ_TIMEOUT = 5.0

Source = Literal["environment", "runtime-file", "started"]


# ----------------------------------------------------------------------------- liveness


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (a zombie counts: :func:`is_live` asks /healthz too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def healthz_url(url: str) -> str:
    """``http(s)://host:port/healthz`` of the gateway at ``ws(s)://host:port``.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL with a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a gateway URL (ws://host:port): {url!r}")
    scheme = "https" if parts.scheme == "wss" else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/healthz", "", ""))


def healthz_ok(url: str, timeout: float = HEALTHZ_TIMEOUT) -> bool:
    """True if the gateway at ``url`` answers ``/healthz`` with status ok."""
    try:
        with urllib.request.urlopen(healthz_url(url), timeout=timeout) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok"


def is_live(
    record: GatewayRecord,
    *,
    alive: Callable[[int], bool] = pid_alive,
    healthy: Callable[[str], bool] = healthz_ok,
) -> bool:
    """True if ``record`` names a running gateway: its pid exists and its URL answers."""
    return alive(record.pid) and healthy(record.url)


# ----------------------------------------------------------------------------- the handle


@dataclass(frozen=True)
class SharedGateway:
    """The gateway every kernel of this host shares: ``url`` and ``token(user)`` like a
    :class:`~rtwidgets.gateway.Gateway`, so code written for one works with the other.

    ``source`` says how it was found: ``"environment"`` (``RTWIDGETS_GATEWAY_URL``),
    ``"runtime-file"`` (another kernel started it) or ``"started"`` (this call started it).
    ``pid`` is None for a gateway from the environment.
    """

    url: str
    secret: str = field(repr=False)
    pid: int | None
    source: Source
    runtime_file: Path | None = None

    def token(
        self,
        user: str,
        channels: Sequence[str] = ("*",),
        *,
        publish: Sequence[str] | None = None,
        presence: Sequence[str] | None = None,
        ttl: float | None = 3600,
    ) -> str:
        """A token for ``user`` signed with the shared gateway's secret (as ``Gateway.token``).

        Raises:
            ValueError: ``user`` is empty.
        """
        return issue_token(self.secret, user, channels, publish=publish, presence=presence, ttl=ttl)

    @property
    def running(self) -> bool:
        """True while the gateway answers ``/healthz``."""
        return healthz_ok(self.url)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the shared gateway **for every kernel** (SIGTERM, then wait until it exited).

        Clients are closed with 1001 and do not reconnect; the next :func:`shared_gateway`
        starts a new gateway. Rarely wanted in a notebook: an idle gateway stops by itself.

        Raises:
            SharedGatewayError: the gateway came from the environment (its deployment runs
                it), or it did not exit within ``timeout`` seconds.
        """
        if self.pid is None:
            raise SharedGatewayError(
                f"this gateway comes from ${GATEWAY_URL_ENV}: the deployment that runs it stops it"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while healthz_ok(self.url, timeout=1.0) or _running_child(self.pid):
            if time.monotonic() > deadline:
                raise SharedGatewayError(f"the gateway (pid {self.pid}) did not stop within {timeout:g} s")
            time.sleep(0.05)  # polling for the exit


def _running_child(pid: int) -> bool:
    """True while ``pid`` is our own child and has not exited (reaps it once it has).

    The kernel that started the gateway is its parent until it exits: without reaping, the
    gateway would stay a zombie that :func:`pid_alive` still sees.
    """
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False  # not our child: its parent reaps it; /healthz tells whether it serves
    return done == 0


# ----------------------------------------------------------------------------- finding it


def gateway_from_env(environ: Mapping[str, str] | None = None) -> SharedGateway | None:
    """The deployment's gateway from ``RTWIDGETS_GATEWAY_URL`` (+ secret), or None if unset.

    Raises:
        SharedGatewayError: the URL is not ``ws://``/``wss://``, or no secret is set.
    """
    env = os.environ if environ is None else environ
    url = env.get(GATEWAY_URL_ENV, "").strip()
    if not url:
        return None
    try:
        healthz_url(url)
    except ValueError:
        raise SharedGatewayError(f"${GATEWAY_URL_ENV} must be a ws:// or wss:// URL, got {url!r}") from None
    secret = env.get(GATEWAY_SECRET_ENV) or env.get(CLI_SECRET_ENV)
    if not secret:
        raise SharedGatewayError(
            f"${GATEWAY_URL_ENV} is set but no secret: set ${GATEWAY_SECRET_ENV} to the secret the "
            "gateway signs tokens with"
        )
    return SharedGateway(url=url.rstrip("/"), secret=secret, pid=None, source="environment")


def shared_gateway(
    *,
    host: str = "127.0.0.1",
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    gateway_args: Sequence[str] = (),
    runtime_directory: str | os.PathLike[str] | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> SharedGateway:
    """The gateway every kernel of this user on this machine shares (see the module docstring).

    Args:
        host: the interface a gateway started here listens on.
        idle_timeout: a gateway started here stops after this many seconds without a connection.
        gateway_args: more ``rtwidgets gateway`` options for a gateway started here (e.g.
            ``["--redis", url]``); never a secret (command lines are visible to every user).
        runtime_directory: the runtime directory (default :func:`runtime_dir`).
        start_timeout: how long a gateway started here may take to listen.
        lock_timeout: how long to wait while another kernel holds the lock (starting one).

    Only a gateway started by this call takes ``host``, ``idle_timeout`` and ``gateway_args``;
    a running one is used as it is.

    Raises:
        SharedGatewayError: a bad ``RTWIDGETS_GATEWAY_*`` environment, an unsafe runtime file,
            a gateway that failed to start (the message holds its log's last lines), or the
            lock held longer than ``lock_timeout``.
        ValueError: ``idle_timeout`` or ``start_timeout`` is not positive, or ``gateway_args``
            sets an option this function sets itself.
    """
    if not idle_timeout > 0 or not start_timeout > 0:
        raise ValueError("idle_timeout and start_timeout must be positive")
    owned = {"--port", "--host", "--secret", "--idle-timeout", "--runtime-file", "--print-secret"}
    clash = sorted(a.split("=", 1)[0] for a in gateway_args if a.split("=", 1)[0] in owned)
    if clash:
        raise ValueError(f"gateway_args must not set {', '.join(clash)} (shared_gateway sets them)")
    external = gateway_from_env()
    if external is not None:
        return external
    directory = Path(runtime_directory) if runtime_directory is not None else runtime_dir()
    paths = RuntimePaths(directory).ensure()
    with RuntimeLock(paths.lock).acquire(lock_timeout):
        record = read_record(paths.record)
        if record is not None and is_live(record):
            touch_record(paths.record)
            log.debug("attached to the shared gateway %s (pid %s)", record.url, record.pid)
            return SharedGateway(record.url, record.secret, record.pid, "runtime-file", paths.record)
        if record is not None:
            log.info(
                "the shared gateway of %s (pid %s) is gone: starting a new one", paths.record, record.pid
            )
        record = _start(paths, host, idle_timeout, gateway_args, start_timeout)
        return SharedGateway(record.url, record.secret, record.pid, "started", paths.record)


# Gateways this process started, kept so Popen does not warn that they still run when it is
# collected: they are meant to outlive us.
_started: list[subprocess.Popen[bytes]] = []


def _start(
    paths: RuntimePaths, host: str, idle_timeout: float, gateway_args: Sequence[str], start_timeout: float
) -> GatewayRecord:
    """Start a detached gateway (the lock is held) and wait until its runtime file names it."""
    # Reap the gateways this process started that have exited since (idled out): they would
    # stay zombies while this kernel lives.
    _started[:] = [p for p in _started if p.poll() is None]
    secret = secrets.token_hex(32)
    cmd = [
        sys.executable,
        "-m",
        "rtwidgets",
        "gateway",
        "--host",
        host,
        "--port",
        "0",
        "--idle-timeout",
        repr(float(idle_timeout)),
        "--runtime-file",
        str(paths.record),
        "--log-level",
        "warning",
        *gateway_args,
    ]
    env = {**os.environ, CLI_SECRET_ENV: secret, "PYTHONUNBUFFERED": "1"}
    log_file = _open_log(paths.log)
    try:
        process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,  # its own session: a kernel's shutdown does not take it along
            close_fds=True,
        )
    finally:
        log_file.close()
    _started.append(process)
    deadline = time.monotonic() + start_timeout
    while True:
        code = process.poll()
        if code is not None:
            raise SharedGatewayError(
                f"the shared gateway exited with {code} while starting; its log {paths.log} ends with:\n"
                + _tail(paths.log)
            )
        record = read_record(paths.record)
        if record is not None and record.pid == process.pid and healthz_ok(record.url):
            log.info("started the shared gateway %s (pid %s)", record.url, record.pid)
            return record
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise SharedGatewayError(
                f"the shared gateway did not start within {start_timeout:g} s; its log {paths.log} "
                "ends with:\n" + _tail(paths.log)
            )
        time.sleep(0.02)  # polling for the runtime file


def _open_log(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"
