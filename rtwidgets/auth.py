"""JWT tokens: issue and verify (PyJWT, HS256 by default).

Claims understood by the gateway::

    {
      "sub": "alice",                 # the user id (required)
      "exp": 1767225600,              # expiry, enforced (required unless ttl=None at issue)
      "iat": 1767222000,
      "channels": {                   # fnmatch-style patterns per action
        "subscribe": ["chat:*"],
        "publish":   ["chat:*"],
        "presence":  ["chat:*"]
      }
    }

A missing ``channels`` claim means no channel at all (deny by default); the CLI and
:func:`issue_token` default to ``["*"]`` for every action. Tokens are secrets: never
log them (``redact`` helps when a URL must be logged).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

import jwt

# AuthError is rtwidgets.errors.AuthenticationError under its gateway-side name (one class for a
# refused token, whichever side refuses it).
from rtwidgets.errors import AuthError

__all__ = [
    "ACTIONS",
    "AuthError",
    "Claims",
    "RedactingFilter",
    "install_redacting_filter",
    "issue_token",
    "redact",
    "verify_token",
]

Action = Literal["subscribe", "publish", "presence"]
ACTIONS: tuple[Action, ...] = ("subscribe", "publish", "presence")
DEFAULT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    """The verified content of a token."""

    user_id: str
    expires_at: float | None
    patterns: dict[Action, tuple[str, ...]] = field(default_factory=dict)

    def can(self, action: Action, channel: str) -> bool:
        """True if this token allows ``action`` on ``channel``."""
        return any(fnmatchcase(channel, p) for p in self.patterns.get(action, ()))

    def expired(self, now: float | None = None) -> bool:
        """True once the expiry time has passed."""
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


def issue_token(
    secret: str,
    user: str,
    channels: Sequence[str] = ("*",),
    *,
    publish: Sequence[str] | None = None,
    presence: Sequence[str] | None = None,
    ttl: float | None = 3600.0,
    algorithm: str = DEFAULT_ALGORITHM,
    extra: dict[str, Any] | None = None,
) -> str:
    """Sign a token for ``user``.

    ``channels`` are the patterns the user may subscribe to; ``publish`` and ``presence``
    default to the same patterns. ``ttl`` seconds until expiry (``None``: never expires,
    use only for tests and local notebooks).

    Args:
        secret: the signing secret (non-empty); the gateway verifies with the same one.
        user: the user id (``sub``), a non-empty str.
        channels: fnmatch-style patterns of the channels ``user`` may subscribe to.
        publish: patterns ``user`` may publish to (``None``: ``channels``).
        presence: patterns ``user`` may join presence on (``None``: ``channels``).
        ttl: seconds until expiry, at least 1 (``None``: never).
        algorithm: the JWT algorithm (PyJWT's name, e.g. ``"HS256"``).
        extra: more claims; the ones above override keys of the same name.

    Returns:
        The signed JWT.

    Raises:
        ValueError: an empty ``secret``, or ``user`` empty or not a str.
        NotImplementedError: an ``algorithm`` PyJWT does not support.
        TypeError: an ``extra`` value that is not JSON-serialisable.
    """
    if not secret:
        raise ValueError("a non-empty secret is required to sign tokens")
    if not isinstance(user, str) or not user:
        raise ValueError("user must be a non-empty string")
    now = int(time.time())
    payload: dict[str, Any] = dict(extra or {})
    payload.update(
        {
            "sub": user,
            "iat": now,
            "channels": {
                "subscribe": list(channels),
                "publish": list(channels if publish is None else publish),
                "presence": list(channels if presence is None else presence),
            },
        }
    )
    if ttl is not None:
        payload["exp"] = now + max(1, int(ttl))
    return jwt.encode(payload, secret, algorithm=algorithm)


def _patterns(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        items = tuple(value)
        if all(isinstance(p, str) for p in items):
            return items
    raise AuthError("token claim 'channels' has a malformed pattern list")


_SAFE = re.compile(r"[^A-Za-z0-9_.:@-]")


def verify_token(
    secret: str, token: str | None, *, algorithms: Sequence[str] = (DEFAULT_ALGORITHM,)
) -> Claims:
    """Verify signature and expiry; return the claims or raise :class:`AuthError`."""
    if not token:
        raise AuthError("missing token")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=list(algorithms),
            options={"require": ["sub"], "verify_exp": True},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.PyJWTError as exc:
        # PyJWT messages describe the failure, never echo the token.
        raise AuthError(f"invalid token: {exc}") from None
    user = payload.get("sub")
    if not isinstance(user, str) or not user:
        raise AuthError("token 'sub' must be a non-empty string")
    raw = payload.get("channels", {})
    if isinstance(raw, (list, str)):
        raw = {action: raw for action in ACTIONS}
    if not isinstance(raw, dict):
        raise AuthError("token claim 'channels' must be an object or a list")
    patterns = {action: _patterns(raw.get(action, ())) for action in ACTIONS}
    exp = payload.get("exp")
    return Claims(user_id=user, expires_at=float(exp) if exp is not None else None, patterns=patterns)


def redact(url_or_text: str) -> str:
    """Replace any ``token=...`` query value with ``token=***`` (for logs)."""
    return re.sub(r"(token=)[^&\s#]*", r"\1***", url_or_text)


_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


class RedactingFilter(logging.Filter):
    """Scrub ``token=...`` query values and ``Bearer`` tokens from log records.

    Meant for the loggers handed to websockets, which logs request lines and headers
    (``Authorization`` included) at DEBUG. The filter rewrites the record's message in place
    and never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        cleaned = _BEARER.sub(r"\1***", redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_redacting_filter(logger: logging.Logger | str) -> logging.Logger:
    """Add a :class:`RedactingFilter` to ``logger`` (a logger or its name) unless it has one.

    Idempotent, so modules may call it at import time. Returns the logger.
    """
    log = logging.getLogger(logger) if isinstance(logger, str) else logger
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log
