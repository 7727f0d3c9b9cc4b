"""rtwidgets.errors: one class per failure, re-exported from where users import it."""

from __future__ import annotations

import importlib

import pytest

import rtwidgets
from rtwidgets import errors
from rtwidgets.auth import verify_token
from rtwidgets.protocol import ErrorCode

# module that exports the name before the errors module existed -> name
_HOMES = [
    ("rtwidgets.client", "RealtimeError"),
    ("rtwidgets.client", "AuthenticationError"),
    ("rtwidgets.client", "ConnectionClosedError"),
    ("rtwidgets.client", "ConnectionFailedError"),
    ("rtwidgets.client", "QueueFullError"),
    ("rtwidgets.client", "AckTimeoutError"),
    ("rtwidgets.client", "ServerError"),
    ("rtwidgets.client_errors", "ServerError"),
    ("rtwidgets.auth", "AuthError"),
    ("rtwidgets.protocol", "ProtocolError"),
    ("rtwidgets.core.optimistic", "StoreError"),
    ("rtwidgets.core.reconcile", "ReconcileError"),
    ("rtwidgets.core.crdt_sync", "CollabProtocolError"),
    ("rtwidgets.models.channel", "ChannelClosedError"),
    ("rtwidgets.models.optimistic", "OperationRolledBack"),
    ("rtwidgets", "OperationRolledBack"),
    ("rtwidgets", "RealtimeError"),
    ("rtwidgets", "AuthenticationError"),
    ("rtwidgets", "ChannelClosedError"),
]


@pytest.mark.parametrize(("module", "name"), _HOMES)
def test_old_import_paths_give_the_one_class(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_auth_error_and_authentication_error_are_one_class() -> None:
    assert errors.AuthError is errors.AuthenticationError
    with pytest.raises(errors.AuthenticationError, match="missing token") as info:
        verify_token("secret", "")
    assert info.value.code == "auth_failed"
    assert isinstance(info.value, errors.RealtimeError)


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (errors.StoreError, ValueError),
        (errors.ReconcileError, ValueError),
        (errors.CollabProtocolError, ValueError),
        (errors.ChannelClosedError, RuntimeError),
        (errors.OperationRolledBack, RuntimeError),
        (errors.AckTimeoutError, TimeoutError),
        (errors.AckTimeoutError, errors.RealtimeError),
        (errors.ServerError, errors.RealtimeError),
    ],
)
def test_classes_keep_their_bases(cls: type[BaseException], base: type[BaseException]) -> None:
    assert issubclass(cls, base)


def test_attributes() -> None:
    err = errors.ServerError("rate_limited", "slow down", {"type": "error"})
    assert (err.code, err.reason, err.frame) == ("rate_limited", "slow down", {"type": "error"})
    assert str(err) == "rate_limited: slow down"
    perr = errors.ProtocolError(ErrorCode.BAD_JSON, "nope", msg_id=7)
    assert (perr.code, perr.reason, perr.msg_id) == (ErrorCode.BAD_JSON, "nope", 7)
    rolled = errors.OperationRolledBack("op1", "create", "a", "ack_timeout")
    assert str(rolled) == "create of item 'a' rolled back: ack_timeout"
    assert errors.RealtimeError("x", "custom").code == "custom"
    assert errors.QueueFullError("x").code == "queue_full"


def test_every_name_in_all_exists() -> None:
    for name in errors.__all__:
        assert isinstance(getattr(errors, name), type), name
    # The client's and the models' errors are importable from the top-level package too.
    not_top_level = {"AuthError", "ProtocolError", "StoreError", "ReconcileError", "CollabProtocolError"}
    # The gateway's broker errors and the browser-intent error are internal to those layers.
    not_top_level |= {"BrokerUnavailable", "StateFull", "IntentError"}
    assert set(errors.__all__) - not_top_level <= set(rtwidgets.__all__)
