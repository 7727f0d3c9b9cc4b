"""Re-running a widget cell never breaks a widget (issue 19), in a real JupyterLab page.

A user's cell ``chat = rtwidgets.Chat(alice, "lobby-…"); chat`` is run twice, two ways:

* **the same cell re-run** (the common case): JupyterLab replaces the cell's output, so the
  first widget's view goes away while its Python object lives on (IPython keeps it in
  ``Out``) until it is closed;
* **two identical cells** run one after the other: two live outputs in the page.

Each time the second widget must show the history posted through the first, a message
typed in one must reach both models, and after ``first.close()`` the second must still
receive (a message from ``bob``, a second :class:`~rtwidgets.Connection` in the kernel) and
send (what is typed in it reaches ``bob``). Kernel-side state is printed by cells
(``report(...)`` waits for a condition, bounded, then prints JSON); cells are run the way
a user runs them: click into the cell, Shift+Enter.
"""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from .conftest import GatewayProcess, User, Users
from .lab import _FIND_PANEL, KERNEL_TIMEOUT

# The state of the code cell at ``index`` once it ran again: null while the run that replaces
# execution count ``before`` has not finished; else its count, outputs and error outputs.
_CELL_STATE = (
    "({path, index, before}) => {"
    + _FIND_PANEL
    + """
  const panel = findPanel(path);
  if (!panel) return null;
  const model = panel.content.widgets[index].model;
  const outputs = model.outputs.toJSON();
  const errors = outputs.filter((out) => out.output_type === 'error').map((out) => ({
    ename: out.ename, evalue: out.evalue, traceback: (out.traceback || []).join('\\n'),
  }));
  const count = model.executionCount;
  if (errors.length) return {count, outputs, errors};
  if (count === null || count === undefined || count === before) return null;
  return {count, outputs, errors};
}"""
)

