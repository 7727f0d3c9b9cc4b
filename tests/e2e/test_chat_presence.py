"""Two browser pages as two users on one gateway: chat, typing, presence join and leave.

Alice's kernel reaches the gateway through a proxy adding latency, so her message's
"sending" state lasts long enough to be painted (and is recorded, not raced).
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, User, Users, copy_to_docs, has_class

LATENCY = 0.25  # one way, on Alice's link only

# Alice's message rows as [{text, pending}], re-read on every DOM change.
_ROWS = """[...document.querySelectorAll('.rtw-chat .rtw-msg')].map((row) => ({
  text: row.querySelector('.rtw-msg-text').textContent, pending: row.classList.contains('rtw-pending'),
}))"""
_PENDING_THEN_SENT = """(snapshots) => {
  const has = (rows, pending) => rows.some((r) => r.text === 'hello from alice' && r.pending === pending);
  const first = snapshots.findIndex((rows) => has(rows, true));
  return first >= 0 && snapshots.slice(first + 1).some((rows) => has(rows, false));
}"""


def _open_pair(users: Users, gateway: GatewayProcess, room: str, alice_url: str) -> tuple[User, User]:
    specs = []
    for name, url in (("alice", alice_url), ("bob", gateway.url)):
        token_file = users.token_file(name, gateway.token(name))
        specs.append(
            (name, users.notebook(f"chat-{name}", [cells.connect(url, token_file), cells.chat(room)]))
        )
    alice, bob = users.open(*specs)
    return alice, bob


def test_chat_and_presence_between_two_pages(
    users: Users, gateway: GatewayProcess, make_proxy: Any, test_name: str
) -> None:
    room = f"room-{users.suffix}"
    alice, bob = _open_pair(users, gateway, room, make_proxy(gateway.port, delay=LATENCY).url)

    # Presence: each page shows both users, its own avatar ringed as "me".
    for me, other in ((alice, bob), (bob, alice)):
        bar = me.widget("presence_bar")
        expect(bar).to_have_attribute("data-count", "2")
        expect(bar.locator(f'.rtw-avatar[data-user-id="{me.name}"]')).to_have_class(has_class("rtw-me"))
        expect(bar.locator(f'.rtw-avatar[data-user-id="{other.name}"]')).to_be_visible()
        expect(me.widget("chat")).to_have_attribute("data-state", "connected")

    # Alice types: Bob sees her typing before she sends. (The line goes away 2 s after the last
    # keystroke, so it is recorded rather than raced.)
    a_chat, b_chat = alice.widget("chat"), bob.widget("chat")
    bob.record("typing", "document.querySelector('.rtw-chat .rtw-chat-typing').textContent")
    bob.record(
        "typing-dot", """!!document.querySelector('.rtw-avatar[data-user-id="alice"] .rtw-typing-dot')"""
    )
    a_input = a_chat.locator(".rtw-chat-input")
    a_input.click()
    a_input.press_sequentially("hello from alice")
    bob.wait_recorded("typing", "(texts) => texts.includes('alice is typing…')")
    bob.wait_recorded("typing-dot", "(shown) => shown.includes(true)")

    # Enter sends: the message shows at once as sending in Alice's page, then appears in both
    # pages, confirmed, and Alice's typing ends.
    alice.record("rows", _ROWS)
    a_input.press("Enter")
    expect(a_input).to_have_value("")
    for page_chat in (a_chat, b_chat):
        row = page_chat.locator(".rtw-msg", has_text="hello from alice")
        expect(row).to_have_count(1)
        expect(row.locator(".rtw-msg-user")).to_have_text("alice")
        expect(row).not_to_have_class(has_class("rtw-pending"))
        expect(row).not_to_have_class(has_class("rtw-failed"))
    expect(a_chat.locator(".rtw-msg", has_text="hello from alice")).to_have_class(has_class("rtw-mine"))
    alice.wait_recorded("rows", _PENDING_THEN_SENT)
    expect(b_chat.locator(".rtw-chat-typing")).to_have_text("")

    # Bob answers with the Send button.
    b_input = b_chat.locator(".rtw-chat-input")
    b_input.fill("hi alice, bob here")
    b_chat.locator(".rtw-chat-send").click()
    for page_chat in (a_chat, b_chat):
        row = page_chat.locator(".rtw-msg", has_text="hi alice, bob here")
        expect(row).to_have_count(1)
        expect(row.locator(".rtw-msg-user")).to_have_text("bob")
        expect(row).not_to_have_class(has_class("rtw-pending"))
    # Same feed, same order, in both pages.
    expect(a_chat.locator(".rtw-msg .rtw-msg-text")).to_have_text(["hello from alice", "hi alice, bob here"])
    expect(b_chat.locator(".rtw-msg .rtw-msg-text")).to_have_text(["hello from alice", "hi alice, bob here"])
    copy_to_docs(alice.screenshot(test_name, "chat-alice", a_chat), "chat.png")
    alice.screenshot(test_name, "chat-bob", b_chat)
    copy_to_docs(
        alice.screenshot(test_name, "presence_bar-both", alice.widget("presence_bar")), "presence_bar.png"
    )

    # Bob leaves (his page closes and his session ends): Alice sees him go. The "bob left"
    # line fades after 5 s, so it is recorded.
    a_bar = alice.widget("presence_bar")
    alice.record(
        "left",
        "[...document.querySelectorAll('.rtw-presence_bar .rtw-recent-leave')].map((e) => e.textContent)",
    )
    users.close_user(bob)
    expect(a_bar).to_have_attribute("data-count", "1")
    expect(a_bar.locator('.rtw-avatar[data-user-id="bob"]')).to_have_count(0)
    expect(a_bar.locator('.rtw-avatar[data-user-id="alice"]')).to_be_visible()
    alice.wait_recorded("left", "(seen) => seen.some((lines) => lines.includes('bob left'))")
    alice.screenshot(test_name, "presence_bar-bob-left", a_bar)
