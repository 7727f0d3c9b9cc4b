"""``rtwidgets gateway --workers 2 --redis redis+cluster://...``: the workers share channels through
Redis Cluster as they do through one Redis (the session's cluster; real processes and sockets)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests._support.worker_group import T, clients_on_two_workers, worker_group

pytestmark = pytest.mark.cluster


async def test_workers_on_a_cluster_chat_and_a_killed_one_loses_nothing(
    tmp_path: Path, redis_cluster: Any
) -> None:
    channel = f"room:{uuid.uuid4().hex[:8]}"
    with worker_group(tmp_path, redis_cluster.url) as group:
        pair = await clients_on_two_workers(group, "reader", "writer")
        reader, victim, writer = pair["a"], pair["worker_a"], pair["b"]
        try:
            ch = await reader.subscribe(channel)
            wch = await writer.subscribe(channel)
            for i in range(10):
                await wch.publish(i)
            await ch.wait_for(lambda c: len(c.messages) == 10, T)
            os.kill(victim, signal.SIGKILL)  # the reader's worker
            for i in range(10, 20):
                await wch.publish(i)  # the writer's worker goes on meanwhile
            await ch.wait_for(lambda c: len(c.messages) == 20, T)  # resumed on another worker
            assert [m["data"] for m in ch.messages] == list(range(20))
            offsets = [m["offset"] for m in ch.messages]
            assert offsets == list(range(offsets[0], offsets[0] + 20))
        finally:
            await reader.close()
            await writer.close()
        assert f"(pid {victim}) exited unexpectedly (killed by SIGKILL)" in group.gw.stderr_text()
