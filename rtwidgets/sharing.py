"""``share()``: make any widget's synced traits the same for everyone on a channel.

Rules of this module:

* One :class:`~rtwidgets.models.shared_state.SharedState` per link; each shared trait is one
  key (its name). On the first sync, keys the channel already has win over the widget's
  values (a late joiner gets the current values); keys it lacks are seeded from the widget.
* Local changes go out through a :class:`~rtwidgets.models._binding.CoalescedSync` on the
  process-wide message budget: a slider dragged at hundreds of events per second sends at
  most the budget's share per second, latest value wins.
* Remote values are written to the widget on the runtime thread with the link's own
  observer muted, so nothing echoes back; a value equal to the shared one is never re-sent.
* Closing the widget (its ``comm`` goes to None) unlinks; :meth:`ShareLink.unlink` too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from traitlets import HasTraits

from rtwidgets.core.shared_state import MergeFunction
from rtwidgets.models._binding import CoalescedSync, on_runtime
from rtwidgets.models.connection import Connection
from rtwidgets.models.shared_state import SharedState, check_json

__all__ = ["ShareLink", "share"]

log = logging.getLogger("rtwidgets.sharing")

# ipywidgets' own plumbing and styling: never what people mean by "the widget's value".
_NOT_SHARED = frozenset({"comm", "keys", "log", "layout", "style", "tabbable", "tooltip", "_dom_classes"})


def shareable_traits(widget: HasTraits) -> list[str]:
    """The synced traits :func:`share` links by default: public, JSON values (not widgets)."""
    names = []
    for name in sorted(widget.trait_names(sync=True)):
        if name.startswith("_") or name in _NOT_SHARED:
            continue
        try:
            check_json(name, getattr(widget, name))
        except TypeError:
            continue  # e.g. a child widget or a binary buffer: not a value to share
        names.append(name)
    return names


class ShareLink:
    """A widget linked to a channel by :func:`share`. ``state`` is the underlying
    :class:`SharedState`; ``traits`` the linked names.

    Made by :func:`share`; the link owns ``state`` and closes it on :meth:`unlink`.

    Args:
        widget: the widget whose traits are shared.
        state: the shared state on the channel.
        traits: the names of the synced traits to link (each one key of ``state``).
        max_rate: most local changes sent per second (finite, > 0), before the message
            budget's share.

    Raises:
        TypeError: ``max_rate`` is not a number.
        ValueError: ``max_rate`` is not finite and > 0.
    """

    def __init__(
        self, widget: HasTraits, state: SharedState, traits: list[str], max_rate: float
    ) -> None:
        self.widget = widget
        self.state = state
        self.traits = traits
        self._lock = threading.Lock()
        self._applying: int | None = None  # the thread writing remote values to the widget
        self._linked = True
        self._seeded = False
        self._out = CoalescedSync(None, max_rate=max_rate, apply=self._send)
        widget.observe(self._on_local, names=traits)
        if "comm" in widget.trait_names():
            widget.observe(self._on_comm, names=["comm"])
        state.observe(self._on_values, names=["values", "synced"])
        on_runtime(self._on_values, None)

    @property
    def linked(self) -> bool:
        return self._linked

    def unlink(self) -> None:
        """Stop sharing this widget (idempotent); the channel's values stay as they are."""
        with self._lock:
            if not self._linked:
                return
            self._linked = False
        self.widget.unobserve(self._on_local, names=self.traits)
        if "comm" in self.widget.trait_names():
            self.widget.unobserve(self._on_comm, names=["comm"])
        self.state.unobserve(self._on_values, names=["values", "synced"])
        self._out.close()
        self.state.close()

    def __repr__(self) -> str:
        return f"<ShareLink {type(self.widget).__name__} {self.traits} on {self.state.name!r}>"

    # ------------------------------------------------------------------ local -> channel

    def _on_local(self, change: dict[str, Any]) -> None:
        if self._applying == threading.get_ident() or not self._linked:
            return  # our own write of a remote value (a user's change on another thread still goes)
        name, value = change["name"], change["new"]
        try:
            check_json(name, value)
        except TypeError as exc:
            log.error("share: %s", exc)
            self.state.set_trait("error", str(exc))
            return
        self._out.set(**{name: value})

    def _send(self, batch: dict[str, Any]) -> None:
        if not self._linked:
            return
        changed = {k: v for k, v in batch.items() if self.state.values.get(k, _MISSING) != v}
        if changed:
            self.state.update(changed)

    # ------------------------------------------------------------------ channel -> widget

    def _on_values(self, _change: Any) -> None:
        on_runtime(self._apply_remote)

    def _apply_remote(self) -> None:
        if not self._linked or not self.state.synced:
            return
        values = self.state.values
        if not self._seeded:
            self._seeded = True
            missing = {t: getattr(self.widget, t) for t in self.traits if t not in values}
            if missing:
                self.state.update(missing)  # the first participant seeds the channel
        updates = {t: values[t] for t in self.traits if t in values and getattr(self.widget, t) != values[t]}
        if not updates:
            return
        self._applying = threading.get_ident()
        try:
            hold = getattr(self.widget, "hold_sync", None)
            if hold is not None:
                with hold():
                    for name, value in updates.items():
                        setattr(self.widget, name, value)
            else:
                for name, value in updates.items():
                    setattr(self.widget, name, value)
        except Exception as exc:  # e.g. a value outside a slider's range: say so, keep going
            log.error("share: could not apply %s to %s: %s", sorted(updates), type(self.widget).__name__, exc)
            self.state.set_trait("error", f"could not apply {sorted(updates)}: {exc}")
        finally:
            self._applying = None

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.unlink()  # the widget was closed


