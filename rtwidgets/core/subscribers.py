"""Sans-I/O fan-out of one channel subscription to several subscribers.

A connection holds **one** gateway subscription per channel (one presence member), yet any
number of subscribers use it: two models on one channel, a widget cell run twice, a ``Chat``
and a ``PresenceBar`` built separately. Each of them must see what a fresh subscriber would.

Rules of this module:

* The shared subscription itself asks for no history and no keyed state; presence is the union
  of what the subscribers want (see below). Everything a subscriber wants beyond that (the
  newest ``history`` messages, the keyed ``state``) is its own **catch-up**: a re-subscribe with
  those options, answered by a ``history`` frame that carries the request's ``_id`` as
  ``requestId`` and is applied to that subscriber only. The I/O layer sends it once the shared
  subscription is subscribed (or folds it into the shared subscribe when that one is not a
  resume): :meth:`SubscriberSet.waiting` lists who needs one.
* Until its catch-up frame arrives a subscriber gets no messages: the gateway answers a
  connection's frames in order, so every message before that frame is covered by its snapshot.
  After it, stored messages of the snapshot's epoch at or below the snapshot's offset are
  dropped (the gateway forwards a live subscription's frames whole while a re-subscribe reads
  its snapshot). So a subscriber sees each stored message once, in offset order, with no gap
  between its history and the live stream. A subscriber that wants no catch-up is live at once.
* A lost catch-up (the socket dropped) puts the subscriber back in :meth:`SubscriberSet.waiting`;
  a :class:`~rtwidgets.core.channel.Reset` of the shared subscription is delivered to every live
  subscriber (it rebuilds from it) and lifts its offset floor.
* **Presence**: one member per connection while any subscriber wants presence; its data is the
  merge of the subscribers' data. At :meth:`SubscriberSet.add`, a key that another subscriber set
  to a different value is a ``ValueError`` (never a silent override); :meth:`SubscriberSet.update_presence`
  is an explicit, later action, so its keys win over the others' until it is replaced.
* Each subscriber with ``state=True`` keeps its own keyed state (key -> latest frame), from its
  catch-up snapshot plus the messages it receives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rtwidgets.core.channel import (
    ChannelEvent,
    ChannelMessage,
    ChannelState,
    Reset,
    SubscriptionChanged,
    apply_keyed,
    frame_offset,
)

__all__ = ["Subscriber", "SubscriberPhase", "SubscriberSet", "presence_conflict"]


class SubscriberPhase(str, Enum):
    WAITING = "waiting"  # wants a catch-up that is not sent yet
    CATCHING_UP = "catching_up"  # its catch-up request is in flight
    LIVE = "live"
    CLOSED = "closed"


@dataclass(eq=False)
class Subscriber:
    """One user of a shared channel subscription (compare by identity)."""

    id: int
    history: int
    state: bool
    presence: bool
    presence_data: dict[str, Any] | None
    phase: SubscriberPhase = SubscriberPhase.LIVE
    keyed_state: dict[str, Any] | None = None
    request: Any = None  # the I/O layer's token for the catch-up in flight (e.g. its operation)
    # (epoch, offset) of the catch-up snapshot: stored messages at or below it are already seen.
    floor: tuple[str | None, int] | None = None
    presence_order: int = 0  # later updates win on conflicting presence keys

    @property
    def wants_catch_up(self) -> bool:
        return self.history > 0 or self.state


def presence_conflict(
    channel: str, others: Iterable[dict[str, Any] | None], data: dict[str, Any] | None
) -> str | None:
    """Why ``data`` cannot join the presence data ``others`` already gave (None if it can).

    One connection is one presence member, so two subscribers that give one key two values
    cannot both be shown; the caller refuses the newcomer with this text.
    """
    for other in others:
        for key, value in (other or {}).items():
            if data and key in data and data[key] != value:
                return (
                    f"presence data conflicts with another model on channel {channel!r} of this "
                    f"connection: {key!r} is {value!r} there and {data[key]!r} here (one connection is "
                    "one presence member); pass the same value, close the other model first, or use "
                    "update_presence()"
                )
    return None


def _check_presence_data(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is not None and not isinstance(data, dict):
        raise ValueError("presence_data must be a dict")
    return None if data is None else dict(data)


class SubscriberSet:
    """The subscribers of one channel on one connection (see the module rules)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._subscribers: list[Subscriber] = []
        self._next_id = 0
        self._presence_clock = 0

    # ------------------------------------------------------------------ membership

    def __len__(self) -> int:
        return len(self._subscribers)

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(list(self._subscribers))

    def add(
        self,
        *,
        history: int = 0,
        state: bool = False,
        presence: bool = False,
        presence_data: dict[str, Any] | None = None,
    ) -> Subscriber:
        """Register a subscriber; it starts live, or waiting when it wants a catch-up.

        Raises:
            ValueError: ``history`` is negative, ``presence_data`` is not a dict, or it gives a
                key a different value than another subscriber of this channel gave it.
        """
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        data = _check_presence_data(presence_data)
        presence = bool(presence or data is not None)
        conflict = presence_conflict(self.channel, (s.presence_data for s in self._subscribers), data)
        if conflict is not None:
            raise ValueError(conflict)
        self._next_id += 1
        self._presence_clock += 1
        sub = Subscriber(
            self._next_id,
            history,
            bool(state),
            presence,
            data,
            keyed_state={} if state else None,
            presence_order=self._presence_clock,
        )
        if sub.wants_catch_up:
            sub.phase = SubscriberPhase.WAITING
        self._subscribers.append(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        """Forget ``sub`` (idempotent); it receives nothing more."""
        sub.phase = SubscriberPhase.CLOSED
        sub.request = None
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    # ------------------------------------------------------------------ presence

    @property
    def presence(self) -> bool:
        """Whether the connection should be a presence member of the channel."""
        return any(s.presence for s in self._subscribers)

    @property
    def presence_data(self) -> dict[str, Any] | None:
        """The member's data: every presence subscriber's data merged (later updates win)."""
        if not self.presence:
            return None
        merged: dict[str, Any] = {}
        for sub in sorted(self._subscribers, key=lambda s: s.presence_order):
            if sub.presence and sub.presence_data:
                merged.update(sub.presence_data)
        return merged

    def presence_options(self) -> dict[str, Any]:
        """The subscribe options that keep the connection's presence as it should be."""
        if not self.presence:
            return {}
        return {"presence": True, "presenceData": self.presence_data}

    def update_presence(self, sub: Subscriber, data: dict[str, Any]) -> dict[str, Any]:
        """Replace ``sub``'s presence data; returns the merged data to send.

        Raises:
            ValueError: ``data`` is not a dict, or ``sub`` did not ask for presence.
        """
        if not isinstance(data, dict):
            raise ValueError("presence data must be a dict")
        if not sub.presence:
            raise ValueError(f"presence is not enabled for channel {self.channel!r} (presence=True)")
        self._presence_clock += 1
        sub.presence_data = dict(data)
        sub.presence_order = self._presence_clock
        merged = self.presence_data
        assert merged is not None  # sub wants presence
        return merged

    # ------------------------------------------------------------------ catch-up

    def waiting(self) -> list[Subscriber]:
        """Subscribers whose catch-up must be sent, oldest first."""
        return [s for s in self._subscribers if s.phase is SubscriberPhase.WAITING]

    def catch_up_options(self, sub: Subscriber) -> dict[str, Any]:
        """The re-subscribe options of ``sub``'s catch-up (with the presence union, which a
        re-subscribe also sets)."""
        options = self.presence_options()
        if sub.history:
            options["history"] = sub.history
        if sub.state:
            options["state"] = True
        return options

    def start_catch_up(self, sub: Subscriber, request: Any) -> None:
        """``sub``'s catch-up was handed to the socket; ``request`` identifies it."""
        if sub.phase is SubscriberPhase.WAITING:
            sub.phase = SubscriberPhase.CATCHING_UP
            sub.request = request

    def catching_up(self, match: Callable[[Any], bool]) -> Subscriber | None:
        """The subscriber catching up whose request ``match(request)`` accepts (None if nobody)."""
        for sub in self._subscribers:
            if sub.phase is SubscriberPhase.CATCHING_UP and match(sub.request):
                return sub
        return None

    def catch_up_lost(self, sub: Subscriber) -> None:
        """The catch-up's socket dropped: send it again once the subscription is back."""
        if sub.phase is SubscriberPhase.CATCHING_UP:
            sub.phase = SubscriberPhase.WAITING
            sub.request = None

    def on_catch_up(self, sub: Subscriber, frame: dict[str, Any]) -> list[ChannelEvent]:
        """Apply ``sub``'s catch-up ``history`` frame; returns its replayed messages (oldest first)."""
        if sub.phase is not SubscriberPhase.CATCHING_UP:
            return []
        sub.phase = SubscriberPhase.LIVE
        sub.request = None
        epoch = frame.get("epoch")
        offset = frame_offset(frame)
        sub.floor = (epoch if isinstance(epoch, str) else None, offset) if offset is not None else None
        state = frame.get("state")
        if sub.state:
            sub.keyed_state = dict(state) if isinstance(state, dict) else {}
        data = frame.get("data")
        items = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        items.sort(key=lambda e: frame_offset(e) or 0)
        events: list[ChannelEvent] = [ChannelMessage(self.channel, item, replayed=True) for item in items]
        # The subscriber is subscribed from here on, whatever its history held.
        events.append(SubscriptionChanged(self.channel, ChannelState.SUBSCRIBING, ChannelState.SUBSCRIBED))
        return events

    # ------------------------------------------------------------------ routing

    def route(self, events: list[ChannelEvent]) -> list[tuple[Subscriber, ChannelEvent]]:
        """Fan the shared subscription's events out to the subscribers that should see them."""
        out: list[tuple[Subscriber, ChannelEvent]] = []
        for ev in events:
            for sub in self._subscribers:
                if isinstance(ev, ChannelMessage):
                    if sub.phase is not SubscriberPhase.LIVE or self._below_floor(sub, ev.frame):
                        continue
                    if sub.keyed_state is not None:
                        apply_keyed(sub.keyed_state, ev.frame)
                elif isinstance(ev, Reset):
                    if sub.phase is not SubscriberPhase.LIVE:
                        continue  # its own catch-up is still to come, and is newer
                    sub.floor = None
                    if sub.state:
                        sub.keyed_state = dict(ev.state or {})
                out.append((sub, ev))
        return out

    @staticmethod
    def _below_floor(sub: Subscriber, frame: dict[str, Any]) -> bool:
        floor = sub.floor
        if floor is None:
            return False
        offset = frame_offset(frame)
        if offset is None:
            return False  # ephemeral: live only, never in a snapshot
        epoch = frame.get("epoch")
        if floor[0] is not None and epoch != floor[0]:
            sub.floor = None  # another epoch: the floor means nothing there
            return False
        if offset <= floor[1]:
            return True
        sub.floor = None  # past the snapshot: no later message can be below it
        return False
