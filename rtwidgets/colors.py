"""User colours: the palette shared by Python and the browser, and the stable pick per user.

Rules of this module:

* The palette lives in ``rtwidgets/static/palette.json``, the one source of user colours:
  this module reads it and the front ends bundle the same file (``js/src/lib/color.js``), so
  a user has the same colour in every kernel and every browser. Edit colours there, nowhere else.
* Every palette colour is a badge background under the palette's ``text`` colour;
  ``tests/widgets/test_colors.py`` checks that pair (and the widgets' other text/background
  pairs) against WCAG AA, 4.5:1, in JupyterLab's light and dark themes.
* Pure and free of widget imports: models (which must not import ``rtwidgets.widgets``, it pulls
  in anywidget) and widgets both use it.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

__all__ = ["BADGE_TEXT", "PALETTE", "PALETTE_FILE", "color_for", "load_palette"]

PALETTE_FILE = pathlib.Path(__file__).parent / "static" / "palette.json"

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def load_palette(path: pathlib.Path = PALETTE_FILE) -> tuple[tuple[str, ...], str]:
    """Read ``(colours, text colour)`` from a palette file.

    Args:
        path: a JSON object with ``colors`` (a non-empty list of ``#rrggbb`` strings) and
            ``text`` (the ``#rrggbb`` colour of text drawn on them).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not such an object (the message names what is wrong).
    """
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    colors = raw.get("colors") if isinstance(raw, dict) else None
    text = raw.get("text") if isinstance(raw, dict) else None
    if not isinstance(colors, list) or not colors:
        raise ValueError(f"{path}: 'colors' must be a non-empty list of '#rrggbb' strings")
    bad = [c for c in colors if not isinstance(c, str) or not _HEX.match(c)]
    if bad:
        raise ValueError(f"{path}: colours must be '#rrggbb' strings, got {bad!r}")
    if not isinstance(text, str) or not _HEX.match(text):
        raise ValueError(f"{path}: 'text' must be a '#rrggbb' string, got {text!r}")
    return tuple(c.lower() for c in colors), text.lower()


PALETTE, BADGE_TEXT = load_palette()


def color_for(user_id: str) -> str:
    """The palette colour of ``user_id``: stable across processes (no ``hash()``, whose salt
    differs per kernel) and equal to the browser's ``colorFor`` (same hash over code points)."""
    h = 0
    for ch in str(user_id):
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]
