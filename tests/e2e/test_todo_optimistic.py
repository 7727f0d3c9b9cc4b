"""Optimistic to-dos in two pages: pending then confirmed in both; a refused change rolls back.

Each kernel reaches the gateway through a proxy adding latency, so the window between the
optimistic change and the gateway's ack is long enough for the browser to paint it. A
MutationObserver in each page records every class list a row had, so a short-lived state
is checked from the record instead of being raced by polling.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, User, Users, copy_to_docs, has_class

# One-way latency added to each kernel's link: ack round trips take > 4 x this.
LATENCY = 0.25

# Records, per "<channel>|<item text>", the distinct successive class lists of its row.
_RECORDER = """() => {
  const seen = {};
  const record = () => {
    for (const row of document.querySelectorAll('.rtw-todo_list .rtw-item')) {
      const list = row.closest('.rtw-todo_list');
      const channel = list.querySelector('.rtw-todo-channel').textContent;
      const text = (row.querySelector('.rtw-item-text') || {}).textContent || '';
      const history = (seen[channel + '|' + text] ||= []);
      const classes = [...row.classList].sort().join(' ');
      if (history[history.length - 1] !== classes) history.push(classes);
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['class'], characterData: true,
  });
  record();
  window.__rtwRowHistory = seen;
}"""


def _history(user: User, channel: str, text: str) -> list[set[str]]:
    raw = user.page.evaluate("(key) => (window.__rtwRowHistory[key] || [])", f"#{channel}|{text}")
    return [set(classes.split()) for classes in raw]


def _went_pending_then_confirmed(history: list[set[str]], done: bool) -> bool:
    """Some state was pending with the new ``done`` value, and a later one settled (not pending)."""
    want = (lambda c: "rtw-done" in c) if done else (lambda c: "rtw-done" not in c)
    for i, classes in enumerate(history):
        if "rtw-pending" in classes and want(classes):
            return any("rtw-pending" not in later and want(later) for later in history[i + 1 :])
    return False


def _todo(user: User, index: int) -> Any:
    return user.page.locator(".rtw-widget.rtw-todo_list").nth(index)


def test_todos_pending_confirmed_in_both_and_refused_change_rolls_back(
    users: Users, gateway: GatewayProcess, make_proxy: Any, test_name: str
) -> None:
    shared, locked = f"todos-{users.suffix}", f"locked-{users.suffix}"
    # Alice may write both lists; Bob only the shared one (his writes to `locked` are refused).
    tokens = {"alice": gateway.token("alice"), "bob": gateway.token("bob", publish=(shared,))}
    specs = []
    for name, token in tokens.items():
        proxy = make_proxy(gateway.port, delay=LATENCY)
        token_file = users.token_file(name, token)
        notebook = users.notebook(
            f"todo-{name}", [cells.connect(proxy.url, token_file), cells.todo_lists(shared, locked)]
        )
        specs.append((name, notebook))
    alice, bob = users.open(*specs)
    for user in (alice, bob):
        for index in (0, 1):
            expect(_todo(user, index)).to_have_attribute("data-state", "connected")
        user.page.evaluate(_RECORDER)

    # Alice adds an item to each list through the UI; both appear, confirmed, in both pages.
    for index, text in ((0, "buy milk"), (1, "locked item")):
        new = _todo(alice, index).locator(".rtw-todo-input")
        new.fill(text)
        new.press("Enter")
        for user in (alice, bob):
            row = _todo(user, index).locator(".rtw-item", has_text=text)
            expect(row).to_have_count(1)
            expect(row).not_to_have_class(has_class("rtw-pending"))

    # Alice ticks "buy milk": pending at once in her page, then confirmed; done in Bob's page too.
    _todo(alice, 0).locator(".rtw-item", has_text="buy milk").locator(".rtw-item-check").click()
    for user in (alice, bob):
        row = _todo(user, 0).locator(".rtw-item", has_text="buy milk")
        expect(row).to_have_class(has_class("rtw-done"))
        expect(row).not_to_have_class(has_class("rtw-pending"))
        expect(row.locator(".rtw-item-check")).to_be_checked()
    assert _went_pending_then_confirmed(_history(alice, shared, "buy milk"), done=True), _history(
        alice, shared, "buy milk"
    )
    # Bob never had an op of his own on it: his row went from open to done without pending.
    assert all("rtw-pending" not in c for c in _history(bob, shared, "buy milk")), _history(
        bob, shared, "buy milk"
    )
    copy_to_docs(alice.screenshot(test_name, "todo_list-alice", _todo(alice, 0)), "todo_list.png")

    # Bob unticks it (he may write this list): pending then confirmed for him, open again for Alice.
    _todo(bob, 0).locator(".rtw-item", has_text="buy milk").locator(".rtw-item-check").click()
    for user in (alice, bob):
        row = _todo(user, 0).locator(".rtw-item", has_text="buy milk")
        expect(row).not_to_have_class(has_class("rtw-done"))
        expect(row).not_to_have_class(has_class("rtw-pending"))
        expect(row.locator(".rtw-item-check")).not_to_be_checked()
    assert _went_pending_then_confirmed(_history(bob, shared, "buy milk"), done=False), _history(
        bob, shared, "buy milk"
    )

    # Bob ticks the locked item: shown done and pending, then refused by the gateway and rolled back.
    b_locked = _todo(bob, 1)
    b_locked.locator(".rtw-item", has_text="locked item").locator(".rtw-item-check").click()
    notice = b_locked.locator(".rtw-rollback")
    expect(notice).to_be_visible()
    expect(notice.locator(".rtw-rollback-text")).to_contain_text("Change rolled back:")
    row = b_locked.locator(".rtw-item", has_text="locked item")
    expect(row).not_to_have_class(has_class("rtw-pending"))
    expect(row).not_to_have_class(has_class("rtw-done"))
    expect(row.locator(".rtw-item-check")).not_to_be_checked()
    copy_to_docs(bob.screenshot(test_name, "todo_list-rollback-bob", b_locked), "todo_list_rollback.png")
    history = _history(bob, locked, "locked item")
    pending_done = [i for i, c in enumerate(history) if {"rtw-pending", "rtw-done"} <= c]
    assert pending_done, f"the refused tick was never shown optimistically: {history}"
    assert any("rtw-rolled-back" in c and "rtw-done" not in c for c in history[pending_done[0] :]), history
    print(f"[e2e] rollback notice in bob's page: {notice.locator('.rtw-rollback-text').inner_text()!r}")
    # Alice's page never showed Bob's refused change.
    expect(_todo(alice, 1).locator(".rtw-item", has_text="locked item")).not_to_have_class(
        has_class("rtw-done")
    )
    assert all("rtw-done" not in c for c in _history(alice, locked, "locked item")), _history(
        alice, locked, "locked item"
    )
    assert _todo(alice, 1).locator(".rtw-rollback").is_hidden()
