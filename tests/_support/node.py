"""The design's reference JavaScript client (``tests/conformance/article_client.mjs``) under Node.

The design and its wire messages: docs/design.md#wire-messages.

``NODE_MARKS`` marks a module as needing ``node``; :func:`require_websocket_node` skips when this
``node`` has no global ``WebSocket`` (Node >= 20.10 with ``--experimental-websocket``);
:func:`run_article_client` runs one scenario and collects the JSON lines it prints, one
``{"event": name, ...}`` a line, as ``{name: record}``; :func:`finished` fails the test when
the scenario reported ``fail`` or never reached ``done``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

NODE: str | None = shutil.which("node")
ARTICLE_CLIENT = Path(__file__).resolve().parents[1] / "conformance" / "article_client.mjs"
NODE_FLAGS = ("--experimental-websocket", "--no-warnings")

NODE_MARKS = [
    pytest.mark.node,
    pytest.mark.skipif(NODE is None, reason="node is not installed (needed to run the reference client)"),
]

Observed = dict[str, dict[str, Any]]
OnEvent = Callable[[str, Observed], Awaitable[None] | None]


@functools.cache
def node_supports_websocket() -> bool:
    """Whether ``node --experimental-websocket`` has a global ``WebSocket`` (probed once per run)."""
    if NODE is None:
        return False
    probe = subprocess.run(
        [NODE, "--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def require_websocket_node() -> str:
    """The path of ``node``; skips the calling test or fixture if it cannot run the client."""
    if NODE is None:
        pytest.skip("node is not installed (needed to run the design's reference client)")
    if not node_supports_websocket():
        pytest.skip("this node has no WebSocket even with --experimental-websocket (need Node >= 20.10)")
    return NODE


async def run_article_client(
    env: Mapping[str, str], *, timeout: float, on_event: OnEvent | None = None
) -> tuple[Observed, str]:
    """Run ``article_client.mjs`` with ``env`` (``RTW_*`` settings, added to this process's
    environment) and return ``(observed, stderr)`` once it exits.

    ``on_event(name, observed)`` (sync or async) is called after each record, while the client
    still runs, so a test can act on a cue (e.g. stop the gateway at ``ready_for_shutdown``).
    ``timeout`` bounds the whole run (a generous bound, not a timing assertion): past it the
    client is killed and ``AssertionError`` names what it had reported.
    """
    node = require_websocket_node()
    observed: Observed = {}
    proc = await asyncio.create_subprocess_exec(
        node,
        *NODE_FLAGS,
        str(ARTICLE_CLIENT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_records() -> None:
        async for raw in stdout:
            line = raw.decode().strip()
            if not line:
                continue
            record = json.loads(line)
            name = record.pop("event")
            observed[name] = record
            if on_event is not None:
                result = on_event(name, observed)
                if inspect.isawaitable(result):
                    await result

    try:
        # stderr is drained alongside stdout, so a chatty client can never block on a full pipe.
        _, err, _ = await asyncio.wait_for(
            asyncio.gather(read_records(), stderr.read(), proc.wait()), timeout
        )
    except asyncio.TimeoutError:
        raise AssertionError(
            f"the article client did not finish within {timeout} s; it reported {sorted(observed)}"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return observed, err.decode()


def finished(observed: Observed, stderr: str, scenario: str) -> Observed:
    """``observed``, once checked: fails the test if ``scenario`` reported ``fail`` or no ``done``."""
    if "fail" in observed:
        reason = observed["fail"].get("reason", "")
        pytest.fail(f"article client {scenario} failed: {reason}\nstderr: {stderr[-2000:]}")
    assert "done" in observed, f"{scenario} did not finish; saw {sorted(observed)}; stderr: {stderr[-2000:]}"
    return observed
