"""The real ``notebooks/01_quickstart.ipynb`` in a real JupyterLab: its widgets render and work.

The notebook's last code cell closes everything it created (which removes the widget
views), so the test runs the cells above it, checks and uses the widgets in the page,
then runs the clean-up and checks that it raised nothing either.
"""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Users, copy_to_docs, has_class

NOTEBOOK = "notebooks/01_quickstart.ipynb"


def cleanup_index(cells: list[dict[str, str]]) -> int | None:
    """Index of the last code cell if it is the clean-up (it closes things), else None."""
    code = [i for i, cell in enumerate(cells) if cell["type"] == "code"]
    if code and ".close()" in cells[code[-1]]["source"]:
        return code[-1]
    return None


def test_quickstart_widgets_render_and_work(users: Users, test_name: str) -> None:
    reader = users.start("reader", NOTEBOOK)
    notebook = reader.notebook
    notebook.wait_kernel()
    page = reader.page
    cleanup = cleanup_index(notebook.cells())
    if cleanup is None:
        notebook.run_all()
    else:
        notebook.run_above(cleanup)

    # What the notebook shows: alice's connection, one chat per user, who is here.
    status = reader.widget("connection_status")
    expect(status).to_have_attribute("data-state", "connected")
    expect(status.locator(".rtw-cs-user")).to_have_text("alice")
    chats = page.locator(".rtw-widget.rtw-chat")
    expect(chats).to_have_count(2)
    bar = reader.widget("presence_bar")
    expect(bar).to_have_attribute("data-count", "2")
    for user in ("alice", "bob"):
        expect(bar.locator(f'.rtw-avatar[data-user-id="{user}"]')).to_be_visible()

    # Both chat views show the same confirmed feed (what Python posted).
    alice_chat, bob_chat = chats.nth(0), chats.nth(1)
    for chat in (alice_chat, bob_chat):
        expect(chat).to_have_attribute("data-state", "connected")
        expect(chat.locator(".rtw-msg").first).to_be_visible()
        expect(chat.locator(".rtw-msg.rtw-pending")).to_have_count(0)
    feed = alice_chat.locator(".rtw-msg .rtw-msg-text").all_inner_texts()
    expect(bob_chat.locator(".rtw-msg .rtw-msg-text")).to_have_text(feed)

    # A user types in alice's chat box: bob's view gets the message, and it is confirmed.
    box = alice_chat.locator(".rtw-chat-input")
    box.fill("typed in the browser")
    box.press("Enter")
    for chat, author_is_me in ((alice_chat, True), (bob_chat, False)):
        row = chat.locator(".rtw-msg", has_text="typed in the browser")
        expect(row).to_have_count(1)
        expect(row.locator(".rtw-msg-user")).to_have_text("alice")
        expect(row).not_to_have_class(has_class("rtw-pending"))
        if author_is_me:
            expect(row).to_have_class(has_class("rtw-mine"))

    reader.screenshot(test_name, "quickstart-connection_status", status)
    reader.screenshot(test_name, "quickstart-chat-alice", alice_chat)
    reader.screenshot(test_name, "quickstart-chat-bob", bob_chat)
    reader.screenshot(test_name, "quickstart-presence_bar", bar)
    alice_chat.scroll_into_view_if_needed()
    copy_to_docs(reader.screenshot(test_name, "quickstart-notebook"), "quickstart.png")

    if cleanup is not None:
        notebook.run_from(cleanup)  # raises with the traceback if the clean-up fails
        expect(page.locator(".rtw-widget.rtw-chat")).to_have_count(0)
