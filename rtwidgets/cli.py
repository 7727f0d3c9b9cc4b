"""The ``rtwidgets`` command line: run a gateway, mint tokens.

Contract of each sub-command (exit codes are part of the interface; scripts rely on them):

* ``rtwidgets gateway ...`` runs in the foreground on its own event loop (uvloop when it
  is installed, unless ``--no-uvloop``; the loop in use is logged to stderr). Once it
  listens it prints exactly one line to stdout, ``rtwidgets gateway listening on
  ws://HOST:PORT`` (the real port when ``--port 0``), and flushes it. SIGINT/SIGTERM stop
  it gracefully and the exit code is 0: clients are closed with 1012 "restarting" (they
  reconnect, e.g. to another gateway on the same Redis) when ``--redis`` is given, else with
  1001 "going away" (they do not reconnect); ``--on-stop`` chooses explicitly. A port already
  in use, an unreachable Redis or any other start-up failure prints one line to stderr
  and exits with 1 (no traceback unless ``--log-level debug``). With ``--idle-timeout S`` it
  also stops by itself (exit 0, clients closed as on SIGTERM) once it had no connection for S
  seconds. With ``--runtime-file PATH`` it writes its URL, pid and secret to PATH (mode 0600)
  once it listens and removes the file when it stops: this is how ``Gateway.shared()``
  (:mod:`rtwidgets.gateway.discovery`) starts the gateway every kernel of a host shares.
  With ``--workers N`` (``auto``: one per CPU) N gateway processes share the port
  (:mod:`rtwidgets.gateway.workers`): the same single readiness line once all N listen, a worker
  that dies is restarted, SIGHUP restarts them one by one (clients closed with 1012 resume on
  the others), SIGINT/SIGTERM stop them all (exit 0). More than one worker without ``--redis`` is
  a usage error (exit 2).
* ``rtwidgets token ...`` prints a signed token as its last stdout line (exit 0); a
  missing secret is a usage error (exit 2).
* Usage errors exit with 2 (argparse's convention).

Secrets and tokens are never logged. A secret is only printed when asked for
(``--print-secret``), and then to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rtwidgets import __version__
from rtwidgets.limits import raise_nofile_limit as _raise_nofile_limit
from rtwidgets.loops import loop_factory as _loop_factory
from rtwidgets.loops import run as _run
from rtwidgets.loops import run_without_runner as _run_without_runner  # noqa: F401  # tests use it here

__all__ = ["SECRET_ENV", "build_parser", "main"]

SECRET_ENV = "RTWIDGETS_SECRET"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Upper bound on start-up (binding the socket and, with --redis, connecting to Redis):
# an unreachable Redis must end in a clear error, never in a silent hang.
DEFAULT_START_TIMEOUT = 5.0
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

log = logging.getLogger("rtwidgets.cli")


class _StartupError(Exception):
    """A start-up failure with a message meant for humans (printed as one line)."""


# ----------------------------------------------------------------------------- parsing


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        from rtwidgets.gateway.workers import available_cpus

        return available_cpus()
    return _positive_int(text)


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="rtwidgets",
        description="Reactive realtime widgets for Jupyter: run a gateway, mint tokens.",
    )
    parser.add_argument("--version", action="version", version=f"rtwidgets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gw = sub.add_parser(
        "gateway",
        help="run a WebSocket gateway in the foreground",
        description="Run a WebSocket gateway in the foreground until SIGINT/SIGTERM.",
    )
    gw.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    gw.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port, 0 for a free one (default {DEFAULT_PORT})"
    )
    gw.add_argument(
        "--secret",
        type=_non_empty,
        default=None,
        help=f"token signing secret (default: ${SECRET_ENV}; else a random one for this run)",
    )
    gw.add_argument(
        "--print-secret",
        action="store_true",
        help="print a generated secret to stderr (so tokens can be minted with it)",
    )
    gw.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="Redis URL for multi-gateway fan-out; redis+cluster://host:port[,host:port] for Redis Cluster",
    )
    gw.add_argument(
        "--wait-replicas",
        type=int,
        default=0,
        metavar="N",
        help="with a redis+cluster:// URL: acknowledge a publish once N replicas have it (WAIT)",
    )
    gw.add_argument(
        "--history", type=_positive_int, default=None, metavar="N", help="messages kept per channel"
    )
    gw.add_argument(
        "--channel-ttl",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="with --redis: drop a channel's history and state this long after its last publish",
    )
    gw.add_argument(
        "--max-message-bytes", type=_positive_int, default=None, metavar="N", help="largest accepted frame"
    )
    gw.add_argument(
        "--publish-rate",
        type=_positive_float,
        default=None,
        metavar="R",
        help="publishes per second allowed per connection",
    )
    gw.add_argument(
        "--heartbeat-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="close connections silent for this long (4009)",
    )
    gw.add_argument(
        "--allowed-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allowed browser Origin (repeatable; default: any)",
    )
    gw.add_argument(
        "--start-timeout",
        type=_positive_float,
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
        help=f"give up starting (e.g. Redis unreachable) after this long (default {DEFAULT_START_TIMEOUT:g})",
    )
    gw.add_argument(
        "--on-stop",
        choices=("auto", "restart", "shutdown"),
        default="auto",
        help="how clients are closed on SIGINT/SIGTERM: restart = 1012, they reconnect; shutdown = "
        "1001, they do not; auto (default) = restart with --redis, shutdown without",
    )
    gw.add_argument(
        "--no-uvloop",
        action="store_true",
        help="run on asyncio's default event loop even when uvloop is installed",
    )
    gw.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop (exit 0) once no client was connected for this long (default: never)",
    )
    gw.add_argument(
        "--runtime-file",
        type=_non_empty,
        default=None,
        metavar="PATH",
        help="write the URL, pid and secret here (mode 0600) once listening; removed on stop "
        "(what Gateway.shared() uses to find this gateway)",
    )
    gw.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="run N gateway processes on the one port (SO_REUSEPORT; auto: one per CPU), restarted "
        "when they die, restarted one by one on SIGHUP; above 1 needs --redis",
    )
    gw.add_argument("--worker", type=_non_negative_int, default=None, help=argparse.SUPPRESS)  # internal
    gw.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="logging level (default info)")
    gw.set_defaults(func=_cmd_gateway, subparser=gw)

    tok = sub.add_parser(
        "token",
        help="mint a token the gateway accepts",
        description="Print a signed token (last line of stdout).",
    )
    tok.add_argument(
        "--secret", type=_non_empty, default=None, help=f"signing secret (default: ${SECRET_ENV})"
    )
    tok.add_argument("--user", type=_non_empty, required=True, help="user id (the token's 'sub')")
    tok.add_argument(
        "--channel",
        action="append",
        type=_non_empty,
        default=None,
        metavar="PATTERN",
        help="channel pattern the user may subscribe to (repeatable; default '*')",
    )
    tok.add_argument(
        "--publish",
        action="append",
        type=_non_empty,
        default=None,
        metavar="PATTERN",
        help="channel pattern the user may publish to (repeatable; default: the --channel patterns)",
    )
    tok.add_argument(
        "--presence",
        action="append",
        type=_non_empty,
        default=None,
        metavar="PATTERN",
        help="channel pattern the user may show presence in (repeatable; default: the --channel patterns)",
    )
    tok.add_argument(
        "--ttl", type=_positive_int, default=3600, metavar="SECONDS", help="lifetime (default 3600)"
    )
    tok.set_defaults(func=_cmd_token, subparser=tok)
    return parser


# ----------------------------------------------------------------------------- helpers


def _redact_url(url: str) -> str:
    """Hide the password of ``redis://user:password@host`` style URLs (for messages)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)


