"""Unit tests of :class:`rtwidgets.chaos.ChaosProxy` against a plain asyncio echo server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from rtwidgets.chaos import ChaosProxy

TIMEOUT = 10.0
CLOCK_SLACK = 0.01  # asyncio may fire a timer up to its clock resolution early

pytestmark = pytest.mark.fault


class EchoServer:
    """Echoes every byte back; counts connections and keeps every byte it received."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.received = bytearray()
        self._server: asyncio.Server | None = None

    async def start(self) -> EchoServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await EchoServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[ChaosProxy]:
    p = await ChaosProxy(echo.port, seed=1).start_async()
    yield p
    await p.stop_async()


async def open_client(proxy: ChaosProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*proxy.address), TIMEOUT)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT)


async def test_forwards_bytes_unchanged_and_in_order(proxy: ChaosProxy) -> None:
    reader, writer = await open_client(proxy)
    payload = bytes(range(256)) * 2000  # 512 kB, several chunks and buffer refills
    assert await roundtrip(reader, writer, payload) == payload
    stats = proxy.stats()
    assert stats.bytes_up == len(payload) and stats.bytes_down == len(payload)
    assert stats.connections_active == 1 and stats.connections_total == 1
    writer.close()


async def test_latency_with_jitter_keeps_order(proxy: ChaosProxy) -> None:
    """Every chunk is delayed by at least ``latency - jitter`` in each direction, order kept.

    The oracle is a lower bound the fault itself causes: a byte written at ``t0`` is read by
    the proxy no earlier than ``t0``, released upstream no earlier than ``t0 + (L - J)``, echoed,
    and released downstream no earlier than another ``L - J`` later. A loaded machine only
    makes the round trip longer, so ``elapsed >= 2 (L - J)`` cannot fail from slowness; it fails
    when the latency is not applied (the bare echo round trip is well under a millisecond).
    """
    proxy.latency(0.15, jitter=0.05)
    floor = 2 * (0.15 - 0.05)
    reader, writer = await open_client(proxy)
    loop = asyncio.get_running_loop()
    sent = b""
    started = loop.time()
    for i in range(50):  # many small writes, each delayed by a different jitter sample
        chunk = f"<{i}>".encode()
        sent += chunk
        writer.write(chunk)
        await writer.drain()
    first = await asyncio.wait_for(reader.readexactly(len(b"<0>")), TIMEOUT)
    first_elapsed = loop.time() - started
    rest = await asyncio.wait_for(reader.readexactly(len(sent) - len(first)), TIMEOUT)
    assert first + rest == sent
    # CLOCK_SLACK: asyncio may run a timer up to its clock resolution early.
    assert first_elapsed >= floor - CLOCK_SLACK, f"first byte back after {first_elapsed:.3f} s < {floor} s"
    assert proxy.stats().latency == 0.15 and proxy.stats().jitter == 0.05
    writer.close()


async def test_latency_delays_each_direction_by_at_least_the_setting(proxy: ChaosProxy) -> None:
    """Without jitter a round trip takes at least twice the latency, and healing removes it.

    Same lower-bound oracle as above (a fault-caused minimum, not a speed expectation). After
    ``heal()`` the bytes still arrive unchanged; no upper bound is asserted on that leg.
    """
    proxy.latency(0.2)
    reader, writer = await open_client(proxy)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await roundtrip(reader, writer, b"ping") == b"ping"
    elapsed = loop.time() - started
    assert elapsed >= 2 * 0.2 - CLOCK_SLACK, f"round trip took {elapsed:.3f} s, latency 0.2 s each way"
    proxy.heal()
    assert await roundtrip(reader, writer, b"pong") == b"pong"
    writer.close()


