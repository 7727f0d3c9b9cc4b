"""The sans-I/O cores: pure state machines under the client, the models and the gateway.

Like ``h11`` and ``websockets``, a core does no I/O, starts no task, timer or thread and reads no
clock or global RNG; the I/O layer on top feeds it inputs and carries out what it asks for.

Rules of this package (one verb set for every core):

* **Inputs** are methods. What arrived from the network or the user is ``on_<what>(...)``
  (``on_frame``, ``on_open``, ``on_close``, ``on_message``, ``on_sync_response``); the caller's own
  commands are plain verbs (``connect``, ``send``, ``create``, ``push``, ``update``); "a deadline
  passed" is ``tick(now)`` (flow-control buffers whose deadline work *is* their output call it
  ``poll(now)`` and return it).
* **Time**: a time-dependent input takes ``now``: seconds of one monotonic clock, passed by the
  caller, always required (no core falls back to a clock of its own: the ``clock=`` argument of
  ``BackpressureBuffer``, ``Coalescer``, ``MessageOrderer`` and ``AdaptiveRateController`` is
  gone, pass ``now`` to their inputs instead). A ``now`` earlier than one already seen is a
  ``ValueError`` (:class:`~rtwidgets.core._clock.MonotonicNow`); the exception is
  :class:`~rtwidgets.core.token_bucket.TokenBucket`, which documents why an earlier reading adds
  nothing instead.
* **Outputs**: ``events()`` returns the events produced since the last call, oldest first, and
  forgets them (each event is handed out once); ``data_to_send()`` does the same for frames to
  write; ``next_deadline()`` is when ``tick``/``poll`` next has work (None: no timer needed).
  Cores whose inputs only ever produce a few events for the caller to act on at once (channel,
  presence, subscribers, ordering) return them from the input instead.
* **Errors**: malformed input is a clear exception (the classes live in :mod:`rtwidgets.errors`);
  nothing is dropped silently: every discarded item is counted or reported.
* Renamed methods keep their old names as deprecated aliases (:mod:`rtwidgets.core._compat`);
  nothing inside rtwidgets calls them.

The cores: :mod:`~rtwidgets.core.connection` (state machine, backoff, heartbeat, acks, offline
queue; its vocabulary in :mod:`~rtwidgets.core.connection_events`), :mod:`~rtwidgets.core.channel`,
:mod:`~rtwidgets.core.presence`, :mod:`~rtwidgets.core.subscribers`,
:mod:`~rtwidgets.core.backpressure`, :mod:`~rtwidgets.core.rate`, :mod:`~rtwidgets.core.ordering`,
:mod:`~rtwidgets.core.reconcile`, :mod:`~rtwidgets.core.optimistic`, :mod:`~rtwidgets.core.coalesce`,
:mod:`~rtwidgets.core.series`, :mod:`~rtwidgets.core.crdt_sync`, and the shared parts:
:mod:`~rtwidgets.core.token_bucket` (the one token bucket) and :mod:`~rtwidgets.core.rate_meter`
(the one rate meter).
"""
