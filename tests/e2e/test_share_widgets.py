"""``rtwidgets.share`` in real pages (issue 16): two users, two kernels, one ipywidgets slider.

Alice and Bob each open their own notebook (own browser context, workspace and kernel); each
kernel shares an ``IntSlider``'s ``value`` on one channel. Alice's kernel reaches the gateway
through a :class:`~rtwidgets.chaos.ChaosProxy`, so her link can be cut while her page and
kernel stay up.

1. Alice drags the handle with the mouse to the right end: Bob's page and kernel show 100.
   Bob presses ArrowLeft three times: Alice's page and kernel show 97.
2. Alice's link is cut. She presses Home (0) while offline; Bob presses ArrowLeft (96) and
   his change is stored. The link heals and both pages settle where the policy says:
   ``client-wins`` -> Alice's 0 everywhere; ``server-wins`` -> Bob's 96 everywhere and Alice's
   kernel lists her 0 in ``link.state.dropped``.

Every slider change is a real input in the page (mouse or keyboard). Kernel state is read by
cells that wait (bounded) for a condition and print JSON; a single keystroke makes exactly one
offline change, so the counts (``pending``, ``conflicts``, ``dropped``) are exact.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, User, Users, artifact_path
from .test_rerun_cell import _printed, _run_cell

START = 20  # both sliders' initial value (each kernel seeds it; equal, so no race matters)
DRAGGED = 100  # Alice drags past the right end: the slider's max
NUDGED = DRAGGED - 3  # Bob's three ArrowLeft presses
ALICE_OFFLINE = 0  # Alice's Home press while cut off
BOB_MEANWHILE = NUDGED - 1  # Bob's one ArrowLeft press meanwhile
RECONNECT_MS = 90_000  # the client's retry backoff may be long after an outage: be generous

SLIDER_CLASS = "rtw-e2e-share"


def _share_cell(channel: str, policy: str) -> str:
    """The user's cell: a slider shared on ``channel`` under ``policy``, and ``report()``."""
    return f"""\
import json
import time

import ipywidgets

import rtwidgets

slider = ipywidgets.IntSlider(value={START}, min=0, max=100, description="shared")
slider.add_class({SLIDER_CLASS!r})
link = rtwidgets.share(slider, conn, {channel!r}, traits=["value"], conflict={policy!r})
link.state.wait_synced(timeout=90)


def kernel_state():
    state = link.state
    return {{
        "slider": slider.value,
        "shared": state.get("value"),
        "pending": state.pending,
        "live": state.is_live,
        "conflicts": state.conflicts,
        "dropped": list(state.dropped),
        "error": state.error,
    }}


def report(timeout=90.0, **want):
    # Wait (a condition, bounded) until every wanted field has its value, then print the state.
    deadline = time.monotonic() + timeout
    while any(kernel_state()[name] != value for name, value in want.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel never reached {{want!r}}: {{kernel_state()!r}}")
        time.sleep(0.05)
    print(json.dumps(kernel_state()))


slider"""


def _report(**want: Any) -> str:
    """A probe cell: ``report(...)`` waiting for ``want`` (Python literals)."""
    return "report(" + ", ".join(f"{name}={value!r}" for name, value in want.items()) + ")"


# Each user's probe cells, by step; the index of a probe is SETUP_CELLS + its position here.
SETUP_CELLS = 2  # connect, share
ALICE_PROBES = {
    "sees-bob": _report(slider=NUDGED, shared=NUDGED, pending=0, live=True),
    "offline": _report(live=False),
    "offline-change": _report(slider=ALICE_OFFLINE, shared=ALICE_OFFLINE, live=False),
    "settled": "report(pending=0, live=True)",
}
BOB_PROBES = {
    "sees-alice": _report(slider=DRAGGED, shared=DRAGGED, pending=0, live=True),
    "change-stored": _report(slider=BOB_MEANWHILE, shared=BOB_MEANWHILE, pending=0, live=True),
    "settled": "report(pending=0, live=True)",
}


def _probe(user: User, probes: dict[str, str], step: str) -> dict[str, Any]:
    """Run the probe cell of ``step`` in ``user``'s notebook; return the state it printed."""
    index = SETUP_CELLS + list(probes).index(step)
    printed = _printed(_run_cell(user, index))
    lines = [line for line in printed.splitlines() if line.startswith("{")]
    assert lines, f"{user.name}'s probe {step!r} printed no state: {printed!r}"
    state: dict[str, Any] = json.loads(lines[-1])
    assert state["error"] == "", f"{user.name}'s shared state reports an error at {step!r}: {state}"
    return state


def _open(users: Users, name: str, url: str, token: str, share_cell: str, probes: dict[str, str]) -> User:
    """Open ``name``'s notebook and run its setup cells (not the probes)."""
    token_file = users.token_file(name, token)
    notebook = users.notebook(f"share-{name}", [cells.connect(url, token_file), share_cell, *probes.values()])
    return users.start(name, notebook)


def _slider(user: User) -> Any:
    return user.page.locator(f".{SLIDER_CLASS}").first


def _readout(user: User) -> Any:
    return _slider(user).locator(".widget-readout")


def _handle(user: User) -> Any:
    return _slider(user).locator(".noUi-handle")


