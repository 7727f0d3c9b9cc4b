"""Deprecated aliases of renamed core methods.

Rules of this module:

* A renamed public method keeps its old name as an alias that warns (``DeprecationWarning``,
  pointing at the caller) and then does exactly what the new method does; code inside rtwidgets
  never calls an alias.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["deprecated_alias"]

P = ParamSpec("P")
R = TypeVar("R")


def deprecated_alias(old: str, new: Callable[P, R]) -> Callable[P, R]:
    """``new`` under the name ``old``, warning on every call that ``old`` is deprecated."""

    @functools.wraps(new)
    def alias(*args: P.args, **kwargs: P.kwargs) -> R:
        warnings.warn(
            f"{old}() is deprecated, use {new.__name__}() (same arguments, same result)",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :meth:`{new.__name__}` (the cores' one verb set)."
    return alias
