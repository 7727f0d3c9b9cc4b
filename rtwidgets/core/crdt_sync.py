"""Collaborative-document sync over rtwidgets channels: the wire format and pure helpers.

Rules of this module:

* No I/O, no clock, no threads: functions map bytes/dicts to bytes/dicts/events; the two
  small state holders (:class:`SnapshotPolicy`, :class:`PendingUpdates`) are fed explicitly.
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
``{"t":"sv",...,"to":CID}``                ephemeral reply: the asker lacks nothing we could tell,
                                           but *we* lack something it has
``{"t":"diff","v":1,"u":B64,"to":CID}``    ephemeral: what ``to`` lacks, answering its ``sv``
=========================================  =======================================================
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pycrdt

__all__ = [
    "EMPTY_UPDATE",
    "HeldUpdates",
    "PROTOCOL_VERSION",
    "STATE_KEY",
    "CollabProtocolError",
    "DiffMessage",
    "DocMessage",
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
    "end_position",
    "has_unseen",
    "is_empty_update",
    "minimal_edit",
    "parse_doc_message",
    "snapshot_message",
    "state_vector_message",
    "update_message",
    "utf8_offset",
]

PROTOCOL_VERSION: Final = 1
STATE_KEY: Final = "doc"  # the channel's keyed-state slot holding the latest snapshot
# What Yjs/yrs encode for "no structs, no deletions": a diff with nothing to send.
EMPTY_UPDATE: Final = b"\x00\x00"
MAX_CLIENT_ID_LENGTH: Final = 128


class CollabProtocolError(ValueError):
    """A collaborative-document payload was malformed (wrong shape, bad base64, bad bytes)."""


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
        raise CollabProtocolError(f"unsupported doc protocol version {version!r} (this is {PROTOCOL_VERSION})")
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

    def __init__(self, every: int = 50, *, spread: int | None = None, rng: random.Random | None = None) -> None:
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
        missing = has_unseen(decode_state_vector(doc_state), decode_state_vector(pycrdt.get_state(update)))
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
        ours = decode_state_vector(after)
        still = [u for u in self._held if has_unseen(ours, decode_state_vector(pycrdt.get_state(u)))]
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
