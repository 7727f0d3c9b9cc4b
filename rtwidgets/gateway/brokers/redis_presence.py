"""Presence of the Redis broker: members, this gateway's liveness, sweeps of dead gateways.

Rules of this module:

* Each gateway refreshes ``P:gw:{id}`` (TTL ``presence_ttl``) every ``presence_ttl / 3``
  and sweeps dead gateways every ``sweep_interval``; removal is an HDEL inside a script
  (``lua/presence_remove.lua``), so of several gateways sweeping one dead member exactly
  one broadcasts its ``presence_leave``. If its own key was lost (stall, empty restart) a
  gateway puts its members back and broadcasts ``presence_join`` for them.
* A removal that fails while Redis is unreachable is remembered and retried by
  housekeeping, so no member is left behind as a ghost.
* On one Redis the presence scripts also update the owned sets, whose names they build at
  run time. On Redis Cluster (``_split_presence``) those sets live in another slot than the
  channel's presence hash, so the scripts touch only the hash and this part updates the owned
  sets around them: the pair is added *before* the member is stored and removed *after* it
  is gone, so a gateway that dies in between leaves a stale pair (harmless: its sweep finds
  no member to remove), never a member no sweep can find. A sweep checks the owner's
  liveness just before the removal instead of inside it: a gateway that stalled past
  ``presence_ttl`` and restores its members in that same instant may lose them to the sweep
  (they are broadcast as left, so every client agrees with what is stored).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, cast

import orjson
from redis.exceptions import RedisError
from redis.typing import EncodableT

from ...protocol import encode
from .base import BrokerUnavailable
from .redis_base import RedisBrokerBase, log
from .redis_keys import owned_pair, parse_presence_record

__all__ = ["RedisPresence", "presence_frame"]


def presence_frame(kind: str, channel: str, member: dict[str, Any]) -> dict[str, Any]:
    """A ``presence_join`` / ``presence_leave`` frame for ``member``."""
    return {"type": kind, "channel": channel, "member": member}


class RedisPresence(RedisBrokerBase):
    """The presence part of :class:`~.redis.RedisBroker` (see the module rules)."""

    _own: dict[tuple[str, str], dict[str, Any]]  # presence members added here
    _split_presence = False  # Redis Cluster: the scripts leave the owned sets to this part
    # removals that failed while Redis was unreachable; retried by housekeeping
    _pending_removals: set[tuple[str, str]]

    def _init_presence(self) -> None:
        self._own = {}
        self._pending_removals = set()

    async def presence_set(self, channel: str, member: dict[str, Any]) -> None:
        """Insert or replace ``member`` (owned by this gateway; first join time is kept).

        Raises:
            ValueError: ``member`` has no non-empty string ``clientId``.
            BrokerUnavailable: Redis is unreachable.
        """
        client_id = member.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("presence member needs a non-empty string 'clientId'")
        self._client()
        await self._store_member(channel, client_id, member)
        self._own[(channel, client_id)] = member
        self._pending_removals.discard((channel, client_id))

    async def _store_member(self, channel: str, client_id: str, member: dict[str, Any]) -> None:
        args: list[EncodableT] = [
            client_id,
            self.gateway_id,
            int(time.time() * 1000),
            encode(member),
            owned_pair(channel, client_id),
            self.key_prefix,
        ]
        if self._split_presence:
            pair = owned_pair(channel, client_id)
            async with self._guard("presence update", 2):
                await self._client_unchecked().sadd(self._keys.owned(self.gateway_id), pair)
                previous = await self._presence_set_script(
                    keys=[self._k(channel, "presence")], args=[*args, "1"]
                )
            if previous and previous != self.gateway_id:
                async with self._guard("presence update"):
                    await self._client_unchecked().srem(self._keys.owned(previous), pair)
            return
        async with self._guard("presence update"):
            await self._presence_set_script(
                keys=[self._k(channel, "presence"), self._keys.owned(self.gateway_id)], args=args
            )

    async def presence_remove(self, channel: str, client_id: str) -> dict[str, Any] | None:
        """Remove a member whichever gateway added it; return it or None.

        Raises:
            BrokerUnavailable: Redis is unreachable (housekeeping retries the removal).
        """
        self._client()
        self._own.pop((channel, client_id), None)
        try:
            removed = await self._remove_member(channel, client_id, "")
        except BrokerUnavailable:
            # Never leave a ghost: housekeeping removes it (and broadcasts the leave) later.
            self._pending_removals.add((channel, client_id))
            raise
        self._pending_removals.discard((channel, client_id))
        return removed

    async def _remove_member(
        self, channel: str, client_id: str, owner: str, *, only_if_dead: bool = False
    ) -> dict[str, Any] | None:
        split = self._split_presence
        async with self._guard("presence remove"):
            value = await self._presence_remove_script(
                keys=[self._k(channel, "presence")],
                args=[
                    client_id,
                    owner,
                    owned_pair(channel, client_id),
                    self.key_prefix,
                    int(only_if_dead),
                    *(["1"] if split else []),
                ],
            )
        if not value:
            return None
        gw, _, member = parse_presence_record(value)
        if split and gw:
            async with self._guard("presence remove"):
                await self._client_unchecked().srem(self._keys.owned(gw), owned_pair(channel, client_id))
        return member

    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        """Live members in join order. Members of gateways whose liveness key expired are
        removed here (and their ``presence_leave`` broadcast, once across all gateways).

        Raises:
            BrokerUnavailable: Redis is unreachable (after one retry of the read).
        """
        redis_ = self._client()
        # decode_responses=True (see _make_client): the reply is str -> str, although redis-py
        # annotates every reply as bytes | str whatever the client's mode.
        raw = cast(
            "dict[str, str]",
            await self._read("presence members", lambda: redis_.hgetall(self._k(channel, "presence"))),
        )
        records: list[tuple[int, str, str, dict[str, Any]]] = []
        for client_id, value in raw.items():
            try:
                gw, joined, member = parse_presence_record(value)
            except (ValueError, orjson.JSONDecodeError):
                log.error("RedisBroker: malformed presence record for %r on %r", client_id, channel)
                continue
            records.append((joined, client_id, gw, member))
        others = sorted({gw for _, _, gw, _ in records if gw != self.gateway_id})
        dead = set(await self._dead_gateways(others))
        live: list[tuple[int, str, str, dict[str, Any]]] = []
        for rec in records:
            if rec[2] in dead:
                await self._sweep_member(channel, rec[1], rec[2])
            else:
                live.append(rec)
        live.sort(key=lambda r: (r[0], r[1]))
        return [r[3] for r in live]

    async def _dead_gateways(self, gateway_ids: Iterable[str]) -> list[str]:
        ids = list(gateway_ids)
        if not ids:
            return []

        async def check() -> list[Any]:
            pipe = self._client_unchecked().pipeline(transaction=False)
            for gw in ids:
                pipe.exists(self._keys.gateway(gw))
            return await pipe.execute()

        alive = await self._read("gateway liveness", check, len(ids))
        return [gw for gw, ok in zip(ids, alive, strict=True) if not ok]

    async def _sweep_member(self, channel: str, client_id: str, gateway_id: str) -> None:
        removed = await self._remove_member(channel, client_id, gateway_id, only_if_dead=True)
        if removed is not None:
            self._stats["presence_swept"] += 1
            await self._broadcast_raw(channel, presence_frame("presence_leave", channel, removed))

    # ---------------------------------------------------------- housekeeping
    async def _heartbeat(self) -> None:
        """Refresh this gateway's liveness key; restore its members if the key was lost
        (expired while stalled, or Redis restarted empty)."""
        redis_ = self._client_unchecked()
        async with self._guard("liveness refresh", 2):
            pipe = redis_.pipeline(transaction=False)
            pipe.set(self._keys.gateway(self.gateway_id), "1", px=int(self.presence_ttl * 1000), get=True)
            pipe.sadd(self._keys.gateways, self.gateway_id)
            previous, _ = await pipe.execute()
        if previous is None and self._own:
            for (channel, client_id), member in list(self._own.items()):
                await self._store_member(channel, client_id, member)
                await self._broadcast_raw(channel, presence_frame("presence_join", channel, member))

    async def _retry_removals(self) -> None:
        for channel, client_id in list(self._pending_removals):
            if (channel, client_id) in self._own:  # re-joined meanwhile
                self._pending_removals.discard((channel, client_id))
                continue
            removed = await self._remove_member(channel, client_id, self.gateway_id)
            self._pending_removals.discard((channel, client_id))
            if removed is not None:
                await self._broadcast_raw(channel, presence_frame("presence_leave", channel, removed))

    async def _sweep_dead_gateways(self) -> None:
        redis_ = self._client_unchecked()
        async with self._guard("sweep"):
            # decode_responses=True: members are str (redis-py annotates them bytes | str).
            ids = cast("set[str]", await redis_.smembers(self._keys.gateways))
        for gw in await self._dead_gateways(sorted(i for i in ids if i != self.gateway_id)):
            async with self._guard("sweep"):
                pairs = await redis_.smembers(self._keys.owned(gw))
            for pair in pairs:
                try:
                    channel, client_id = orjson.loads(pair)
                except (orjson.JSONDecodeError, ValueError):
                    continue
                await self._sweep_member(channel, client_id, gw)
            async with self._guard("sweep"):
                await self._forget_gateway_script(
                    keys=[self._keys.gateway(gw), self._keys.owned(gw), self._keys.gateways], args=[gw]
                )

    async def _housekeeping(self) -> None:
        """Refresh liveness at least every ``presence_ttl / 3``; sweep every ``sweep_interval``."""
        tick = min(self.presence_ttl / 3, self.sweep_interval)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_interval
        while not self._closed:
            await asyncio.sleep(tick)
            try:
                await self._heartbeat()
                await self._retry_removals()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval
                    await self._sweep_dead_gateways()
            except asyncio.CancelledError:
                raise
            except (BrokerUnavailable, RedisError) as exc:
                log.warning("RedisBroker %s: housekeeping failed: %s", self.gateway_id, exc)

    async def _cleanup_own(self) -> None:
        """On close: remove this gateway's members (broadcasting their leave) and its keys."""
        redis_ = self._client_unchecked()
        for channel, client_id in [*self._own, *self._pending_removals]:
            removed = await self._remove_member(channel, client_id, self.gateway_id)
            if removed is not None:
                await self._broadcast_raw(channel, presence_frame("presence_leave", channel, removed))
        self._own.clear()
        self._pending_removals.clear()
        async with self._guard("close", 3):
            pipe = redis_.pipeline(transaction=False)
            pipe.delete(self._keys.gateway(self.gateway_id), self._keys.owned(self.gateway_id))
            pipe.srem(self._keys.gateways, self.gateway_id)
            await pipe.execute()
