"""The shared wait helper (tests/_support/waiting.py): values, bounds, errors, both kinds of caller."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests._support.waiting import GiveUp, eventually, wait_until, with_default_timeout


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "ready", 30, "three polls") == "ready"


def test_wait_until_fails_naming_what_and_the_last_tolerated_error() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for never"):
        wait_until(lambda: False, 0.05, "never")

    def refused() -> bool:
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(AssertionError, match="last error: ConnectionRefusedError"):
        wait_until(refused, 0.05, "a server", retry_on=(ConnectionRefusedError,))


def test_wait_until_does_not_swallow_errors_unless_told_and_gives_up_at_once() -> None:
    def broken() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_until(broken, 30, "a bug")

    def died() -> bool:
        raise GiveUp("the process exited")

    with pytest.raises(GiveUp):  # even though every Exception is retried otherwise
        wait_until(died, 30, "a dead process", retry_on=(Exception,))


def test_with_default_timeout_keeps_the_folders_bound_and_the_callers() -> None:
    wait = with_default_timeout(0.05)
    with pytest.raises(AssertionError, match=r"after 0\.05 s waiting for default"):
        wait(lambda: False, what="default")
    with pytest.raises(AssertionError, match=r"after 0\.1 s waiting for positional"):
        wait(lambda: False, 0.1, "positional")
    assert wait(lambda: 7) == 7


async def test_eventually_awaits_async_checks_and_fails_past_its_bound() -> None:
    state = {"n": 0}

    async def grows() -> int:
        state["n"] += 1
        return state["n"] if state["n"] >= 3 else 0

    assert await eventually(grows, "three checks", 30) == 3
    task = asyncio.ensure_future(asyncio.sleep(0))
    # interval=0 yields to the loop between checks, so a task scheduled now gets to run.
    assert await eventually(task.done, "the task", 30, interval=0)
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for nothing"):
        await eventually(lambda: None, "nothing", 0.05)
