"""Property: over any create/close sequence of models on shared channels of one connection,
the gateway's subscriptions are exactly the channels with a live model, and the connection is a
presence member exactly where a live model wants presence (issue 19)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.models import Channel, Presence
from rtwidgets.runtime import get_runtime

from .conftest import wait_until

CHANNELS = ("a", "b", "c")
# (create?, channel, kind, history) steps; a close step closes the oldest live model of its slot.
step = st.tuples(
    st.booleans(), st.sampled_from(CHANNELS), st.sampled_from(["plain", "presence"]), st.integers(0, 3)
)


def _gateway_view(gateway: Any, client_id: str) -> tuple[set[str], set[str]]:
    async def read() -> list[dict[str, Any]]:
        return gateway.sessions()

    [session] = [s for s in get_runtime().run(read(), 10) if s["clientId"] == client_id]
    return set(session["channels"]), set(session["presence"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=10))
def test_gateway_subscriptions_follow_live_models(connect: Any, gateway: Any, steps: list[Any]) -> None:
    alice, bob = connect("alice"), connect("bob")
    writers = {name: Channel(bob, name).wait_subscribed() for name in CHANNELS}
    live: list[tuple[str, bool, Channel]] = []  # (channel, wants presence, its Channel model)
    owners: list[Any] = []
    try:
        for create, name, kind, history in steps:
            if create:
                if kind == "presence":
                    presence = Presence(alice, name)
                    owners.append(presence)
                    channel = presence.channel.wait_subscribed()
                else:
                    channel = Channel(alice, name, history=history).wait_subscribed()
                    owners.append(channel)
                live.append((name, kind == "presence", channel))
            else:
                victims = [entry for entry in live if entry[0] == name]
                if victims:
                    live.remove(victims[0])
                    owner = next(
                        o
                        for o in owners
                        if o is victims[0][2] or getattr(o, "channel", None) is victims[0][2]
                    )
                    owner.close()
            want = ({n for n, _, _ in live}, {n for n, p, _ in live if p})
            wait_until(
                lambda w=want: _gateway_view(gateway, alice.client_id) == w, what=f"gateway view {want}"
            )
            # Every live model still works: subscribed, and it receives a new message.
            for n, _, ch in live:
                assert ch.is_subscribed, n
            marks = {n: writers[n].publish({"mark": len(steps)})["offset"] for n in {n for n, _, _ in live}}
            for n, _, ch in live:
                wait_until(
                    lambda ch=ch, o=marks[n]: any(m.get("offset") == o for m in ch.messages),
                    what=f"a live model on {n!r} receives",
                )
    finally:
        for owner in owners:
            owner.close()
    wait_until(lambda: _gateway_view(gateway, alice.client_id) == (set(), set()), what="nothing left")
    alice.close()
    bob.close()