async def test_pause_holds_bytes_and_resume_delivers_them(proxy: ChaosProxy) -> None:
    reader, writer = await open_client(proxy)
    assert await roundtrip(reader, writer, b"before") == b"before"
    proxy.pause()
    assert proxy.stats().paused
    writer.write(b"during-pause")
    await writer.drain()
    # Nothing may come back while partitioned: the read must still be pending after the
    # bytes were sent (a read that completes here would be a leak through the partition).
    pending = asyncio.ensure_future(reader.readexactly(len(b"during-pause")))
    done, _ = await asyncio.wait({pending}, timeout=0.2)
    assert not done, "bytes crossed a paused proxy"
    proxy.resume()
    assert await asyncio.wait_for(pending, TIMEOUT) == b"during-pause"
    assert proxy.stats().connections_active == 1  # the partition kept the socket open
    writer.close()


async def test_cut_resets_current_connections_and_new_ones_work(proxy: ChaosProxy) -> None:
    reader, writer = await open_client(proxy)
    assert await roundtrip(reader, writer, b"x") == b"x"
    assert proxy.cut() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError)):
        # The RST arrives as a reset (or EOF, depending on timing); either way the link is dead.
        data = await asyncio.wait_for(reader.read(10), TIMEOUT)
        if data == b"":
            raise asyncio.IncompleteReadError(b"", 1)
        writer.write(b"y")
        await writer.drain()
    assert proxy.stats().connections_cut == 1
    reader2, writer2 = await open_client(proxy)
    assert await roundtrip(reader2, writer2, b"again") == b"again"
    writer2.close()


async def test_drop_new_refuses_connections_until_disabled(proxy: ChaosProxy, echo: EchoServer) -> None:
    proxy.drop_new(True)
    reader, writer = await open_client(proxy)  # TCP accept happens; then the proxy resets it
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)) as info:
        await asyncio.wait_for(reader.readexactly(1), TIMEOUT)
    if isinstance(info.value, asyncio.IncompleteReadError):
        assert info.value.partial == b""  # not a single byte came through
    assert proxy.stats().connections_refused == 1
    assert echo.connections == 0  # the target never saw it
    writer.close()
    proxy.drop_new(False)
    reader, writer = await open_client(proxy)
    assert await roundtrip(reader, writer, b"ok") == b"ok"
    writer.close()


async def test_throttle_limits_throughput_without_losing_bytes(proxy: ChaosProxy) -> None:
    """A throttled link never delivers faster than its rate, and loses nothing.

    The oracle is the rate limit itself, checked at every arrival: the proxy releases a
    direction's bytes in slices of at most ``rate * 0.05`` and sleeps ``size / rate`` after
    each, so by any time ``t`` after the first write at ``t0`` at most ``burst + rate (t - t0)``
    bytes can have come back (``burst``: the slice the proxy may write before its first
    sleep). That is an upper bound on bytes per second, i.e. a lower bound on time caused by
    the fault: a slow machine only delivers later, so it cannot flake; without the throttle
    the 60 kB echo arrives within milliseconds and breaks the bound at once. The same bound
    is checked on the proxy's own ``bytes_down`` counter.
    """
    rate = 100_000
    burst = int(rate * 0.05)
    proxy.throttle(rate)
    reader, writer = await open_client(proxy)
    loop = asyncio.get_running_loop()
    payload = bytes(range(256)) * 240  # 61 440 bytes: several slices, two proxy chunks
    started = loop.time()
    writer.write(payload)
    await writer.drain()
    got = bytearray()
    while len(got) < len(payload):
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert data, "the link closed before the echo arrived"
        now = loop.time()
        got += data
        allowed = burst + rate * (now - started + CLOCK_SLACK)
        assert len(got) <= allowed, f"{len(got)} bytes after {now - started:.3f} s through {rate} B/s"
        assert proxy.stats().bytes_down <= allowed
    assert bytes(got) == payload
    elapsed = loop.time() - started
    assert elapsed >= (len(payload) - burst) / rate - CLOCK_SLACK
    assert proxy.stats().throttle == rate
    proxy.throttle(None)
    assert proxy.stats().throttle is None
    writer.close()


async def expect_reset(reader: asyncio.StreamReader) -> None:
    """The connection dies (RST, or EOF depending on timing) without a byte coming back."""
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)) as info:
        await asyncio.wait_for(reader.readexactly(1), TIMEOUT)
    if isinstance(info.value, asyncio.IncompleteReadError):
        assert info.value.partial == b""


