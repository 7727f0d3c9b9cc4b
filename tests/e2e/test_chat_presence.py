"""Two browser pages as two users on one gateway: chat, typing, presence join and leave."""

from __future__ import annotations

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, User, Users, copy_to_docs, has_class


def _open_pair(users: Users, gateway: GatewayProcess, room: str) -> tuple[User, User]:
    specs = []
    for name in ("alice", "bob"):
        token_file = users.token_file(name, gateway.token(name))
        specs.append(
            (name, users.notebook(f"chat-{name}", [cells.connect(gateway.url, token_file), cells.chat(room)]))
        )
    alice, bob = users.open(*specs)
    return alice, bob


def test_chat_and_presence_between_two_pages(users: Users, gateway: GatewayProcess, test_name: str) -> None:
    room = f"room-{users.suffix}"
    alice, bob = _open_pair(users, gateway, room)

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
    bob.page.wait_for_function("() => window.__rtwRecords.typing.includes('alice is typing…')")
    bob.page.wait_for_function("() => window.__rtwRecords['typing-dot'].includes(true)")

    # Enter sends: the message appears in both pages, confirmed, and Alice's typing ends.
    a_input.press("Enter")
    expect(a_input).to_have_value("")
    for page_chat in (a_chat, b_chat):
        row = page_chat.locator(".rtw-msg", has_text="hello from alice")
        expect(row).to_have_count(1)
        expect(row.locator(".rtw-msg-user")).to_have_text("alice")
        expect(row).not_to_have_class(has_class("rtw-pending"))
        expect(row).not_to_have_class(has_class("rtw-failed"))
    expect(a_chat.locator(".rtw-msg", has_text="hello from alice")).to_have_class(has_class("rtw-mine"))
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
    alice.page.wait_for_function("() => window.__rtwRecords.left.some((lines) => lines.includes('bob left'))")
    alice.screenshot(test_name, "presence_bar-bob-left", a_bar)
