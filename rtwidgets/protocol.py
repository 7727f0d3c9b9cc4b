"""rtwidgets wire protocol: message types, parsing, validation, error and close codes.

Rules of this module:

* It is shared by the gateway and every client; it does no I/O and keeps no state.
* Frames are JSON text objects with a ``type`` field, exactly as in the design
  rtwidgets follows (docs/design.md#wire-messages); everything added here is an optional field
  or a new message type, so the design's reference client keeps working (a superset, never a change).
* :func:`parse_client_frame` turns one raw frame into a validated ``dict`` or raises
  :class:`ProtocolError` carrying an :class:`ErrorCode`; the gateway answers that with
  :func:`error_frame` and keeps the connection open.

See ``docs/protocol.md`` for the human-readable specification.
"""

from __future__ import annotations

import math
from enum import Enum, IntEnum
from typing import Any, Final

import orjson

from rtwidgets.errors import ProtocolError  # defined there; re-exported from here

__all__ = [
    "CLIENT_TYPES",
    "MAX_CHANNEL_LENGTH",
    "SERVER_TYPES",
    "CloseCode",
    "ErrorCode",
    "ProtocolError",
    "decode",
    "encode",
    "error_frame",
    "parse_client_frame",
    "parse_server_frame",
    "validate_channel",
]

MAX_CHANNEL_LENGTH: Final = 200
MAX_NESTING: Final = 32
MAX_ID_LENGTH: Final = 128

# Client -> server message types (the design's, docs/design.md#wire-messages) plus rtwidgets' additions.
CLIENT_TYPES: Final = frozenset({"ping", "subscribe", "unsubscribe", "publish", "presence_update", "sync"})
# Server -> client message types.
SERVER_TYPES: Final = frozenset(
    {
        "connected",
        "pong",
        "ack",
        "error",
        "message",
        "history",
        "presence_join",
        "presence_leave",
        "presence_update",
        "presence_sync",
        "sync_response",
    }
)


class ErrorCode(str, Enum):
    """Codes carried by ``error {code, reason, id?}`` frames. Stable: clients branch on them."""

    BAD_JSON = "bad_json"  # frame is not valid UTF-8 JSON
    BAD_FRAME = "bad_frame"  # JSON, but not an object with a string ``type``
    UNKNOWN_TYPE = "unknown_type"  # ``type`` is not a client message type
    INVALID_FIELD = "invalid_field"  # a field is missing or has the wrong type/range
    TOO_LARGE = "too_large"  # frame or presence data over the configured limit
    TOO_DEEP = "too_deep"  # JSON nested deeper than MAX_NESTING
    FORBIDDEN = "forbidden"  # the token's claims do not allow this channel/action
    NOT_SUBSCRIBED = "not_subscribed"  # publish/presence on a channel not subscribed
    PRESENCE_DISABLED = "presence_disabled"  # presence_update without presence on subscribe
    RATE_LIMITED = "rate_limited"  # publish over the per-connection rate limit
    STATE_FULL = "state_full"  # keyed channel state would exceed its key limit
    TOO_MANY_CHANNELS = "too_many_channels"  # per-connection subscription limit
    UNAVAILABLE = "unavailable"  # broker (e.g. Redis) unreachable; retry later
    INTERNAL = "internal"  # unexpected server fault; the connection stays usable


class CloseCode(IntEnum):
    """WebSocket close codes used by rtwidgets (4000-4999 are application codes)."""

    NORMAL = 1000  # client or server closed on purpose: do not reconnect
    GOING_AWAY = 1001  # gateway shutting down: do not reconnect (as in the design)
    POLICY = 1008  # forbidden Origin
    TOO_BIG = 1009  # frame above the hard size cap (websockets closes it)
    INTERNAL_ERROR = 1011  # keepalive ping timeout or server fault: reconnect
    SERVICE_RESTART = 1012  # gateway restarting (e.g. a rolling restart): reconnect, maybe elsewhere
    HEARTBEAT_TIMEOUT = 4000  # client saw no pong in time (the design's code): reconnect
    AUTH_FAILED = 4001  # missing, forged or expired token: do not reconnect (as in the design)
    TOKEN_EXPIRED = 4002  # token expired during the session: reconnect with a fresh token
    SLOW_CONSUMER = 4008  # outbound buffer over its bound: reconnect and recover history
    IDLE_TIMEOUT = 4009  # gateway saw no traffic within its heartbeat timeout: reconnect


# Close codes after which a client must not reconnect on its own.
NO_RECONNECT_CODES: Final = frozenset(
    {CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.AUTH_FAILED, CloseCode.POLICY}
)


def encode(message: dict[str, Any]) -> str:
    """Serialise one frame to JSON text (compact; non-string keys are refused)."""
    return orjson.dumps(message).decode()


def encode_bytes(message: dict[str, Any]) -> bytes:
    """Serialise one frame to UTF-8 JSON bytes (for sending as a text frame)."""
    return orjson.dumps(message)