def _format_url(host: str, port: int) -> str:
    # IPv6 literals need brackets in a URL.
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"ws://{shown}:{port}"


def _describe_start_error(exc: BaseException, host: str, port: int, redis_url: str | None) -> str:
    """One human line for a start-up failure; never includes a secret."""
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        reason = {
            errno.EADDRINUSE: "address already in use",
            errno.EACCES: "permission denied",
            errno.EADDRNOTAVAIL: "address not available on this machine",
        }[exc.errno]
        return f"cannot listen on {host}:{port}: {reason}"
    name = type(exc).__name__
    if redis_url is not None and ("redis" in type(exc).__module__.lower() or "Broker" in name):
        # The broker's own message is usually complete ("cannot reach Redis at ...");
        # redact it anyway, since it may echo the URL with its password.
        detail = _redact_url(str(exc)) or name
        if "redis" in detail.lower():
            return detail
        return f"cannot connect to Redis at {_redact_url(redis_url)}: {detail}"
    if isinstance(exc, OSError):
        return f"cannot start the gateway on {host}:{port}: {exc.strerror or exc}"
    return f"cannot start the gateway: {name}: {exc}" if str(exc) else f"cannot start the gateway: {name}"


def _print_line(stream: TextIO, text: str) -> None:
    print(text, file=stream, flush=True)


