"""Colours: one palette for Python and the browser, and text readable (WCAG AA, 4.5:1) on every
badge and background the widgets' CSS uses, in JupyterLab's light and dark themes.

The themes' variables are read from the installed JupyterLab theme stylesheets, the widgets' rules
from the CSS in ``js/src`` (what the bundles inject). Contrast is computed here from the WCAG 2
definitions of relative luminance and contrast ratio; a text colour with alpha is composited
over its background first, as the browser paints it.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import pytest

from rtwidgets import colors
from rtwidgets.models import collab

ROOT = pathlib.Path(__file__).resolve().parents[2]
JS_SRC = ROOT / "js" / "src"
AA = 4.5

RGBA = tuple[float, float, float, float]


# ---------------------------------------------------------------------------- colour maths


def parse_color(value: str) -> RGBA | None:
    """(r, g, b, a) with r, g, b in 0..255 for hex / rgb[a]() / white / black / transparent."""
    v = value.strip().lower()
    if v.startswith("color-mix("):
        return mix(v)
    named = {"white": (255.0, 255.0, 255.0, 1.0), "black": (0.0, 0.0, 0.0, 1.0), "transparent": None}
    if v in named:
        return named[v]
    m = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", v)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return (float(int(h[0:2], 16)), float(int(h[2:4], 16)), float(int(h[4:6], 16)), 1.0)
    m = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)", v)
    if m:
        alpha = float(m.group(4)) if m.group(4) is not None else 1.0
        return (float(m.group(1)), float(m.group(2)), float(m.group(3)), alpha)
    return None


def mix(value: str) -> RGBA | None:
    """``color-mix(in srgb, A p%, B)`` of two opaque colours (per-channel interpolation)."""
    m = re.fullmatch(r"color-mix\(\s*in srgb\s*,\s*(.+?)\s+([\d.]+)%\s*,\s*(.+?)\s*\)", value.strip())
    if m is None:
        return None
    a, b, p = parse_color(m.group(1)), parse_color(m.group(3)), float(m.group(2)) / 100.0
    assert a is not None and b is not None and a[3] == b[3] == 1.0, f"cannot mix {value!r}"
    return (a[0] * p + b[0] * (1 - p), a[1] * p + b[1] * (1 - p), a[2] * p + b[2] * (1 - p), 1.0)


def over(fg: RGBA, bg: RGBA) -> RGBA:
    """``fg`` painted over the opaque ``bg`` (source-over compositing)."""
    a = fg[3]
    return (fg[0] * a + bg[0] * (1 - a), fg[1] * a + bg[1] * (1 - a), fg[2] * a + bg[2] * (1 - a), 1.0)


def luminance(c: RGBA) -> float:
    """WCAG 2 relative luminance."""

    def lin(channel: float) -> float:
        s = channel / 255.0
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])


def contrast(a: RGBA, b: RGBA) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_maths_matches_known_values() -> None:
    white, black = parse_color("#fff"), parse_color("black")
    assert white is not None and black is not None
    assert contrast(white, black) == pytest.approx(21.0)
    assert parse_color("color-mix(in srgb, #ff0000 80%, #000)") == pytest.approx((204.0, 0.0, 0.0, 1.0))
    cyan = parse_color("#42d4f4")
    assert cyan is not None and contrast(white, cyan) == pytest.approx(1.76, abs=0.01)  # the 1.8:1
    grey = parse_color("rgba(0,0,0,.54)")
    assert grey is not None and over(grey, white)[:3] == pytest.approx((117.3, 117.3, 117.3))


# ---------------------------------------------------------------------------- themes and CSS


def _theme_file(theme: str) -> pathlib.Path:
    rel = pathlib.Path("share", "jupyter", "lab", "themes", "@jupyterlab")
    rel = rel / f"theme-{theme}-extension" / "index.css"
    for prefix in (sys.prefix, sys.base_prefix):
        path = pathlib.Path(prefix) / rel
        if path.is_file():
            return path
    pytest.fail(f"JupyterLab's {theme} theme stylesheet not found under {sys.prefix} (jupyterlab installed?)")


def theme_vars(theme: str) -> dict[str, str]:
    css = _theme_file(theme).read_text(encoding="utf-8")
    return {name: value.strip() for name, value in re.findall(r"(--jp-[\w-]+)\s*:\s*([^;}]+)", css)}


THEMES = {"light": theme_vars("light"), "dark": theme_vars("dark")}


def resolve(value: str, variables: dict[str, str], depth: int = 0) -> str:
    """Substitute ``var(--x, fallback)`` as a browser does: the theme's value, else the fallback."""
    assert depth < 20, f"var() cycle in {value!r}"
    m = re.search(r"var\(\s*(--[\w-]+)\s*(?:,\s*((?:[^()]|\([^()]*\))*))?\)", value)
    if m is None:
        return value.strip()
    name, fallback = m.group(1), m.group(2)
    if name in variables:
        replacement = resolve(variables[name], variables, depth + 1)
    elif fallback is not None:
        replacement = resolve(fallback, variables, depth + 1)
    else:
        pytest.fail(f"{name} is neither a theme variable nor given a fallback")
    return resolve(value[: m.start()] + replacement + value[m.end() :], variables, depth + 1)


