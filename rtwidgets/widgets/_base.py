"""Shared base of the rtwidgets anywidget classes.

Rules of this module:

* The front end is the esbuild bundle ``rtwidgets/static/<name>.js`` (built from
  ``js/src/<name>.js``). It is resolved when a widget is created, not at import, so the
  package imports without a bundle and the error says how to build it.
* Browser -> Python intents are custom messages ``{"action": ..., ...}``. ipywidgets may
  call the handler on a kernel subshell thread, so handlers only validate and hand the
  work to the runtime thread. A bad intent raises :class:`IntentError`; the message hook
  logs it and tells the browser with a custom message
  ``{"type": "intent_error", "action": <str or None>, "message": <str>}``, which every view
  shows as a transient notice (tests call :meth:`RealtimeWidget.handle_intent` to see the error).
* Python -> browser updates go through :class:`CoalescedSync` (<= 60 flushes/s).
"""

from __future__ import annotations

import logging
import pathlib
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import anywidget
import traitlets

from rtwidgets.colors import color_for
from rtwidgets.errors import BundleMissingError, IntentError  # defined there; re-exported from here
from rtwidgets.models._binding import CoalescedSync, on_runtime

__all__ = ["STATIC_DIR", "BundleMissingError", "IntentError", "RealtimeWidget", "bundle_path", "color_for"]

log = logging.getLogger("rtwidgets.widgets")

STATIC_DIR = pathlib.Path(__file__).parent.parent / "static"


def bundle_path(name: str) -> pathlib.Path:
    """Return ``rtwidgets/static/<name>.js`` or raise :class:`BundleMissingError` with advice."""
    path = STATIC_DIR / f"{name}.js"
    if not path.is_file():
        raise BundleMissingError(
            f"the rtwidgets front end {path} is missing: run `bash scripts/dev.sh setup` "
            "(or `cd js && npm ci && npm run build`) to build the JavaScript bundle"
        )
    return path


def require_str(
    content: dict[str, Any], field: str, *, allow_empty: bool = False, max_len: int = 10_000
) -> str:
    """Read a string field of an intent or raise :class:`IntentError`."""
    value = content.get(field)
    if not isinstance(value, str):
        raise IntentError(f"intent {content.get('action')!r} needs a string {field!r}")
    if not allow_empty and not value.strip():
        raise IntentError(f"intent {content.get('action')!r} has an empty {field!r}")
    if len(value) > max_len:
        raise IntentError(f"intent {content.get('action')!r}: {field!r} longer than {max_len} characters")
    return value


class RealtimeWidget(anywidget.AnyWidget):
    """Base class: bundle lookup, coalesced trait sync, intent dispatch and cleanup.

    Subclasses set ``_bundle`` and implement ``_intent_<action>(content)`` methods, and
    register cleanups with :meth:`_on_close`. Subclass ``close()`` must call ``super().close()``.
    """

    _bundle: ClassVar[str] = ""
    # Flushes per second allowed from Python to the browser (Jupyter drops iopub bursts).
    max_rate: ClassVar[float] = 60.0

    def __init__(self, **kwargs: Any) -> None:
        # Resolved per instance so a missing bundle is a clear error at creation, not at import.
        self._esm = bundle_path(self._bundle).read_text(encoding="utf-8")
        self._cleanups: list[Callable[[], None]] = []
        self._closed = False
        self._close_lock = threading.Lock()
        super().__init__(**kwargs)
        self._sync = CoalescedSync(self, max_rate=self.max_rate)
        self._on_close(self._sync.close)
        self.on_msg(self._on_custom_msg)

    # ------------------------------------------------------------------ intents

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: list[Any]) -> None:
        try:
            self.handle_intent(content)
        except IntentError as exc:
            self._refuse_intent(content, exc)

    def _refuse_intent(self, content: Any, exc: IntentError) -> None:
        """Log a refused intent and tell the browser, so the user learns the action did nothing."""
        # Logged, not raised: a malformed message from a browser must not spam tracebacks.
        log.warning("%s: refused intent: %s", type(self).__name__, exc)
        action = content.get("action") if isinstance(content, dict) else None
        self.send(
            {
                "type": "intent_error",
                "action": action if isinstance(action, str) else None,
                "message": str(exc),
            }
        )

    def handle_intent(self, content: Any) -> None:
        """Validate and dispatch one browser intent; raise :class:`IntentError` if it is bad."""
        self._intent_handler(content)(content)

    def _intent_handler(self, content: Any) -> Callable[..., None]:
        """The ``_intent_<action>`` method for ``content``; raise :class:`IntentError` when the
        intent is not an object, names no such action, or the widget is closed."""
        if not isinstance(content, dict):
            raise IntentError(f"an intent must be an object, got {type(content).__name__}")
        action = content.get("action")
        handler: Callable[..., None] | None = (
            getattr(self, f"_intent_{action}", None) if isinstance(action, str) else None
        )
        if handler is None:
            raise IntentError(f"{type(self).__name__} has no action {action!r}")
        if self._closed:
            raise IntentError(f"{type(self).__name__} is closed")
        return handler

    # ------------------------------------------------------------------ lifecycle

    def _on_close(self, fn: Callable[[], None]) -> None:
        """Register ``fn`` to run once on close (in reverse registration order)."""
        self._cleanups.append(fn)

    def _observe(
        self, obj: traitlets.HasTraits, handler: Callable[[dict[str, Any]], None], names: list[str]
    ) -> None:
        """``obj.observe(handler, names)`` undone on close."""
        obj.observe(handler, names=names)
        self._on_close(lambda: obj.unobserve(handler, names=names))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Stop timers and listeners, release what this widget owns, and close the comm."""
        lock = getattr(self, "_close_lock", None)
        if lock is None:
            return  # __init__ failed before the widget existed (e.g. missing bundle): nothing to free
        with lock:
            if self._closed:
                return
            self._closed = True
            cleanups, self._cleanups = self._cleanups[::-1], []
        for fn in cleanups:
            try:
                fn()
            except Exception:
                log.exception("%s: cleanup failed", type(self).__name__)
        super().close()

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the runtime thread (thread-safe hand-off)."""
        on_runtime(fn, *args)