# ----------------------------------------------------------------------------- gateway


def _broker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``redis=URL`` for one Redis; a Redis Cluster broker built here for ``redis+cluster://``
    (the gateway builds only the single-Redis one itself). Raises ``ValueError`` for a bad
    URL or ``--wait-replicas`` without a cluster."""
    if args.redis is None:
        if args.wait_replicas:
            raise ValueError("--wait-replicas needs --redis redis+cluster://...")
        return {"redis": None}
    from rtwidgets.gateway.brokers.redis_cluster import is_cluster_url, redis_broker_for

    if not is_cluster_url(args.redis):
        if args.wait_replicas:
            raise ValueError("--wait-replicas applies to a redis+cluster:// URL")
        return {"redis": args.redis}
    options: dict[str, Any] = {"wait_replicas": args.wait_replicas}
    if args.history is not None:
        options["history_size"] = args.history
    if args.channel_ttl is not None:
        options["channel_ttl"] = args.channel_ttl
    return {"broker": redis_broker_for(args.redis, **options)}


def _gateway_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user set, so the gateway's own defaults apply otherwise."""
    overrides: dict[str, Any] = {}
    if args.history is not None:
        overrides["history_size"] = args.history
    if args.max_message_bytes is not None:
        overrides["max_message_bytes"] = args.max_message_bytes
    if args.publish_rate is not None:
        overrides["publish_rate"] = args.publish_rate
    if args.heartbeat_timeout is not None:
        overrides["heartbeat_timeout"] = args.heartbeat_timeout
    if args.allowed_origin:
        overrides["allowed_origins"] = tuple(args.allowed_origin)
    if args.channel_ttl is not None and not _is_cluster(args.redis):
        overrides["channel_ttl"] = args.channel_ttl  # a cluster broker takes it itself
    return overrides


def _is_cluster(url: str | None) -> bool:
    return url is not None and url.split("://", 1)[0].lower() in ("redis+cluster", "rediss+cluster")


