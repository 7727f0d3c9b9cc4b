"""Broker contract: presence members (set, replace, remove, list)."""

from __future__ import annotations

import pytest

from rtwidgets.gateway.brokers.base import Broker


async def test_presence_set_replace_remove_and_members(broker: Broker) -> None:
    a = {"clientId": "a", "userId": "u", "data": {}, "joinedAt": 1}
    b = {"clientId": "b", "userId": "v", "data": {}, "joinedAt": 2}
    await broker.presence_set("c", a)
    await broker.presence_set("c", b)
    await broker.presence_set("c", {**a, "data": {"x": 1}})  # replace keeps join order
    members = await broker.presence_members("c")
    assert [m["clientId"] for m in members] == ["a", "b"]
    assert members[0] == {**a, "data": {"x": 1}} and members[1] == b
    assert await broker.presence_members("d") == []  # per channel
    assert await broker.presence_remove("c", "a") == {**a, "data": {"x": 1}}
    assert await broker.presence_remove("c", "a") is None
    assert await broker.presence_remove("nope", "a") is None
    assert await broker.presence_members("nope") == []
    assert await broker.presence_members("c") == [b]


@pytest.mark.parametrize("member", [{"userId": "nobody"}, {"clientId": "", "userId": "x"}, {"clientId": 7}])
async def test_a_member_without_a_client_id_is_refused(broker: Broker, member: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="clientId"):
        await broker.presence_set("room", member)
    assert await broker.presence_members("room") == []
