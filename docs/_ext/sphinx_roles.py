"""Griffe extension for the docs build: Sphinx roles become cross-references; traits get docs.

The source docstrings use reStructuredText roles (``:class:`~rtwidgets.client.RealtimeConnection```,
``:meth:`connect```, ``:attr:`error```) and ``::`` before literal blocks. Markdown knows neither,
so before rendering each role becomes an optional autorefs link (a link where the target is
documented, plain code where it is not, never a warning) and a trailing ``::`` becomes ``:``.
Names are resolved in the scope of the object whose docstring holds them, as Python would.
A traitlets trait declared in a class body (``state = Unicode("", help="...")``) has no
docstring of its own: its ``help=`` text becomes one, so the API reference lists every trait.
Loaded by ``mkdocs.yml`` (``extensions:``); not part of the package.
"""

from __future__ import annotations

import ast
import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|attr|func|mod|exc|data|obj|const):`(?P<target>[^`]+)`")
_LITERAL = re.compile(r"::(?=[ \t]*$)", re.MULTILINE)


_TRAITS = frozenset(
    [
        "Any",
        "Bool",
        "Bytes",
        "CBool",
        "CFloat",
        "CInt",
        "CUnicode",
        "Dict",
        "Enum",
        "Float",
        "Instance",
        "Int",
        "Integer",
        "List",
        "Set",
        "Tuple",
        "Type",
        "Unicode",
        "UseEnum",
    ]
)


def _trait_doc(attr: griffe.Object) -> str | None:
    """``help=`` of a trait declaration (``"A trait."`` without one), else None."""
    if not attr.is_attribute or attr.parent is None or not attr.parent.is_class or attr.value is None:
        return None
    try:
        node = ast.parse(str(attr.value), mode="eval").body
    except SyntaxError:
        return None
    synced = False
    # unwrap Unicode(...).tag(sync=True)
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "tag":
        synced = synced or any(k.arg == "sync" for k in node.keywords)
        node = node.func.value
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name not in _TRAITS:
        return None
    text = next(
        (
            k.value.value
            for k in node.keywords
            if k.arg == "help" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
        ),
        "",
    )
    kind = f"`{name}` trait" + (", synced with the browser" if synced else "")
    return f"{text} ({kind})." if text else f"A {kind}."


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path ``name`` refers to from ``obj``'s docstring (best effort)."""
    if name.startswith("rtwidgets."):
        return name
    head, _, rest = name.partition(".")
    scopes = [obj] if obj.is_class or obj.is_module else []
    if obj.parent is not None:
        scopes.append(obj.parent)
    for scope in scopes:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            continue
        return f"{path}.{rest}" if rest else path
    return name


def _rewrite(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        target = match["target"].strip()
        short = target.startswith("~")
        target = target.lstrip("~.").removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if short else target
        if match.group(0).startswith((":meth:", ":func:")):
            shown += "()"
        ident = html.escape(_resolve(obj, target), quote=True)
        return f'<autoref identifier="{ident}" optional><code>{html.escape(shown)}</code></autoref>'

    return _LITERAL.sub(":", _ROLE.sub(role, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            elif (doc := _trait_doc(obj)) is not None:
                obj.docstring = griffe.Docstring(doc, parent=obj)
            stack.extend(m for m in obj.members.values() if not m.is_alias)

    # Griffe 1.x calls this name; the rewrite is idempotent, so a call of both is harmless.
    on_package_loaded = on_package