def decode(raw: str | bytes) -> Any:
    """Parse JSON text; raise ``ProtocolError(BAD_JSON)`` on failure."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON ({exc})") from None


def error_frame(
    code: ErrorCode,
    reason: str,
    msg_id: Any = None,
    channel: str | None = None,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """Build ``{type: 'error', code, reason, id?, channel?, retryAfter?}`` (``retryAfter``: ms)."""
    frame: dict[str, Any] = {"type": "error", "code": code.value, "reason": reason}
    if msg_id is not None:
        frame["id"] = msg_id
    if channel is not None:
        frame["channel"] = channel
    if retry_after is not None:
        frame["retryAfter"] = max(0, math.ceil(retry_after * 1000.0))
    return frame


def _check_depth(value: Any, limit: int = MAX_NESTING, msg_id: Any = None) -> None:
    # Iterative, so a hostile 10 000-deep array cannot exhaust the Python stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ProtocolError(ErrorCode.TOO_DEEP, f"JSON nested deeper than {limit} levels", msg_id)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _bracket_count(raw: str | bytes) -> int:
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _valid_msg_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) <= value <= 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def validate_channel(name: Any, msg_id: Any = None) -> str:
    """Return ``name`` if it is a valid channel name, else raise ``INVALID_FIELD``.

    A channel is 1..200 printable characters without whitespace or ``*`` / ``?``
    (those are reserved for permission patterns).
    """
    if not isinstance(name, str) or not name:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'channel' must be a non-empty string", msg_id)
    if len(name) > MAX_CHANNEL_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'channel' longer than {MAX_CHANNEL_LENGTH} characters", msg_id
        )
    for ch in name:
        if ch.isspace() or ch in "*?" or not ch.isprintable():
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                "'channel' contains whitespace, '*', '?' or control characters",
                msg_id,
            )
    return name


def _opt_bool(obj: dict[str, Any], field: str, msg_id: Any) -> None:
    value = obj.get(field)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{field}' must be a boolean", msg_id)


def _opt_int(obj: dict[str, Any], field: str, msg_id: Any, lo: int = 0, hi: int = 2**53) -> int | None:
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{field}' must be an integer in [{lo}, {hi}]", msg_id)
    return value


def _opt_str(obj: dict[str, Any], field: str, msg_id: Any, max_len: int = MAX_ID_LENGTH) -> None:
    value = obj.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'{field}' must be a string of at most {max_len} characters", msg_id
        )


def parse_client_frame(raw: str | bytes, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode and validate one client -> server frame.

    Returns the message ``dict`` (unknown extra fields are kept and ignored).
    Raises :class:`ProtocolError` whose ``msg_id`` is the frame's ``_id`` when it
    could be read, so the refusal can be correlated by the sender.
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {len(raw)} bytes exceeds {max_bytes}")
    msg = decode(raw)
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    msg_id = msg.get("_id")
    if msg_id is not None and not _valid_msg_id(msg_id):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "'_id' must be an integer or a string of 1-128 characters"
        )
    mtype = msg.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame has no string 'type'", msg_id)
    if mtype not in CLIENT_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {mtype[:40]!r}", msg_id)
    # A value with N containers is at most N + 1 levels deep (scalars count as a level), and
    # every container needs one '[' or '{' byte (brackets inside strings only add to the
    # count), so fewer than MAX_NESTING brackets cannot be too deep: skip the walk.
    if _bracket_count(raw) >= MAX_NESTING:
        _check_depth(msg, msg_id=msg_id)

    if mtype == "ping":
        t = msg.get("t")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'t' must be a number", msg_id)
    elif mtype == "subscribe":
        validate_channel(msg.get("channel"), msg_id)
        options = msg.get("options")
        if options is None:
            msg["options"] = options = {}
        if not isinstance(options, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'options' must be an object", msg_id)
        _opt_bool(options, "presence", msg_id)
        _opt_bool(options, "state", msg_id)
        _opt_int(options, "history", msg_id, 0, 1_000_000)
        _opt_str(options, "lastEventId", msg_id)
        _opt_str(options, "epoch", msg_id)
        presence_data = options.get("presenceData")
        if presence_data is not None and not isinstance(presence_data, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'presenceData' must be an object", msg_id)
    elif mtype == "unsubscribe":
        validate_channel(msg.get("channel"), msg_id)
    elif mtype == "publish":
        validate_channel(msg.get("channel"), msg_id)
        if "data" not in msg:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'publish' needs a 'data' field", msg_id)
        _opt_int(msg, "seq", msg_id, 0, 2**53)
        _opt_bool(msg, "ephemeral", msg_id)
        _opt_str(msg, "key", msg_id, 256)
        _opt_str(msg, "msgId", msg_id)
    elif mtype == "presence_update":
        validate_channel(msg.get("channel"), msg_id)
        if not isinstance(msg.get("data"), dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'presence_update' needs an object 'data'", msg_id)
    elif mtype == "sync":
        channel = msg.get("channel")
        if channel is not None:
            validate_channel(channel, msg_id)
        _opt_str(msg, "lastEventId", msg_id)
        _opt_str(msg, "epoch", msg_id)
        version = msg.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'version' must be an integer", msg_id)
        pending = msg.get("pendingOps")
        if pending is not None and (
            not isinstance(pending, list) or not all(isinstance(p, str) for p in pending)
        ):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "'pendingOps' must be a list of strings", msg_id)
    return msg


def parse_server_frame(raw: str | bytes) -> dict[str, Any]:
    """Decode one server -> client frame; lenient about extra fields and future types.

    Raises ``ProtocolError`` if the frame is not a JSON object with a string ``type``.
    Unknown types are returned as-is so newer gateways do not break older clients.
    """
    msg = decode(raw)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "server frame must be an object with a 'type'")
    return msg
