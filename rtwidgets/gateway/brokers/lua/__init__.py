"""The Redis broker's Lua scripts, kept as ``.lua`` files in this package.

Each file starts with a header comment naming its KEYS, ARGV and return value. The files
ship in the wheel as package data (hatch includes every file under ``rtwidgets/``) and
are read with :mod:`importlib.resources`, so they load from a zip or a wheel install too.

Rules of this module:

* A script is read once per process (cached); the broker registers it with Redis
  (SCRIPT LOAD / EVALSHA through redis-py's ``register_script``) when it starts.
* Only names in :data:`SCRIPTS` can be loaded: a typo fails loudly, not at EVAL time.
"""

from __future__ import annotations

import functools
from importlib.resources import files

__all__ = ["SCRIPTS", "script_source"]

SCRIPTS = frozenset(
    {"publish", "snapshot", "position", "gap", "presence_set", "presence_remove", "forget_gateway"}
)


@functools.cache
def script_source(name: str) -> str:
    """The Lua source of script ``name`` (e.g. ``"publish"`` for ``publish.lua``).

    Args:
        name: a script name from :data:`SCRIPTS`, without the ``.lua`` suffix.

    Raises:
        ValueError: ``name`` is not one of :data:`SCRIPTS`.
        FileNotFoundError: the script file is missing from the installed package.
    """
    if name not in SCRIPTS:
        raise ValueError(f"unknown Redis broker script {name!r}; known: {sorted(SCRIPTS)}")
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
