"""Collaborative-document sync over rtwidgets channels: the wire format and pure helpers.

Rules of this module:

* No I/O, no clock, no threads: functions map bytes/dicts to bytes/dicts/events; the small
  state holders (:class:`SnapshotPolicy`, :class:`PendingUpdates`, :class:`HeldUpdates`) are
  fed explicitly. The position helpers read an in-memory ``pycrdt.Text`` (never mutate it).
* Yjs updates are opaque bytes here (produced and applied by ``pycrdt`` in Python and
  ``yjs`` in the browser). Updates are idempotent and commutative, which is what lets every
  path below (history replay, snapshot, peer diff, resend) overlap without harm.
* Anything read from the wire is validated; a bad payload raises :class:`CollabProtocolError`
  with a message that says what was wrong.

Channel payloads (the ``data`` of a ``message`` frame; binary travels as standard base64):

=========================================  =======================================================
``{"t":"update","v":1,"u":B64}``           one local transaction; stored (history)
``{"t":"snapshot","v":1,"u":B64}``         whole document state; stored with ``key:"doc"``
``{"t":"sv","v":1,"sv":B64,"from":CID}``   ephemeral: "here is my state vector, send what I lack"
``{"t":"sv",...,"to":CID}``                ephemeral reply to one ``sv``: *we* lack something the
                                           asker has (it answers with a ``diff``)
``{"t":"diff","v":1,"u":B64,"to":CID}``    ephemeral: what ``to`` lacks, answering its ``sv``
=========================================  =======================================================

Cursors are Yjs relative positions (``Y.encodeRelativePosition``), base64 in presence data.
Python indexes are code points; pycrdt's ``Text`` counts UTF-8 bytes and yjs UTF-16 units, so
every conversion goes through the helpers below (never raw ``pycrdt.StickyIndex``).
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import pycrdt

from rtwidgets.errors import CollabProtocolError  # defined there; re-exported from here

__all__ = [
    "EMPTY_UPDATE",
    "PROTOCOL_VERSION",
    "STATE_KEY",
    "CollabProtocolError",
    "DiffMessage",
    "DocMessage",
    "HeldUpdates",
    "PendingUpdates",
    "SnapshotMessage",
    "SnapshotPolicy",
    "StateVectorMessage",
    "UpdateMessage",
    "b64decode",
    "b64encode",
    "char_index",
    "decode_state_vector",
    "diff_message",
    "encode_item_position",
    "end_position",
    "has_unseen",
    "is_empty_update",
    "minimal_edit",
    "not_integrated",
    "parse_doc_message",
    "resolve_position",
    "snapshot_message",
    "state_vector_message",
    "sticky_position",
    "update_message",
    "utf8_offset",
    "utf16_length",
]

PROTOCOL_VERSION: Final = 1
STATE_KEY: Final = "doc"  # the channel's keyed-state slot holding the latest snapshot
# What Yjs/yrs encode for "no structs, no deletions": a diff with nothing to send.
EMPTY_UPDATE: Final = b"\x00\x00"
MAX_CLIENT_ID_LENGTH: Final = 128
# How far position corrections scan inside one item (bounds the cost on huge pasted items;
# beyond it a cursor after non-ASCII text may be off by a few characters).
MAX_RUN_SCAN: Final = 2048


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class UpdateMessage:
    """An incremental Yjs update (stored in the channel's history)."""

    update: bytes


@dataclass(frozen=True)
class SnapshotMessage:
    """The full document state as one update (the channel's keyed state ``doc``)."""

    update: bytes


@dataclass(frozen=True)
class StateVectorMessage:
    """A peer's state vector; ``to`` is set when it is a reply addressed to one client."""

    state: bytes
    sender: str
    to: str | None = None


@dataclass(frozen=True)
class DiffMessage:
    """The updates ``to`` lacks, computed against the state vector it announced."""

    update: bytes
    to: str


DocMessage = UpdateMessage | SnapshotMessage | StateVectorMessage | DiffMessage


def b64encode(data: bytes) -> str:
    """Standard base64 (with padding) as ``str``."""
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(value: Any, field: str = "u") -> bytes:
    """Decode strict standard base64 or raise :class:`CollabProtocolError` naming ``field``."""
    if not isinstance(value, str):
        raise CollabProtocolError(f"{field!r} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CollabProtocolError(f"{field!r} is not valid base64 ({exc})") from None


def _client_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID_LENGTH:
        raise CollabProtocolError(f"{field!r} must be a client id string of 1-{MAX_CLIENT_ID_LENGTH} chars")
    return value


def parse_doc_message(data: Any) -> DocMessage:
    """Validate one channel payload and return the typed message.

    Raises :class:`CollabProtocolError` for anything that is not a version-1 doc message.
    Binary fields are only base64-checked here; whether they are valid Yjs updates is
    decided when applying them (pycrdt raises ``ValueError``).
    """
    if not isinstance(data, dict):
        raise CollabProtocolError(f"a doc message must be an object, got {type(data).__name__}")
    kind = data.get("t")
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise CollabProtocolError(
            f"unsupported doc protocol version {version!r} (this is {PROTOCOL_VERSION})"
        )
    if kind == "update":
        return UpdateMessage(b64decode(data.get("u"), "u"))
    if kind == "snapshot":
        return SnapshotMessage(b64decode(data.get("u"), "u"))
    if kind == "sv":
        to = data.get("to")
        return StateVectorMessage(
            b64decode(data.get("sv"), "sv"),
            _client_id(data.get("from"), "from"),
            None if to is None else _client_id(to, "to"),
        )
    if kind == "diff":
        return DiffMessage(b64decode(data.get("u"), "u"), _client_id(data.get("to"), "to"))
    raise CollabProtocolError(f"unknown doc message type {str(kind)[:40]!r}")


def update_message(update: bytes) -> dict[str, Any]:
    return {"t": "update", "v": PROTOCOL_VERSION, "u": b64encode(update)}


def snapshot_message(state: bytes) -> dict[str, Any]:
    return {"t": "snapshot", "v": PROTOCOL_VERSION, "u": b64encode(state)}


def state_vector_message(state: bytes, sender: str, to: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "sv", "v": PROTOCOL_VERSION, "sv": b64encode(state), "from": sender}
    if to is not None:
        msg["to"] = to
    return msg


def diff_message(update: bytes, to: str) -> dict[str, Any]:
    return {"t": "diff", "v": PROTOCOL_VERSION, "u": b64encode(update), "to": to}


# ----------------------------------------------------------------------------- state vectors


def _read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    # lib0 variable-length unsigned integer: 7 bits per byte, high bit = "more follows".
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise CollabProtocolError("state vector ends in the middle of a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise CollabProtocolError("state vector number longer than 10 bytes")


def decode_state_vector(state: bytes) -> dict[int, int]:
    """Decode a Yjs state vector (``Y.encodeStateVector`` / ``Doc.get_state``) to {client: clock}."""
    count, pos = _read_var_uint(state, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = _read_var_uint(state, pos)
        clock, pos = _read_var_uint(state, pos)
        clocks[client] = clock
    if pos != len(state):
        raise CollabProtocolError(f"{len(state) - pos} trailing bytes after the state vector")
    return clocks


def has_unseen(ours: dict[int, int], theirs: dict[int, int]) -> bool:
    """True when ``theirs`` contains operations ``ours`` has not integrated yet."""
    return any(clock > ours.get(client, 0) for client, clock in theirs.items())


def is_empty_update(update: bytes) -> bool:
    """True for an update that carries nothing (e.g. a diff against an up-to-date peer)."""
    return bytes(update) == EMPTY_UPDATE


# ----------------------------------------------------------------------------- text indexes


def _write_var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def end_position(type_name: str) -> bytes:
    """An encoded Yjs relative position meaning "the end of root type ``type_name``".

    Yjs encodes a position with no item as the type's name plus ``assoc >= 0``, which resolves
    to the type's length: a cursor at the end stays at the end while others append. (pycrdt
    cannot create one: it has no item to stick to.)
    """
    name = type_name.encode("utf-8")
    return b"\x01" + _write_var_uint(len(name)) + name + b"\x00"


def utf8_offset(text: str, index: int) -> int:
    """Python character index -> UTF-8 byte offset (pycrdt's ``Text`` counts UTF-8 bytes)."""
    return len(text[:index].encode("utf-8"))


def char_index(text: str, offset: int) -> int:
    """UTF-8 byte offset -> Python character index (an offset inside a character rounds down)."""
    return len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (what Yjs clocks and browser indexes count)."""
    return len(text.encode("utf-16-le")) // 2


def _write_var_int(value: int) -> bytes:
    # lib0 signed varint: first byte holds 6 bits + sign bit (0x40) + continuation (0x80).
    negative = value < 0
    value = abs(value)
    first = (value & 0x3F) | (0x40 if negative else 0)
    value >>= 6
    out = bytearray([first | (0x80 if value else 0)])
    while value:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
    return bytes(out)


def encode_item_position(client: int, clock: int, assoc: int = 0) -> bytes:
    """Encode a Yjs relative position pointing at item ``(client, clock)`` (``Y.encodeRelativePosition``)."""
    return b"\x00" + _write_var_uint(client) + _write_var_uint(clock) + _write_var_int(assoc)


def _yrs_item(text: pycrdt.Text, current: str, index: int) -> tuple[int, int]:
    item = pycrdt.StickyIndex.new(text, utf8_offset(current, index), pycrdt.Assoc.AFTER).to_json()["item"]
    return int(item["client"]), int(item["clock"])


def sticky_position(text: pycrdt.Text, type_name: str, index: int) -> bytes:
    """An encoded Yjs relative position for Python character ``index`` of ``text``, valid in yjs.

    pycrdt 0.14 (yrs, UTF-8 offsets) adds the *byte* offset inside an item to the item's clock,
    while Yjs clocks count UTF-16 units, so its positions after non-ASCII characters point at
    the wrong (or a missing) character in a browser. Here the item start is found by walking
    back while the clocks move in step with the bytes, and the clock is recomputed in UTF-16.
    ``index == len(text)`` gives :func:`end_position` (pycrdt has no item to stick to there).
    """
    current = str(text)
    if not 0 <= index <= len(current):
        raise IndexError(f"position {index} outside 0..{len(current)}")
    if index == len(current):
        return end_position(type_name)
    client, clock = _yrs_item(text, current, index)
    start = _run_start(text, current, index, client, clock)
    if current[start:index].isascii():
        return encode_item_position(client, clock)
    true_clock = clock
    for at, true_clock in _true_clocks(text, current, start, client):  # noqa: B007
        if at == index:
            break
    return encode_item_position(client, true_clock)


def _run_start(text: pycrdt.Text, current: str, index: int, client: int, clock: int) -> int:
    # Walk back while pycrdt's clocks advance in step with UTF-8 bytes. Inside one item they
    # always do, so the result is an item start; it may also swallow earlier items of the same
    # client whose clocks happen to line up in bytes (told apart by _true_clocks).
    start = index
    while start > 0 and index - start < MAX_RUN_SCAN:
        prev_client, prev_clock = _yrs_item(text, current, start - 1)
        if prev_client != client or prev_clock != clock - len(current[start - 1 : index].encode("utf-8")):
            break
        start -= 1
    return start


def _true_clocks(text: pycrdt.Text, current: str, start: int, client: int) -> Iterator[tuple[int, int]]:
    """Yield ``(index, Yjs clock)`` for the characters from item start ``start`` while they stay
    on ``client``'s run. At an item start pycrdt's clock is exact; after that a character either
    continues the item (previous clock + its UTF-16 length) or starts another item (pycrdt's
    clock is exact again). When the two differ, pycrdt's resolver — which finds items by their
    true clock ranges — says whether the continued clock lies in the current item."""
    item_start = start
    _, clock = _yrs_item(text, current, start)
    yield start, clock
    for index in range(start + 1, min(len(current), start + MAX_RUN_SCAN)):
        item_client, yrs_clock = _yrs_item(text, current, index)
        if item_client != client:
            return
        continued = clock + utf16_length(current[index - 1])
        if yrs_clock != continued:
            found = pycrdt.StickyIndex.decode(encode_item_position(client, continued), text).get_index()
            if not utf8_offset(current, item_start) <= found <= utf8_offset(current, index):
                item_start, continued = index, yrs_clock
        clock = continued
        yield index, clock


def _read_position(raw: bytes) -> tuple[str, Any, int]:
    kind, pos = _read_var_uint(raw, 0)
    if kind == 0:
        client, pos = _read_var_uint(raw, pos)
        clock, pos = _read_var_uint(raw, pos)
        target: Any = (client, clock)
    elif kind == 1:
        length, pos = _read_var_uint(raw, pos)
        target = raw[pos : pos + length].decode("utf-8", errors="replace")
        pos += length
    else:
        raise CollabProtocolError(f"relative position of kind {kind} (nested types) is not supported")
    assoc = 0
    if pos < len(raw):
        first = raw[pos]
        value, shift, pos = first & 0x3F, 6, pos + 1
        more = first & 0x80
        while more:
            if pos >= len(raw):
                raise CollabProtocolError("relative position ends in the middle of a number")
            byte = raw[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            more = byte & 0x80
        assoc = -value if first & 0x40 else value
    return ("item" if kind == 0 else "type"), target, assoc


def resolve_position(text: pycrdt.Text, type_name: str, raw: bytes) -> int | None:
    """The Python character index of an encoded Yjs relative position (from yjs or pycrdt).

    ``None`` when it refers to another type. Corrects pycrdt's byte-offset reading of clocks
    (see :func:`sticky_position`); pycrdt's answer can only be too small.
    Raises :class:`CollabProtocolError` for bytes that are not a relative position.
    """
    kind, target, assoc = _read_position(raw)
    current = str(text)
    if kind == "type":
        if target != type_name:
            return None
        return len(current) if assoc >= 0 else 0
    try:
        offset = pycrdt.StickyIndex.decode(raw, text).get_index()
    except Exception as exc:  # yrs raises several types for undecodable or unknown positions
        raise CollabProtocolError(f"not a Yjs relative position ({exc})") from None
    approx = char_index(current, offset)
    if current.isascii() or assoc < 0 or approx >= len(current):
        return approx
    client, clock = _yrs_item(text, current, approx)
    want_client, want_clock = target
    if client != want_client:
        return approx
    # pycrdt read the UTF-16 clock offset as bytes, so the answer is at or after ``approx``, in the
    # same item: scan the item's true clocks.
    start = _run_start(text, current, approx, client, clock)
    for index, true_clock in _true_clocks(text, current, start, client):
        if true_clock == want_clock and index >= approx:
            return index
        if true_clock > want_clock and index > approx:
            return index - 1  # inside a surrogate pair: the character holding it
    return approx


def minimal_edit(old: str, new: str) -> tuple[int, int, str]:
    """The single splice turning ``old`` into ``new``: ``(start, delete_count, insert_text)``.

    Keeps the common prefix and suffix untouched, so replacing a document with a slightly
    different one does not move other people's cursors or clobber their concurrent edits there.
    """
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    return start, end_old - start, new[start:end_new]


# ----------------------------------------------------------------------------- policies


class SnapshotPolicy:
    """Decides when this replica should publish a compacted snapshot.

    Every replica counts the stored updates it has seen since the last stored snapshot (any
    replica's). Past ``every`` (+ a random spread, so that not every replica fires at once)
    it is due. A snapshot is a superset of all history before it, so a newcomer rebuilds
    from snapshot + retained history even after older updates were evicted — as long as
    ``every`` stays well below the gateway's ``history_size``.
    """

    def __init__(
        self, every: int = 50, *, spread: int | None = None, rng: random.Random | None = None
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"snapshot interval must be an int >= 1, got {every!r}")
        self.every = every
        self._spread = every // 4 if spread is None else spread
        self._rng = rng or random.Random()
        self.since_snapshot = 0
        self._threshold = self._draw()

    def _draw(self) -> int:
        return self.every + (self._rng.randint(0, self._spread) if self._spread > 0 else 0)

    def observe_update(self) -> None:
        """A stored update was delivered (ours or a peer's)."""
        self.since_snapshot += 1

    def observe_snapshot(self) -> None:
        """A stored snapshot was delivered (ours or a peer's): start counting again."""
        self.since_snapshot = 0
        self._threshold = self._draw()

    @property
    def due(self) -> bool:
        return self.since_snapshot >= self._threshold

    def started(self) -> None:
        """We are publishing one now: do not fire again until it (or another) lands."""
        self.since_snapshot = 0


def not_integrated(update: bytes, doc_state: bytes) -> bool:
    """True when a document with state vector ``doc_state`` lacks some of ``update``'s insertions.

    The part of ``update`` not covered by the state is computed; a v1 update starts with the
    number of clients that still have structs, so a leading 0 means "all of it is there".
    (``pycrdt.get_state(update)`` cannot tell: it only counts structs contiguous from clock 0.)
    """
    return pycrdt.get_update(update, doc_state)[:1] != b"\x00"


class HeldUpdates:
    """Remote updates the document could not integrate yet (their dependencies are missing).

    Yjs keeps such updates pending until the dependencies arrive; the yrs version under pycrdt
    0.14 loses some of them when several are pending at once (e.g. 3 updates of one client
    applied in the order 1, 3, 2 leave 3 out). So the replica keeps them itself: :meth:`note`
    after each apply, :meth:`retry` after an apply that made progress. ``apply`` and
    ``state`` are the document's ``apply_update`` and ``get_state``.
    """

    def __init__(self) -> None:
        self._held: list[bytes] = []

    def __len__(self) -> int:
        return len(self._held)

    def note(self, update: bytes, doc_state: bytes) -> bool:
        """Hold ``update`` if the doc (state ``doc_state``) lacks some of it. True if newly incomplete."""
        missing = not_integrated(update, doc_state)
        if missing or self._held:
            # While anything is held, deletions are held too: they may refer to held items.
            self._held.append(bytes(update))
        return missing

    def retry(self, apply: Callable[[bytes], None], state: Callable[[], bytes]) -> None:
        """Re-apply held updates until nothing more integrates; forget those now integrated."""
        if not self._held:
            return
        while True:
            before = state()
            for update in self._held:
                apply(update)
            after = state()
            if after == before:
                break
        still = [u for u in self._held if not_integrated(u, after)]
        # Once nothing is missing, every held deletion was just applied with its targets present.
        self._held = still if still else []


class PendingUpdates:
    """Local updates not yet confirmed stored by the gateway.

    ``add`` when publishing, ``confirm`` on the ack, ``fail`` when the publish gave up
    (connection failed, queue full, refused). :meth:`take_failed` returns every failed update
    merged into one, to publish again after reconnecting — nothing typed offline is lost.
    """

    def __init__(self) -> None:
        self._next = 0
        self._in_flight: dict[int, bytes] = {}
        self._failed: dict[int, bytes] = {}

    def add(self, update: bytes) -> int:
        self._next += 1
        self._in_flight[self._next] = bytes(update)
        return self._next

    def confirm(self, token: int) -> None:
        self._in_flight.pop(token, None)
        self._failed.pop(token, None)

    def fail(self, token: int) -> None:
        update = self._in_flight.pop(token, None)
        if update is not None:
            self._failed[token] = update

    def take_failed(self) -> bytes | None:
        if not self._failed:
            return None
        updates = list(self._failed.values())
        self._failed.clear()
        return updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def failed(self) -> int:
        return len(self._failed)