async def test_break_on_resets_the_connection_of_a_marked_chunk_and_never_forwards_it(
    proxy: ChaosProxy, echo: EchoServer
) -> None:
    proxy.break_on(b"EVALSHA", times=2)
    reader, writer = await open_client(proxy)
    assert await roundtrip(reader, writer, b"PING") == b"PING"  # unmarked bytes pass
    writer.write(b"*2 EVALSHA abc")
    await writer.drain()
    await expect_reset(reader)
    assert proxy.stats().connections_broken == 1
    reader, writer = await open_client(proxy)  # new connections work; the second use breaks
    writer.write(b"EVALSHA again")
    await writer.drain()
    await expect_reset(reader)
    reader, writer = await open_client(proxy)  # spent: the marker passes now
    assert await roundtrip(reader, writer, b"EVALSHA third") == b"EVALSHA third"
    assert bytes(echo.received) == b"PING" + b"EVALSHA third"  # the broken chunks never arrived
    stats = proxy.stats()
    assert stats.connections_broken == 2 and stats.connections_cut == 0
    writer.close()


async def test_break_on_is_disarmed_by_heal_and_checks_its_arguments(proxy: ChaosProxy) -> None:
    proxy.break_on(b"X", times=5)
    proxy.heal()
    reader, writer = await open_client(proxy)
    assert await roundtrip(reader, writer, b"X") == b"X"
    assert proxy.stats().connections_broken == 0
    writer.close()
    with pytest.raises(TypeError, match="bytes"):
        proxy.break_on("X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        proxy.break_on(b"")
    with pytest.raises(ValueError, match="times"):
        proxy.break_on(b"X", times=-1)


async def test_round_robin_fails_over_to_a_live_target(echo: EchoServer) -> None:
    other = await EchoServer().start()
    dead_port = other.port
    await other.stop()  # nothing listens there any more
    async with ChaosProxy(dead_port, echo.port) as p:
        for _ in range(3):
            reader, writer = await open_client(p)
            assert await roundtrip(reader, writer, b"hi") == b"hi"
            writer.close()
        assert echo.connections == 3
        assert p.stats().connections_refused == 0


async def test_controls_are_thread_safe_from_plain_threads(proxy: ChaosProxy) -> None:
    reader, writer = await open_client(proxy)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(50):
                proxy.latency(0.0, 0.0)
                proxy.pause()
                proxy.resume()
                proxy.throttle(None)
                proxy.stats()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join(TIMEOUT) for t in threads])
    assert errors == []
    proxy.heal()
    assert await roundtrip(reader, writer, b"still-works") == b"still-works"
    writer.close()


async def test_sync_stop_on_the_proxys_own_loop_is_refused(proxy: ChaosProxy) -> None:
    with pytest.raises(RuntimeError, match="own event loop"):
        proxy.stop()
    assert proxy.stats().connections_total == 0  # still running, untouched


def test_sync_api_on_the_runtime_and_bad_arguments() -> None:
    async def make_echo() -> EchoServer:
        return await EchoServer().start()

    from rtwidgets.runtime import get_runtime

    runtime = get_runtime()
    server = runtime.run(make_echo())
    try:
        with ChaosProxy(server.port) as p:
            assert p.url.startswith("ws://127.0.0.1:")
            p.latency(0.01)
            p.pause()
            p.resume()
            assert p.cut() == 0
            assert "ChaosProxy" in repr(p)
        with pytest.raises(ValueError, match="latency"):
            p.latency(-1)
        with pytest.raises(ValueError, match="bytes_per_sec"):
            p.throttle(0)
        with pytest.raises(ValueError, match="at least one target"):
            ChaosProxy()
        with pytest.raises(ValueError, match="host:port"):
            ChaosProxy("nonsense")
        with pytest.raises(RuntimeError, match="not started"):
            _ = ChaosProxy(1).url
    finally:
        runtime.run(server.stop())
