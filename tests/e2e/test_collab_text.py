"""CollabText in two pages: both type into one document at once and end with the same text,
each seeing the other's cursor."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, User, Users, copy_to_docs

ALICE_TEXT = "alice writes the summary."
BOB_TEXT = "Bob adds a title. "
CHUNK = 3  # characters typed by one user before the other types again


# The editor's lines as text: remote carets are widgets inside a line (with the user's name),
# not document content, so they are left out.
_LINES = """(root) => [...root.querySelectorAll('.cm-line')].map((line) => {
  const copy = line.cloneNode(true);
  copy.querySelectorAll('.cm-ySelectionCaret').forEach((caret) => caret.remove());
  return copy.textContent;
})"""


def _lines(user: User) -> list[str]:
    return list(user.widget("collab_text").evaluate(_LINES))


def _wait_lines(user: User, expected: list[str]) -> None:
    root = user.widget("collab_text").element_handle()
    user.page.wait_for_function(
        f"([root, expected]) => JSON.stringify(({_LINES})(root)) === JSON.stringify(expected)",
        arg=[root, expected],
        polling=100,
    )


def _type_interleaved(first: tuple[Any, str], second: tuple[Any, str]) -> None:
    """Type both texts in alternating small chunks, never waiting for the other page to catch up."""
    (page_a, text_a), (page_b, text_b) = first, second
    for i in range(0, max(len(text_a), len(text_b)), CHUNK):
        if text_a[i : i + CHUNK]:
            page_a.keyboard.type(text_a[i : i + CHUNK])
        if text_b[i : i + CHUNK]:
            page_b.keyboard.type(text_b[i : i + CHUNK])


def test_two_pages_type_into_one_collab_text(users: Users, gateway: GatewayProcess, test_name: str) -> None:
    doc = f"doc-{users.suffix}"
    specs = []
    for name in ("alice", "bob"):
        token_file = users.token_file(name, gateway.token(name))
        specs.append(
            (
                name,
                users.notebook(
                    f"collab-{name}", [cells.connect(gateway.url, token_file), cells.collab_text(doc)]
                ),
            )
        )
    alice, bob = users.open(*specs)
    editors = {user.name: user.widget("collab_text") for user in (alice, bob)}
    for editor in editors.values():
        expect(editor).to_have_attribute("data-status", "live")
        expect(editor).to_have_attribute("data-synced", "true")
        expect(editor.locator(".rtw-ct-peer")).to_have_count(2)

    # Alice starts the document; Bob sees it before they both type.
    alice_content = editors["alice"].locator(".cm-content")
    alice_content.click()
    alice.page.keyboard.type("notes")
    alice.page.keyboard.press("Enter")
    _wait_lines(bob, ["notes", ""])

    # Alice continues at the end, Bob at the very start, at the same time.
    alice.page.keyboard.press("Control+End")
    bob_content = editors["bob"].locator(".cm-content")
    bob_content.click()
    bob.page.keyboard.press("Control+Home")
    _type_interleaved((alice.page, ALICE_TEXT), (bob.page, BOB_TEXT))

    # Both converge on the same text, holding both contributions intact.
    expected = [f"{BOB_TEXT}notes", ALICE_TEXT]
    for user in (alice, bob):
        _wait_lines(user, expected)
    assert _lines(alice) == _lines(bob) == expected

    # Each page shows the other user's cursor (a caret labelled with their name).
    for me, other in ((alice, bob), (bob, alice)):
        caret = editors[me.name].locator(".cm-ySelectionCaret")
        expect(caret).to_have_count(1)
        expect(caret).to_be_visible()
        expect(caret.locator(".cm-ySelectionInfo")).to_have_text(other.name)
    # Hovering shows the name label: that is the screenshot for the docs.
    editors["alice"].locator(".cm-ySelectionCaret").hover()
    info = editors["alice"].locator(".cm-ySelectionCaret .cm-ySelectionInfo").element_handle()
    alice.page.wait_for_function("(info) => getComputedStyle(info).opacity === '1'", arg=info)
    copy_to_docs(alice.screenshot(test_name, "collab_text-alice", editors["alice"]), "collab_text.png")
    bob.screenshot(test_name, "collab_text-bob", editors["bob"])