_EXECUTION_COUNT = (
    "({path, index}) => {"
    + _FIND_PANEL
    + """
  const count = findPanel(path).content.widgets[index].model.executionCount;
  return count === undefined ? null : count;
}"""
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _setup_cell(url: str, alice_token: str, bob_token: str, room: str) -> str:
    """Alice's and Bob's connections, Bob's subscription to ``room``, and a report helper."""
    return f"""\
import json
import time
from pathlib import Path

import rtwidgets

alice = rtwidgets.Connection({url!r}, token=Path({alice_token!r}).read_text().strip())
alice.connect()
bob = rtwidgets.Connection({url!r}, token=Path({bob_token!r}).read_text().strip())
bob.connect()
bob_room = rtwidgets.Channel(bob, {room!r}, history=50)


def chat_texts(chat):
    # What the Chat model holds (confirmed entries), whether or not a view shows it.
    return [e["text"] for e in chat.feed if not e["pending"] and not e["failed"]]


def bob_texts():
    # A Chat send is the optimistic store's create op (its text is in data["item"]); bob's own
    # raw publishes carry data["text"].
    texts = []
    for f in bob_room.messages:
        data = f.get("data")
        if isinstance(data, dict):
            item = data.get("item") if isinstance(data.get("item"), dict) else data
            texts.append(item.get("text"))
    return texts


def report(what, read, want, timeout=60.0):
    # Wait until read() holds every text of want (a condition, bounded), then print it as JSON.
    deadline = time.monotonic() + timeout
    while not set(want) <= set(read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{{what}} never held {{want!r}}: it holds {{read()!r}}")
        time.sleep(0.05)
    print(json.dumps({{"what": what, "texts": read()}}))
"""


def _chat_cell(room: str) -> str:
    """The user's cell: a Chat of alice's on ``room``, shown as the cell's result."""
    return f"chat = rtwidgets.Chat(alice, {room!r})\nchat"


# The Chats the cells displayed, in run order: IPython keeps each result in Out, so the
# first one lives on after a re-run replaced its output.
_FIRST_AND_SECOND = """\
first, second = [v for _, v in sorted(Out.items()) if isinstance(v, rtwidgets.Chat)]
assert second is chat and first is not chat, (first, second, chat)
"""


def _notebook(users: Users, gateway: GatewayProcess, name: str, room: str, cells: list[str]) -> User:
    alice_file = users.token_file(f"{name}-alice", gateway.token("alice"))
    bob_file = users.token_file(f"{name}-bob", gateway.token("bob"))
    setup = _setup_cell(gateway.url, alice_file, bob_file, room)
    user = users.start("alice", users.notebook(name, [setup, *cells]))
    user.notebook.wait_kernel()
    return user


def _cell(user: User, index: int) -> Any:
    return user.page.locator(".jp-Notebook .jp-Cell").nth(index)


def _run_cell(user: User, index: int) -> dict[str, Any]:
    """Run code cell ``index`` as a user does (click into it, Shift+Enter); wait until this
    run finished; return ``{count, outputs}``; fail with the traceback of an error output."""
    page, path = user.page, user.notebook.path
    before = page.evaluate(_EXECUTION_COUNT, {"path": path, "index": index})
    _cell(user, index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    state = page.wait_for_function(
        _CELL_STATE,
        arg={"path": path, "index": index, "before": before},
        timeout=KERNEL_TIMEOUT * 1000,
        polling=200,
    ).json_value()
    if state["errors"]:
        report = "\n\n".join(f"{e['ename']}: {e['evalue']}\n{e['traceback']}" for e in state["errors"])
        raise AssertionError(f"cell {index} raised an error:\n{report}")
    return dict(state)


def _widget_model_ids(state: dict[str, Any]) -> list[str]:
    return [
        out["data"][WIDGET_VIEW]["model_id"] for out in state["outputs"] if WIDGET_VIEW in out.get("data", {})
    ]


def _printed(state: dict[str, Any]) -> str:
    """What a cell printed (its stream outputs)."""
    return "".join(
        "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
        for out in state["outputs"]
        if out["output_type"] == "stream"
    )


def _reports(state: dict[str, Any]) -> dict[str, list[str]]:
    """The ``report(...)`` lines a cell printed: ``{what: texts}``."""
    lines = [json.loads(line) for line in _printed(state).splitlines() if line.startswith("{")]
    return {line["what"]: line["texts"] for line in lines}


def _chat_in(user: User, index: int) -> Any:
    """The Chat view in the output of cell ``index``."""
    return _cell(user, index).locator(".rtw-widget.rtw-chat")


def _send(chat: Any, text: str) -> None:
    """Type ``text`` into the widget's input and press Enter."""
    box = chat.locator(".rtw-chat-input")
    box.click()
    box.press_sequentially(text)
    box.press("Enter")
    expect(box).to_have_value("")


def _expect_feed(chat: Any, rows: list[tuple[str, str]]) -> None:
    """The view shows exactly ``rows`` (user, text), in order, all confirmed."""
    expect(chat.locator(".rtw-msg .rtw-msg-text")).to_have_text([text for _, text in rows])
    expect(chat.locator(".rtw-msg .rtw-msg-user")).to_have_text([who for who, _ in rows])
    expect(chat.locator(".rtw-msg.rtw-pending, .rtw-msg.rtw-failed")).to_have_count(0)


def test_rerun_same_cell_replaces_output_and_new_widget_keeps_working(
    users: Users, gateway: GatewayProcess, test_name: str
) -> None:
    room = f"lobby-{users.suffix}"
    user = _notebook(
        users,
        gateway,
        "rerun-same",
        room,
        [
            _chat_cell(room),  # 1: run twice
            _FIRST_AND_SECOND
            + 'report("first", lambda: chat_texts(first), ["before the re-run", "after the re-run"])\n'
            + 'report("bob", bob_texts, ["before the re-run", "after the re-run"])',  # 2
            'first.close()\nbob_room.publish({"text": "bob after the close"})\nprint(first.closed)',  # 3
            'report("bob", bob_texts, ["to bob after the close"])',  # 4
        ],
    )
    _run_cell(user, 0)

    # First run: a Chat in the cell's output; a message typed into it is confirmed.
    first_run = _run_cell(user, 1)
    chat = _chat_in(user, 1)
    expect(chat).to_have_count(1)
    expect(chat).to_have_attribute("data-state", "connected")
    _send(chat, "before the re-run")
    _expect_feed(chat, [("alice", "before the re-run")])
    user.screenshot(test_name, "1-first-run", chat)

    # Re-run of the same cell: the output is replaced by a new widget (a new model), which
    # shows the history posted through the first one.
    second_run = _run_cell(user, 1)
    assert len(_widget_model_ids(first_run)) == len(_widget_model_ids(second_run)) == 1, (
        first_run,
        second_run,
    )
    assert _widget_model_ids(first_run) != _widget_model_ids(second_run), "the re-run showed the old model"
    expect(user.page.locator(".rtw-widget.rtw-chat")).to_have_count(1)  # the old view is gone
    expect(chat).to_have_attribute("data-state", "connected")
    _expect_feed(chat, [("alice", "before the re-run")])

    # Typing in the new widget: it shows there, and reaches the old model (its view is gone but
    # the object lives, in Out) and bob.
    _send(chat, "after the re-run")
    _expect_feed(chat, [("alice", "before the re-run"), ("alice", "after the re-run")])
    user.screenshot(test_name, "2-after-rerun", chat)
    seen = _reports(_run_cell(user, 2))
    assert seen["first"] == ["before the re-run", "after the re-run"], seen
    assert seen["bob"] == ["before the re-run", "after the re-run"], seen

    # The first widget is closed from Python: the second still receives (bob's message)...
    closed = _run_cell(user, 3)
    assert _printed(closed).strip() == "True", closed
    _expect_feed(
        chat, [("alice", "before the re-run"), ("alice", "after the re-run"), ("bob", "bob after the close")]
    )
    # ...and still sends: what is typed in it reaches bob.
    _send(chat, "to bob after the close")
    _expect_feed(
        chat,
        [
            ("alice", "before the re-run"),
            ("alice", "after the re-run"),
            ("bob", "bob after the close"),
            ("alice", "to bob after the close"),
        ],
    )
    seen = _reports(_run_cell(user, 4))
    assert seen["bob"] == [
        "before the re-run",
        "after the re-run",
        "bob after the close",
        "to bob after the close",
    ], seen
    user.screenshot(test_name, "3-after-close", chat)


def test_cell_run_twice_as_two_outputs_both_work_and_second_survives_closing_first(
    users: Users, gateway: GatewayProcess, test_name: str
) -> None:
    room = f"lobby-{users.suffix}"
    user = _notebook(
        users,
        gateway,
        "rerun-two",
        room,
        [
            _chat_cell(room),  # 1
            _chat_cell(room),  # 2: the same cell, copied below and run
            _FIRST_AND_SECOND
            + 'report("bob", bob_texts, ["from the first", "from the second", "again from the first"])',  # 3
            'first.close()\nbob_room.publish({"text": "bob after the close"})\nprint(first.closed)',  # 4
            'report("bob", bob_texts, ["to bob after the close"])',  # 5
        ],
    )
    _run_cell(user, 0)
    one = _chat_in(user, 1)
    two = _chat_in(user, 2)

    _run_cell(user, 1)
    expect(one).to_have_attribute("data-state", "connected")
    _send(one, "from the first")
    _expect_feed(one, [("alice", "from the first")])

    # The second output: a new widget showing the history posted through the first.
    _run_cell(user, 2)
    expect(user.page.locator(".rtw-widget.rtw-chat")).to_have_count(2)
    expect(two).to_have_attribute("data-state", "connected")
    _expect_feed(two, [("alice", "from the first")])

    # Typed in either one, a message shows in both, in the same order.
    _send(two, "from the second")
    _send(one, "again from the first")
    rows = [("alice", "from the first"), ("alice", "from the second"), ("alice", "again from the first")]
    for view in (one, two):
        _expect_feed(view, rows)
    user.screenshot(test_name, "1-both-outputs", user.page.locator(".jp-Notebook"))
    seen = _reports(_run_cell(user, 3))
    assert seen["bob"] == [text for _, text in rows], seen

    # The first is closed from Python: the second still receives bob's message...
    closed = _run_cell(user, 4)
    assert _printed(closed).strip() == "True", closed
    rows.append(("bob", "bob after the close"))
    _expect_feed(two, rows)
    # ...and still sends to bob.
    _send(two, "to bob after the close")
    rows.append(("alice", "to bob after the close"))
    _expect_feed(two, rows)
    seen = _reports(_run_cell(user, 5))
    assert seen["bob"] == [text for _, text in rows], seen
    user.screenshot(test_name, "2-after-close", user.page.locator(".jp-Notebook"))