async def _serve(args: argparse.Namespace, secret: str) -> int:
    # Imported here so `rtwidgets token` and `--version` stay fast and work even if the
    # gateway's optional pieces fail to import.
    from rtwidgets.gateway import Gateway

    loop = asyncio.get_running_loop()
    log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    worker = None
    if args.worker is None:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
    else:  # one of --workers: SIGHUP stops with 1012, SIGINT is the supervisor's
        from rtwidgets.gateway.workers import WorkerStops

        worker = WorkerStops(stop)
        await worker.install()
    try:
        try:
            broker = _broker_kwargs(args)
            gateway = Gateway(
                args.host,
                args.port,
                secret=secret,
                reuse_port=args.worker is not None,
                **broker,
                **_gateway_kwargs(args),
            )
        except (TypeError, ValueError) as exc:
            raise _StartupError(f"invalid gateway configuration: {exc}") from None
        try:
            await asyncio.wait_for(gateway.start_async(), timeout=args.start_timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway.stop_async(), timeout=args.start_timeout)
            what = f"Redis at {_redact_url(args.redis)} unreachable?" if args.redis else "still starting"
            raise _StartupError(f"gateway did not start within {args.start_timeout:g}s ({what})") from None
        except Exception as exc:
            log.debug("start-up failed", exc_info=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway.stop_async(), timeout=args.start_timeout)
            raise _StartupError(_describe_start_error(exc, args.host, args.port, args.redis)) from None

        assert gateway.port is not None  # start_async() returned: the socket is bound
        runtime_file = (
            _write_runtime_file(args.runtime_file, gateway.url, secret) if args.runtime_file else None
        )
        _print_line(sys.stdout, f"rtwidgets gateway listening on {_format_url(args.host, gateway.port)}")
        try:
            await _wait_for_stop(
                stop, lambda: int(gateway.stats()["connections"]), args.idle_timeout, runtime_file
            )
        finally:
            if runtime_file is not None:
                await asyncio.to_thread(_remove_runtime_file, runtime_file)
        log.info("stopping: closing client connections")
        # A second signal during shutdown should not be swallowed: restore the default
        # handlers so Ctrl-C twice still ends a stuck process.
        for sig in signals:
            loop.remove_signal_handler(sig)
        if worker is not None:
            worker.remove()
        restart = args.on_stop == "restart" or (args.on_stop == "auto" and args.redis is not None)
        restart = restart or (worker is not None and worker.restart)
        await gateway.stop_async(restart=restart)
        log.info("stopped (clients closed with %s)", "1012, restarting" if restart else "1001, going away")
        return 0
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if worker is not None:
            worker.remove()


async def _supervise(args: argparse.Namespace, secret: str) -> int:
    """``--workers N``: reserve the port, start N workers, print the readiness line once all of
    them listen, keep them running until SIGINT/SIGTERM (:mod:`rtwidgets.gateway.workers`)."""
    from rtwidgets.gateway.supervisor import Supervisor
    from rtwidgets.gateway.workers import PortReservation, WorkersError, worker_argv

    try:
        reservation = PortReservation(args.host, args.port)
    except OSError as exc:
        raise _StartupError(_describe_start_error(exc, args.host, args.port, None)) from None
    with reservation:
        command = [sys.executable, "-m", "rtwidgets", "gateway"]
        supervisor = Supervisor(
            args.workers,
            lambda slot: [*command, *worker_argv(args.subparser, args, port=reservation.port, slot=slot)],
            {**os.environ, SECRET_ENV: secret},  # never on a command line (ps shows those)
            # A worker bounds its own start (--start-timeout); this adds an interpreter's start-up.
            ready_timeout=args.start_timeout + 30.0,
        )
        try:
            if not await supervisor.start():
                return 0  # SIGINT/SIGTERM during start-up
        except WorkersError as exc:
            raise _StartupError(str(exc)) from None
        url = _format_url(args.host, reservation.port)
        runtime_file = _write_runtime_file(args.runtime_file, url, secret) if args.runtime_file else None
        _print_line(sys.stdout, f"rtwidgets gateway listening on {url}")
        try:
            await supervisor.wait()
        finally:
            if runtime_file is not None:
                await asyncio.to_thread(_remove_runtime_file, runtime_file)
        log.info("stopped %d workers (%d restarts)", args.workers, supervisor.restarts)
        return 0


def _write_runtime_file(path_text: str, url: str, secret: str) -> Path:
    """Record this gateway in ``path_text`` (0600, atomically); return the path.

    Raises:
        _StartupError: the file cannot be written (the gateway then does not serve: a kernel
            waiting for the file would otherwise wait in vain).
    """
    from rtwidgets.gateway.runtime_file import GatewayRecord, RuntimePaths, SharedGatewayError, write_record

    path = Path(path_text).expanduser().absolute()
    try:
        RuntimePaths(path.parent).ensure()
        write_record(path, GatewayRecord(url=url, pid=os.getpid(), secret=secret, started_at=time.time()))
    except (OSError, SharedGatewayError) as exc:
        raise _StartupError(f"cannot write the runtime file {path}: {exc}") from None
    return path