_MISSING = object()


def share(
    widget: HasTraits,
    connection: Connection,
    channel: str,
    traits: Iterable[str] | None = None,
    conflict: str | MergeFunction = "client-wins",
    *,
    max_rate: float = 30.0,
) -> ShareLink:
    """Link ``widget``'s synced traits across every participant on ``channel``.

    Works with any ipywidgets/anywidget widget (or any ``HasTraits``): a change anywhere
    appears everywhere, a late joiner gets the current values, and changes made offline are
    reconciled on reconnect by ``conflict`` (see :class:`SharedState`).

    Args:
        widget: the widget (or ``HasTraits``) to share.
        connection: a :class:`Connection`.
        channel: the channel that holds the shared values (give it to nothing else).
        traits: the trait names to share; default: every public synced trait with a JSON
            value (:func:`shareable_traits`).
        conflict: ``"client-wins"``, ``"server-wins"`` or ``merge(key, theirs, ours) -> value``.
        max_rate: at most this many change messages per second from this widget (and never
            more than its share of the process-wide message budget).

    Returns:
        A :class:`ShareLink`; ``link.unlink()`` stops sharing. Closing the widget unlinks it.

    Raises:
        TypeError: ``widget`` has no traits, or a named trait's value is not JSON-serialisable.
        ValueError: an unknown trait name, no trait to share, or an unknown policy.
    """
    if not isinstance(widget, HasTraits):
        raise TypeError(f"share() needs a widget (a traitlets HasTraits), got {type(widget).__name__}")
    if not isinstance(connection, Connection):
        raise TypeError(f"connection must be an rtwidgets Connection, got {type(connection).__name__}")
    if traits is None:
        names = shareable_traits(widget)
    else:
        names = list(traits)
        unknown = [n for n in names if not widget.has_trait(n)]
        if unknown:
            raise ValueError(f"{type(widget).__name__} has no trait {unknown[0]!r}")
        for name in names:
            check_json(name, getattr(widget, name))
    if not names:
        raise ValueError(f"{type(widget).__name__} has no synced trait with a JSON value to share")
    state = SharedState(connection, channel, conflict=conflict)
    return ShareLink(widget, state, names, max_rate)
