"""rtwidgets.limits: the soft RLIMIT_NOFILE goes up to the hard limit, in-process and in the CLI.

Each check runs in a child process whose soft limit was lowered first, so the test process's own
limits are never changed and the check can fail (the child starts below the hard limit).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOW = 256


def _hard() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _lower_soft_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, _hard()))


def _soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' line for pid {pid}")


needs_headroom = pytest.mark.skipif(
    _hard() != resource.RLIM_INFINITY and _hard() <= LOW, reason=f"hard RLIMIT_NOFILE <= {LOW}"
)


@needs_headroom
def test_raises_the_soft_limit_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "from rtwidgets.limits import raise_nofile_limit\n"
        f"assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == {LOW}\n"
        "print(*raise_nofile_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_lower_soft_limit,
    )
    assert proc.returncode == 0, proc.stderr
    soft, hard, soft_now, hard_now = (int(x) for x in proc.stdout.split())
    assert hard == hard_now == _hard()  # the hard limit is never touched
    expected = hard if hard != resource.RLIM_INFINITY else 1_048_576
    assert soft == soft_now == expected


def test_leaves_a_soft_limit_already_at_the_hard_limit() -> None:
    from rtwidgets.limits import raise_nofile_limit

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if before[0] != before[1]:
        pytest.skip("this process's soft limit is below its hard limit")
    assert raise_nofile_limit() == before
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


@needs_headroom
@pytest.mark.timeout(60)
def test_gateway_command_serves_with_the_raised_limit() -> None:
    env = {**os.environ, "RTWIDGETS_SECRET": "limits-test-secret-0123456789abcdef0123"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtwidgets", "gateway", "--port", "0", "--no-uvloop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_lower_soft_limit,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once listening
        assert line, f"gateway exited (rc={proc.wait(10)}): {proc.stderr.read() if proc.stderr else ''}"
        soft = _soft_limit_of(proc.pid)
        assert soft > LOW
        assert soft == (_hard() if _hard() != resource.RLIM_INFINITY else 1_048_576)
    finally:
        proc.kill()
        proc.wait(10)