def _remove_runtime_file(path: Path) -> None:
    """Remove our runtime file (under the runtime lock; skipped if the lock stays busy: a file
    naming a dead gateway is detected as stale anyway)."""
    from rtwidgets.gateway.runtime_file import RuntimeLock, RuntimePaths, SharedGatewayError, remove_record

    try:
        with RuntimeLock(RuntimePaths(path.parent).lock).acquire(10.0):
            remove_record(path, os.getpid())
    except (OSError, SharedGatewayError) as exc:
        log.warning("could not remove the runtime file %s: %s", path, exc)


async def _wait_for_stop(
    stop: asyncio.Event, connections: Callable[[], int], idle_timeout: float | None, runtime_file: Path | None
) -> None:
    """Return on SIGINT/SIGTERM (``stop``), or once idle for ``idle_timeout`` seconds."""
    if idle_timeout is None:
        await stop.wait()
        return
    from rtwidgets.gateway.idle import watch_idle

    stopped = asyncio.ensure_future(stop.wait())
    idle = asyncio.ensure_future(watch_idle(connections, idle_timeout, runtime_file))
    try:
        done, _ = await asyncio.wait({stopped, idle}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, idle):
            task.cancel()
        await asyncio.gather(stopped, idle, return_exceptions=True)
    if idle in done:
        idle.result()  # a failure of the watcher itself is not swallowed


def _cmd_gateway(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from rtwidgets.gateway.workers import usage_error

    refused = usage_error(
        workers=args.workers, worker=args.worker, redis=args.redis, idle_timeout=args.idle_timeout
    )
    if refused is not None:
        parser.error(refused)
    _raise_nofile_limit()  # one fd per connection: the soft limit (often 1024) up to the hard one
    # A worker's lines carry its slot and pid: all workers write to the one stderr.
    who = "" if args.worker is None else f"[worker {args.worker} pid %(process)d] "
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s",
    )
    secret = args.secret or os.environ.get(SECRET_ENV) or None
    if secret is None:
        # Hex, not token_urlsafe: a secret starting with '-' could not be passed back as
        # `rtwidgets token --secret ...` (argparse takes it for an option).
        secret = secrets.token_hex(32)
        _print_line(
            sys.stderr,
            f"rtwidgets: no --secret or ${SECRET_ENV} given; using a random secret for this run. "
            "Tokens must be minted with that secret"
            + (" (printed below)." if args.print_secret else " (pass --print-secret to see it)."),
        )
        if args.print_secret:
            _print_line(sys.stderr, f"rtwidgets: secret: {secret}")
    try:
        if args.workers is not None:
            return _run(_supervise(args, secret), None)  # serves nothing: asyncio's loop will do
        return _run(_serve(args, secret), _loop_factory(args.no_uvloop))
    except _StartupError as exc:
        _print_line(sys.stderr, f"rtwidgets: error: {exc}")
        return 1
    except KeyboardInterrupt:  # SIGINT before the handler was installed or after: a stop
        return 0


# ----------------------------------------------------------------------------- token


def _cmd_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from rtwidgets.auth import issue_token

    secret = args.secret or os.environ.get(SECRET_ENV) or None
    if secret is None:
        parser.error(f"a secret is required (--secret or ${SECRET_ENV})")
    channels = tuple(args.channel) if args.channel else ("*",)
    token = issue_token(
        secret,
        args.user,
        channels,
        publish=tuple(args.publish) if args.publish else None,
        presence=tuple(args.presence) if args.presence else None,
        ttl=args.ttl,
    )
    _print_line(sys.stdout, token)
    return 0


# ----------------------------------------------------------------------------- entry


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 1 runtime failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args, args.subparser))


if __name__ == "__main__":  # pragma: no cover - `python -m rtwidgets` goes via __main__.py
    raise SystemExit(main())