def _drag_to_right_end(user: User) -> None:
    """Press the slider's handle with the mouse and drag it past the track's right end."""
    # The mouse works in viewport coordinates: the slider must be on screen (the cells above
    # push it below the fold).
    _slider(user).scroll_into_view_if_needed()
    handle = _handle(user).bounding_box()
    track = _slider(user).locator(".noUi-target").bounding_box()
    assert handle is not None and track is not None, "the slider is not laid out"
    y = handle["y"] + handle["height"] / 2
    mouse = user.page.mouse
    mouse.move(handle["x"] + handle["width"] / 2, y)
    mouse.down()
    # In steps, as a hand moves: the slider follows the pointer and ends clamped at max.
    mouse.move(track["x"] + track["width"] + 40, y, steps=12)
    mouse.up()


@pytest.mark.parametrize("policy", ["client-wins", "server-wins"])
def test_shared_slider_between_two_kernels_and_offline_reconcile(
    users: Users, gateway: GatewayProcess, make_proxy: Any, test_name: str, policy: str
) -> None:
    channel = f"share-{policy}-{users.suffix}"
    share_cell = _share_cell(channel, policy)
    proxy = make_proxy(gateway.port)
    alice = _open(users, "alice", proxy.url, gateway.token("alice"), share_cell, ALICE_PROBES)
    bob = _open(users, "bob", gateway.url, gateway.token("bob"), share_cell, BOB_PROBES)
    for user in (alice, bob):
        user.notebook.wait_kernel()
    for user in (alice, bob):
        user.notebook.run_above(SETUP_CELLS)
    for user in (alice, bob):
        expect(user.widget("connection_status")).to_have_attribute("data-state", "connected")
        expect(_readout(user)).to_have_text(str(START))

    # 1. Alice drags her slider: Bob's page and kernel follow. Bob nudges his: Alice's follow.
    _drag_to_right_end(alice)
    expect(_readout(alice)).to_have_text(str(DRAGGED))
    expect(_readout(bob)).to_have_text(str(DRAGGED))
    assert _probe(bob, BOB_PROBES, "sees-alice")["slider"] == DRAGGED
    for _ in range(DRAGGED - NUDGED):
        _handle(bob).press("ArrowLeft")
    expect(_readout(bob)).to_have_text(str(NUDGED))
    expect(_readout(alice)).to_have_text(str(NUDGED))
    seen = _probe(alice, ALICE_PROBES, "sees-bob")
    assert seen["slider"] == NUDGED and seen["pending"] == 0
    alice.screenshot(test_name, "alice-linked", _slider(alice))
    bob.screenshot(test_name, "bob-linked", _slider(bob))

    # 2. Alice's network goes away (open sockets reset, new ones refused); her kernel knows.
    proxy.drop_new(True)
    proxy.cut()
    expect(alice.widget("connection_status")).to_have_attribute("data-state", "reconnecting")
    assert _probe(alice, ALICE_PROBES, "offline")["live"] is False

    # One offline change in Alice's page (one keystroke = one change), kept locally, unsent.
    _handle(alice).press("Home")
    expect(_readout(alice)).to_have_text(str(ALICE_OFFLINE))
    offline = _probe(alice, ALICE_PROBES, "offline-change")
    assert offline["pending"] == 1, f"Alice's offline change should wait, unsent: {offline}"
    # Meanwhile Bob changes the same key, and the gateway stores it; Alice's page cannot see it.
    _handle(bob).press("ArrowLeft")
    expect(_readout(bob)).to_have_text(str(BOB_MEANWHILE))
    _probe(bob, BOB_PROBES, "change-stored")
    expect(_readout(alice)).to_have_text(str(ALICE_OFFLINE))
    alice.screenshot(test_name, "alice-offline", _slider(alice))

    # The network comes back: Alice's kernel reconnects, re-syncs and reconciles by its policy.
    proxy.heal()
    expect(alice.widget("connection_status")).to_have_attribute(
        "data-state", "connected", timeout=RECONNECT_MS
    )
    winner = ALICE_OFFLINE if policy == "client-wins" else BOB_MEANWHILE
    try:
        for user in (alice, bob):
            expect(_readout(user)).to_have_text(str(winner))
    except AssertionError as exc:
        # Say what each page and kernel ended at, not only that a readout differed.
        shown = {user.name: _readout(user).text_content() for user in (alice, bob)}
        raise AssertionError(
            f"{policy}: the pages should settle at {winner}, they show {shown}; "
            f"kernels: {_settled(alice, bob, test_name)}"
        ) from exc
    alice.screenshot(test_name, "alice-reconciled", _slider(alice))
    bob.screenshot(test_name, "bob-reconciled", _slider(bob))

    states = _settled(alice, bob, test_name)
    a_state, b_state = states["alice"], states["bob"]
    for state in (a_state, b_state):
        assert state["slider"] == winner and state["shared"] == winner, (policy, states)
    # Alice's offline change met Bob's change of the same key: one conflict, decided by policy.
    assert a_state["conflicts"] == 1, (policy, a_state)
    if policy == "server-wins":
        assert a_state["dropped"] == [{"key": "value", "value": ALICE_OFFLINE}], a_state
    else:
        assert a_state["dropped"] == [], a_state
    # Bob was never offline: nothing of his conflicted or was dropped.
    assert b_state["conflicts"] == 0 and b_state["dropped"] == [], b_state


def _settled(alice: User, bob: User, test_name: str) -> dict[str, dict[str, Any]]:
    """Both kernels' states once live with nothing pending; also saved as a test artefact."""
    states = {
        "alice": _probe(alice, ALICE_PROBES, "settled"),
        "bob": _probe(bob, BOB_PROBES, "settled"),
    }
    artifact_path(test_name, "kernel-states.json").write_text(json.dumps(states, indent=1), encoding="utf-8")
    return states
