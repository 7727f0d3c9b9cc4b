"""Python (pycrdt) and the browser's yjs really interoperate: updates both ways, UTF-16 vs
Python indexes, and relative positions (cursors) encoded on one side and resolved on the other.
Runs the front end's own yjs (js/node_modules) in node."""

from __future__ import annotations

import json
import pathlib
import random
import shutil
import subprocess

import pycrdt
import pytest

from rtwidgets.core import crdt_sync as cs

NODE = shutil.which("node")
PEER = pathlib.Path(__file__).with_name("yjs_peer.mjs")
YJS = pathlib.Path(__file__).parents[2] / "js" / "node_modules" / "yjs"

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(not YJS.is_dir(), reason="js/node_modules missing: run `cd js && npm ci`"),
]


def ask_yjs(request: dict[str, object]) -> dict[str, object]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(PEER)], input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_updates_and_cursors_cross_between_pycrdt_and_yjs() -> None:
    doc = pycrdt.Doc()
    text = doc.get("text", type=pycrdt.Text)
    text.insert(0, "a😀b")  # the emoji is 1 Python char, 2 UTF-16 units in JS, 4 UTF-8 bytes here
    # Python's cursor before "b" (index 2). pycrdt's own StickyIndex would point past the item
    # (it adds the UTF-8 offset to the clock); sticky_position corrects that.
    position = cs.sticky_position(text, "text", 2)
    answer = ask_yjs(
        {
            "update": cs.b64encode(doc.get_update()),
            "position": cs.b64encode(position),
            "insertAt": 3,  # UTF-16 index 3 = after the emoji, before "b"
            "text": "é",
        }
    )
    assert answer["text"] == "a😀éb"
    assert answer["positionIndex"] == 3  # resolved by yjs in UTF-16 units: before "b"
    doc.apply_update(cs.b64decode(answer["update"]))
    assert str(text) == "a😀éb"
    assert cs.resolve_position(text, "text", position) == 3  # moved past the inserted "é"
    end = cs.b64decode(answer["endPosition"])
    mid = cs.b64decode(answer["midPosition"])
    assert cs.resolve_position(text, "text", end) == len("a😀éb")
    assert cs.resolve_position(text, "text", mid) == 1  # UTF-16 index 2 is the emoji's 2nd half
    text.insert(len(str(text).encode()), "!")
    assert cs.resolve_position(text, "text", end) == len("a😀éb!")  # the end stays at the end


def test_positions_after_non_ascii_text_round_trip_through_yjs() -> None:
    doc = pycrdt.Doc()
    text = doc.get("text", type=pycrdt.Text)
    text.insert(0, "héllo wörld 😀 ok")
    current = str(text)
    positions = [cs.sticky_position(text, "text", index) for index in range(len(current) + 1)]
    answer = ask_yjs(
        {
            "update": cs.b64encode(doc.get_update()),
            "position": cs.b64encode(positions[0]),
            "positions": [cs.b64encode(p) for p in positions],
            "insertAt": 0,
            "text": "",
        }
    )
    assert answer["positionIndexes"] == [cs.utf16_length(current[:i]) for i in range(len(current) + 1)]
    assert [cs.resolve_position(text, "text", p) for p in positions] == list(range(len(current) + 1))


def random_document(seed: int, authors: int = 3, edits: int = 40) -> tuple[pycrdt.Doc, pycrdt.Text]:
    """Several authors editing one text (accents, CJK, emoji, deletions), fully exchanged."""
    rng = random.Random(seed)
    docs = [pycrdt.Doc() for _ in range(authors)]
    texts = [d.get("text", type=pycrdt.Text) for d in docs]
    for _ in range(edits):
        who = rng.randrange(authors)
        current = str(texts[who])
        before = docs[who].get_state()
        if current and rng.random() < 0.2:
            at = rng.randrange(len(current))
            end = min(len(current), at + rng.randint(1, 3))
            del texts[who][cs.utf8_offset(current, at) : cs.utf8_offset(current, end)]
        else:
            at = rng.randint(0, len(current))
            texts[who].insert(cs.utf8_offset(current, at), rng.choice(["a", "é", "中文", "😀", "ok ", "ñü"]))
        update = docs[who].get_update(before)
        for other, doc in enumerate(docs):
            if other != who:
                doc.apply_update(update)
    assert len({str(t) for t in texts}) == 1
    return docs[0], texts[0]


@pytest.mark.parametrize("seed", [7, 11])
def test_cursor_positions_agree_on_a_multi_author_non_ascii_document(seed: int) -> None:
    doc, text = random_document(seed)
    current = str(text)
    indexes = range(len(current) + 1)
    utf16 = [cs.utf16_length(current[:i]) for i in indexes]
    answer = ask_yjs(
        {
            "update": cs.b64encode(doc.get_update()),
            "position": cs.b64encode(cs.end_position("text")),
            "positions": [cs.b64encode(cs.sticky_position(text, "text", i)) for i in indexes],
            "makeAt": utf16,
            "insertAt": 0,
            "text": "",
        }
    )
    assert answer["positionIndexes"] == utf16  # Python-made cursors land where yjs puts them
    resolved = [cs.resolve_position(text, "text", cs.b64decode(p)) for p in answer["madePositions"]]
    assert resolved == list(indexes)  # and yjs-made cursors where Python expects them
