"""The pure parts of the shared gateway (``rtwidgets.gateway.discovery``, ``.idle``): no processes.

Where the runtime file lives, what it holds and who may read it, when a record is live, the
deployment's environment, the lock, and the idle clock. The processes (starting, racing,
stale files, idling out) are in ``test_shared_gateway.py``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rtwidgets.auth import verify_token
from rtwidgets.gateway.discovery import (
    GATEWAY_SECRET_ENV,
    GATEWAY_URL_ENV,
    RUNTIME_DIR_ENV,
    GatewayRecord,
    RuntimeLock,
    RuntimePaths,
    SharedGateway,
    SharedGatewayError,
    gateway_from_env,
    healthz_url,
    is_live,
    read_record,
    remove_record,
    runtime_dir,
    shared_gateway,
    write_record,
)
from rtwidgets.gateway.idle import IdleClock

RECORD = GatewayRecord(url="ws://127.0.0.1:4567", pid=4242, secret="s3cret", started_at=12.5)


# ----------------------------------------------------------------------------- where


def test_runtime_dir_order_of_precedence() -> None:
    everything = {
        RUNTIME_DIR_ENV: "/r/own",
        "JUPYTER_RUNTIME_DIR": "/r/jupyter",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "HOME": "/home/u",
    }
    assert runtime_dir(everything) == Path("/r/own")
    del everything[RUNTIME_DIR_ENV]
    assert runtime_dir(everything) == Path("/r/jupyter")
    del everything["JUPYTER_RUNTIME_DIR"]
    assert runtime_dir(everything) == Path("/run/user/1000/rtwidgets")
    del everything["XDG_RUNTIME_DIR"]
    assert runtime_dir(everything) == Path("~/.local/share/rtwidgets/runtime").expanduser()


def test_runtime_dir_from_the_process_environment_honours_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_DIR_ENV, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", "/tmp/some-jupyter-runtime")
    assert runtime_dir() == Path("/tmp/some-jupyter-runtime")
    monkeypatch.setenv(RUNTIME_DIR_ENV, "/tmp/rtw-override")
    assert runtime_dir() == Path("/tmp/rtw-override")


def test_runtime_paths_are_created_private(tmp_path: Path) -> None:
    paths = RuntimePaths(tmp_path / "a" / "rt").ensure()
    assert paths.directory.is_dir()
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700
    assert {paths.record.name, paths.lock.name, paths.log.name} == {
        "rtwidgets-gateway.json",
        "rtwidgets-gateway.lock",
        "rtwidgets-gateway.log",
    }


def test_runtime_dir_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SharedGatewayError, match=RUNTIME_DIR_ENV):
        RuntimePaths(blocker / "rt").ensure()


# ----------------------------------------------------------------------------- the record


def test_record_round_trips_and_hides_its_secret() -> None:
    assert GatewayRecord.from_json(RECORD.to_json()) == RECORD
    assert "s3cret" not in repr(RECORD)


@pytest.mark.parametrize(
    "data, problem",
    [
        ([], "not a JSON object"),
        ({"url": "http://x:1", "pid": 1, "secret": "s"}, "bad url"),
        ({"url": "ws://x:1", "pid": 0, "secret": "s"}, "bad pid"),
        ({"url": "ws://x:1", "pid": True, "secret": "s"}, "bad pid"),
        ({"url": "ws://x:1", "pid": 3, "secret": ""}, "missing secret"),
    ],
)
def test_malformed_records_are_refused(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        GatewayRecord.from_json(json.dumps(data))


def test_written_record_is_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "rtwidgets-gateway.json"
    assert read_record(path) is None
    write_record(path, RECORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_record(path) == RECORD
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_garbage_record_reads_as_stale(tmp_path: Path) -> None:
    path = tmp_path / "rtwidgets-gateway.json"
    path.write_text("{ half a file")
    path.chmod(0o600)
    assert read_record(path) is None


def test_record_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rtwidgets-gateway.json"
    write_record(path, RECORD)
    path.chmod(0o644)
    with pytest.raises(SharedGatewayError, match="readable by others"):
        read_record(path)


def test_record_through_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    write_record(real, RECORD)
    link = tmp_path / "rtwidgets-gateway.json"
    link.symlink_to(real)
    with pytest.raises(SharedGatewayError, match="symbolic link"):
        read_record(link)


def test_remove_record_only_removes_its_own(tmp_path: Path) -> None:
    path = tmp_path / "rtwidgets-gateway.json"
    write_record(path, RECORD)
    assert remove_record(path, RECORD.pid + 1) is False
    assert path.exists()
    assert remove_record(path, RECORD.pid) is True
    assert not path.exists()
    assert remove_record(path, RECORD.pid) is False


# ----------------------------------------------------------------------------- liveness


@pytest.mark.parametrize(
    "alive, healthy, live",
    [(True, True, True), (False, True, False), (True, False, False), (False, False, False)],
)
def test_a_record_is_live_only_if_its_process_runs_and_its_url_answers(
    alive: bool, healthy: bool, live: bool
) -> None:
    asked: list[object] = []

    def alive_fn(pid: int) -> bool:
        asked.append(pid)
        return alive

    def healthy_fn(url: str) -> bool:
        asked.append(url)
        return healthy

    assert is_live(RECORD, alive=alive_fn, healthy=healthy_fn) is live
    assert asked[0] == RECORD.pid
    assert RECORD.url in asked or not alive  # the URL is only asked about a running process


@pytest.mark.parametrize(
    "url, expected",
    [
        ("ws://127.0.0.1:8765", "http://127.0.0.1:8765/healthz"),
        ("wss://gw.example.org/", "https://gw.example.org/healthz"),
        ("ws://[::1]:9000", "http://[::1]:9000/healthz"),
    ],
)
def test_healthz_url(url: str, expected: str) -> None:
    assert healthz_url(url) == expected


@pytest.mark.parametrize("url", ["http://x:1", "ws://", "127.0.0.1:8765", ""])
def test_healthz_url_of_a_non_gateway_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a gateway URL"):
        healthz_url(url)


# ----------------------------------------------------------------------------- environment


def test_no_gateway_in_the_environment() -> None:
    assert gateway_from_env({}) is None
    assert gateway_from_env({GATEWAY_URL_ENV: "  "}) is None


def test_deployment_gateway_from_the_environment() -> None:
    gw = gateway_from_env({GATEWAY_URL_ENV: "wss://rt.example.org/", GATEWAY_SECRET_ENV: "k" * 32})
    assert gw is not None
    assert (gw.url, gw.pid, gw.source) == ("wss://rt.example.org", None, "environment")
    assert verify_token("k" * 32, gw.token("alice")).user_id == "alice"
    # The CLI's own variable works too, so one secret variable can serve gateway and kernels.
    fallback = gateway_from_env({GATEWAY_URL_ENV: "ws://h:1", "RTWIDGETS_SECRET": "cli" * 11})
    assert fallback is not None and fallback.secret == "cli" * 11


def test_deployment_gateway_needs_a_secret_and_a_ws_url() -> None:
    with pytest.raises(SharedGatewayError, match=GATEWAY_SECRET_ENV):
        gateway_from_env({GATEWAY_URL_ENV: "ws://h:1"})
    with pytest.raises(SharedGatewayError, match="ws:// or wss://"):
        gateway_from_env({GATEWAY_URL_ENV: "http://h:1", GATEWAY_SECRET_ENV: "k" * 32})


def test_shared_gateway_uses_the_environment_without_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GATEWAY_URL_ENV, "ws://127.0.0.1:1")
    monkeypatch.setenv(GATEWAY_SECRET_ENV, "deployment-secret-of-at-least-32-bytes")
    runtime = tmp_path / "rt"
    gw = shared_gateway(runtime_directory=runtime)
    assert (gw.url, gw.source, gw.secret) == (
        "ws://127.0.0.1:1",
        "environment",
        "deployment-secret-of-at-least-32-bytes",
    )
    assert not runtime.exists()
    with pytest.raises(SharedGatewayError, match="deployment"):
        gw.stop()


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"idle_timeout": 0}, "positive"),
        ({"start_timeout": -1}, "positive"),
        ({"gateway_args": ["--port", "9"]}, "--port"),
        ({"gateway_args": ["--secret=x"]}, "--secret"),
    ],
)
def test_shared_gateway_bad_arguments(kwargs: dict[str, object], problem: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=problem):
        shared_gateway(runtime_directory=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # refused before touching anything


def test_handle_mints_tokens_like_a_gateway_and_hides_its_secret() -> None:
    gw = SharedGateway(url="ws://127.0.0.1:9", secret="abc" * 11, pid=1, source="started")
    claims = verify_token("abc" * 11, gw.token("bob", ["chat:*"], ttl=60))
    assert claims.user_id == "bob" and claims.can("subscribe", "chat:x") and not claims.can("publish", "x")
    assert "abc" * 11 not in repr(gw)


# ----------------------------------------------------------------------------- the lock


def test_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / "rtwidgets-gateway.lock"
    first = RuntimeLock(path).acquire(1.0)
    # A second open file of the same lock (as another kernel, or another thread, would have).
    with pytest.raises(SharedGatewayError, match="held"):
        RuntimeLock(path).acquire(0.2)
    first.release()
    first.release()  # idempotent
    with RuntimeLock(path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# ----------------------------------------------------------------------------- idle clock


def test_idle_clock_counts_from_the_last_busy_moment() -> None:
    clock = IdleClock(10.0, now=100.0)
    clock.sample(0, now=105.0)
    assert clock.idle_for(105.0) == 5.0 and not clock.expired(105.0)
    assert clock.expired(110.0)
    clock.sample(2, now=110.0)  # a connection: idle starts again
    assert not clock.expired(119.0) and clock.expired(120.0)
    clock.sample(0, now=121.0, attached_at=105.0)  # an attach before the last busy moment: no change
    assert clock.expired(120.0)
    clock.sample(0, now=125.0, attached_at=124.0)  # a fresh attach counts as busy
    assert not clock.expired(133.0) and clock.expired(134.0)


def test_idle_clock_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="positive"):
        IdleClock(0, now=0.0)
