"""The real ``notebooks/01_quickstart.ipynb`` in a real JupyterLab, as a newcomer runs it.

*Run All*, then, after the last cell, the widgets must still be live and usable: the status
and presence show both users, typing in alice's chat reaches bob's chat and Python, bob can
answer, Python can post to both. Nothing in the notebook cleans up (its last cell is a
markdown "Clean up" section); the test then runs that documented clean-up code in the same
kernel and checks the widget views go away and no error is raised.
"""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import expect

from .conftest import User, Users, copy_to_docs, has_class

NOTEBOOK = "notebooks/01_quickstart.ipynb"
SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)


def cleanup_index(cells: list[dict[str, str]]) -> int | None:
    """Index of the last code cell if it is a clean-up (it stops the gateway ``gw``), else None.

    The demo notebooks no longer clean up in a cell (*Run All* leaves their widgets live; the
    clean-up code is in their last, markdown, cell: see :func:`cleanup_snippet`), so this is
    None for them; it stays for callers that handle both.
    """
    code = [i for i, cell in enumerate(cells) if cell["type"] == "code"]
    if code and "gw.stop()" in cells[code[-1]]["source"]:
        return code[-1]
    return None


def cleanup_snippet(cells: list[dict[str, str]]) -> str:
    """The clean-up code a notebook documents: the ```python block of its last cell (markdown)."""
    last = cells[-1]
    assert last["type"] == "markdown" and "Clean up" in last["source"], last
    match = SNIPPET.search(last["source"])
    assert match, last["source"]
    return match.group(1)


# Run ``code`` in the notebook's kernel (not as a cell: the notebook stays as the user has it);
# resolve with the status, what it printed, and the error if any.
_EXECUTE = """async ({path, code}) => {
  let panel = null;
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path) panel = w;
  }
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false, stop_on_error: true});
  let out = '';
  let error = null;
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (type === 'stream') out += msg.content.text;
    if (type === 'error') error = `${msg.content.ename}: ${msg.content.evalue}`;
  };
  const reply = await future.done;
  return {status: reply.content.status, out, error};
}"""


def kernel_run(user: User, code: str) -> str:
    """Run ``code`` in the user's notebook kernel; return what it printed (fail on an error)."""
    result: dict[str, Any] = user.page.evaluate(_EXECUTE, {"path": user.notebook.path, "code": code})
    assert result["status"] == "ok" and result["error"] is None, result
    return str(result["out"])


def test_quickstart_run_all_leaves_widgets_live_and_usable(users: Users, test_name: str) -> None:
    reader = users.start("reader", NOTEBOOK)
    notebook = reader.notebook
    notebook.wait_kernel()
    page = reader.page
    cells = notebook.cells()
    assert cleanup_index(cells) is None, "the quickstart must not clean up on Run All"
    notebook.run_all()  # every cell ran (an error output fails here); the last one is done

    # What the notebook shows, still there after the last cell: alice's connection, one chat
    # per user, who is here.
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

    def typed(author: str, text: str, mine: Any) -> None:
        """``text`` shows once in both views, by ``author``, confirmed; marked as its own in ``mine``."""
        for view in (alice_chat, bob_chat):
            row = view.locator(".rtw-msg", has_text=text)
            expect(row).to_have_count(1)
            expect(row.locator(".rtw-msg-user")).to_have_text(author)
            expect(row).not_to_have_class(has_class("rtw-pending"))
            if view is mine:
                expect(row).to_have_class(has_class("rtw-mine"))
            else:
                expect(row).not_to_have_class(has_class("rtw-mine"))

    # A user types in alice's chat box after Run All: bob's view gets the message, confirmed ...
    box = alice_chat.locator(".rtw-chat-input")
    box.fill("typed in the browser")
    box.press("Enter")
    typed("alice", "typed in the browser", alice_chat)
    # ... and so does Python (the views are drawn from these lists, so it is already there).
    seen = kernel_run(
        reader,
        "import json\n"
        "wait_until(lambda: any(m['text'] == 'typed in the browser' and not m['pending']"
        " for m in chat_bob.messages), what='bob has the typed message')\n"
        "print(json.dumps([(m['user'], m['text']) for m in chat_bob.messages"
        " if m['text'] == 'typed in the browser']))",
    )
    assert json.loads(seen) == [["alice", "typed in the browser"]], seen

    # Bob answers from his box; Python posts too: both views get both.
    bob_box = bob_chat.locator(".rtw-chat-input")
    bob_box.fill("bob answers")
    bob_box.press("Enter")
    typed("bob", "bob answers", bob_chat)
    kernel_run(reader, 'chat_bob.post("posted from Python after Run All")')
    typed("bob", "posted from Python after Run All", bob_chat)
    expect(bar).to_have_attribute("data-count", "2")
    expect(status).to_have_attribute("data-state", "connected")

    reader.screenshot(test_name, "quickstart-connection_status", status)
    reader.screenshot(test_name, "quickstart-chat-alice", alice_chat)
    reader.screenshot(test_name, "quickstart-chat-bob", bob_chat)
    reader.screenshot(test_name, "quickstart-presence_bar", bar)
    alice_chat.scroll_into_view_if_needed()
    copy_to_docs(reader.screenshot(test_name, "quickstart-notebook"), "quickstart.png")

    # The clean-up the notebook documents, pasted into the same kernel: it raises nothing
    # (its asserts hold) and the widget views go away.
    kernel_run(reader, cleanup_snippet(cells))
    expect(page.locator(".rtw-widget.rtw-chat")).to_have_count(0)
    expect(page.locator(".rtw-widget.rtw-presence_bar")).to_have_count(0)
    expect(page.locator(".rtw-widget.rtw-connection_status")).to_have_count(0)