def css_rules() -> list[tuple[str, str, dict[str, str]]]:
    """(file, selector, declarations) of every rule in the CSS template strings under js/src."""
    rules = []
    for path in sorted(JS_SRC.rglob("*.js")):
        source = path.read_text(encoding="utf-8")
        for template in re.findall(r"`([^`]*)`", source):
            if "{" not in template or ":" not in template:
                continue
            text = re.sub(r"/\*.*?\*/", "", template, flags=re.S)
            text = re.sub(r"@(keyframes|media)[^{]*\{((?:[^{}]|\{[^{}]*\})*)\}", "", text)
            for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
                decls = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (d.split(":", 1) for d in body.split(";") if ":" in d)
                )
                rules.append((path.relative_to(ROOT).as_posix(), " ".join(selector.split()), decls))
    return rules


RULES = css_rules()
# Where widget text sits when a rule sets no background: the widget root and the panes inside it.
SURFACES = ("var(--jp-layout-color0, #fff)", "var(--jp-layout-color1, #fff)")
WIDGET_TEXT = "var(--jp-ui-font-color1, #222)"
# Elements that hold no text (aria-hidden, empty): their colours are not text on a background.
DECORATIONS = {".rtw-presence_bar .rtw-typing-dot"}


def _background(decls: dict[str, str]) -> str | None:
    return decls.get("background-color") or decls.get("background")


def _pairs() -> list[tuple[str, str, str]]:
    """(where, text colour, background) for every rule that sets a text colour or a background."""
    pairs: list[tuple[str, str, str]] = []
    for file, selector, decls in RULES:
        text = decls.get("color")
        bg = _background(decls)
        if text is None and bg is None:
            continue
        if decls.get("content") in ('""', "''") or selector in DECORATIONS:
            continue  # draws no text (a dot, a ring): not a text/background pair
        if text in ("inherit", "currentcolor", "currentColor"):
            text = None
        if bg is not None and ("color-mix" in bg or "currentcolor" in bg.lower()):
            continue  # a tint over the row (no text colour of its own): not a text/background pair
        if text is not None and text.startswith("var(--rtw-"):
            continue
        texts = [text or WIDGET_TEXT]
        backgrounds = [bg] if bg is not None and "transparent" not in bg else list(SURFACES)
        pairs.extend((f"{file}: {selector}", t, b) for t in texts for b in backgrounds)
    return pairs


def test_the_css_is_found() -> None:
    selectors = {selector for _, selector, _ in RULES}
    assert ".rtw-badge" in selectors and ".rtw-user-badge" in selectors
    assert any("rtw-intent-error" in s for s in selectors) and any("rtw-pressure" in s for s in selectors)
    assert len(_pairs()) > 15


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_every_text_on_its_background_passes_aa(theme: str) -> None:
    variables = THEMES[theme]
    failures = []
    for where, text, bg in _pairs():
        bg_rgba = parse_color(resolve(bg, variables))
        text_rgba = parse_color(resolve(text, variables))
        assert bg_rgba is not None and text_rgba is not None, f"{where}: cannot read {text!r} on {bg!r}"
        page = parse_color(resolve(SURFACES[0], variables))
        assert page is not None
        solid_bg = over(bg_rgba, page)
        ratio = contrast(over(text_rgba, solid_bg), solid_bg)
        if ratio < AA:
            failures.append(f"{where}: {text} on {bg} is {ratio:.2f}:1")
    assert failures == [], f"{theme} theme: " + "; ".join(failures)


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_user_badges_pass_aa_for_every_palette_colour(theme: str) -> None:
    # The user badge's CSS takes neither colour from the theme: the palette gives both (inline).
    badge = next(decls for _, selector, decls in RULES if selector == ".rtw-user-badge")
    assert "color" not in badge and "background" not in badge
    text = parse_color(colors.BADGE_TEXT)
    assert text is not None
    for color in colors.PALETTE:
        bg = parse_color(color)
        assert bg is not None
        ratio = contrast(text, bg)
        assert ratio >= AA, f"{theme}: {colors.BADGE_TEXT} on {color} is {ratio:.2f}:1"


# ---------------------------------------------------------------------------- one source


def test_python_reads_the_palette_file_the_bundles_import() -> None:
    raw = json.loads(colors.PALETTE_FILE.read_text(encoding="utf-8"))
    assert tuple(c.lower() for c in raw["colors"]) == colors.PALETTE
    assert raw["text"] == colors.BADGE_TEXT
    js = (JS_SRC / "lib" / "color.js").read_text(encoding="utf-8")
    assert 'from "../../../rtwidgets/static/palette.json"' in js
    # No second palette or colour algorithm in the front end: colours come from lib/color.js.
    for path in JS_SRC.rglob("*.js"):
        if path.name != "color.js":
            assert not re.search(r"hsl\(\$\{|#30bced", path.read_text(encoding="utf-8")), path


def test_color_for_is_stable_and_shared() -> None:
    assert colors.color_for("alice") == colors.color_for("alice") in colors.PALETTE
    assert colors.color_for("ab") == colors.PALETTE[(97 * 31 + 98) % len(colors.PALETTE)]
    # The models use the same function (they no longer import it from the widgets).
    assert collab.__dict__["color_for"] is colors.color_for
    source = pathlib.Path(collab.__file__).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from rtwidgets\.widgets|import rtwidgets\.widgets)", source, re.M)


def test_a_bad_palette_file_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "palette.json"
    bad.write_text(json.dumps({"colors": ["#fff", "blue"], "text": "#ffffff"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'#rrggbb'.*'#fff', 'blue'"):
        colors.load_palette(bad)
    bad.write_text(json.dumps({"colors": [], "text": "#ffffff"}), encoding="utf-8")
    with pytest.raises(ValueError, match="non-empty"):
        colors.load_palette(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON"):
        colors.load_palette(bad)
