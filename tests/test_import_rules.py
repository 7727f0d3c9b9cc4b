"""Import rules of the rtwidgets package, checked on the source with ``ast`` (nothing is imported).

The rules (each violation is reported with its file and line):

1. **Cores are sans-I/O.** A module under ``rtwidgets/core/`` imports only
   * ``rtwidgets.core.*``, ``rtwidgets.protocol`` (the wire format) and ``rtwidgets.errors``
     (exception classes; it imports nothing from rtwidgets at run time);
   * the standard library, except the modules for I/O, event loops, threads, processes, the
     file system, the environment and logging (:data:`CORE_FORBIDDEN_STDLIB`); ``time`` is
     allowed because a core's *default* clock is ``time.monotonic`` (every input still takes
     an explicit ``now`` or an injected clock);
   * of third-party packages only :data:`CORE_THIRD_PARTY` (``pycrdt``: the CRDT data
     structure ``crdt_sync`` wraps, which does no I/O).
   So no ``asyncio``, ``traitlets``, ``ipywidgets``, ``anywidget``, ``websockets``, ``redis``.
2. ``rtwidgets/models/*`` never imports ``rtwidgets.widgets`` (widgets are built on models).
3. ``rtwidgets/gateway/*`` never imports ``rtwidgets.models`` or ``rtwidgets.widgets`` (the
   server does not depend on the Jupyter side).
4. **No import cycles** among rtwidgets modules, over module-level imports: imports inside a
   function (lazy imports) and under ``if TYPE_CHECKING:`` are left out, since neither runs
   when the module is imported. ``from pkg import name`` is an edge to ``pkg.name`` when that is
   a module, else to ``pkg``; importing ``a.b`` is not counted as importing package ``a``.

Rules 1 to 3 look at every import statement anywhere in the module (also lazy and
``TYPE_CHECKING`` ones): a layer must not even name the layer above it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import rtwidgets

PACKAGE_DIR = Path(rtwidgets.__file__).parent

CORE_INTERNAL = ("rtwidgets.core", "rtwidgets.protocol", "rtwidgets.errors")
CORE_THIRD_PARTY = frozenset({"pycrdt"})
CORE_FORBIDDEN_STDLIB = frozenset(
    {
        # event loops, threads, processes, signals
        "asyncio", "concurrent", "multiprocessing", "threading", "_thread", "subprocess", "signal",
        "sched", "selectors", "select",
        # network and protocols
        "socket", "socketserver", "ssl", "http", "urllib", "ftplib", "smtplib", "poplib",
        "imaplib", "xmlrpc", "wsgiref", "webbrowser", "mailbox",
        # files, the environment, persistence
        "os", "io", "pathlib", "shutil", "tempfile", "glob", "fileinput", "sqlite3", "dbm",
        "shelve", "pickle", "logging",
    }
)  # fmt: skip

# Known violations being fixed elsewhere: (rule, importing module, imported module) -> why.
# Each entry must still occur (a stale entry fails the test), and nothing else may.
KNOWN: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module (dotted)
    target: str  # what it imports (dotted; rtwidgets modules resolved to the module)
    file: str  # the importing file, relative to the repository
    line: int
    module_level: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, package_dir: Path) -> bool:
    base = package_dir.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, package_dir: Path = PACKAGE_DIR) -> Iterator[Import]:
    module = _module_name(path, package_dir)
    file = path.relative_to(package_dir.parent).as_posix()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def visit(node: ast.AST, module_level: bool) -> Iterator[Import]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            module_level = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, False)
            for child in node.orelse:
                yield from visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, file, node.lineno, module_level)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "__future__":
                return
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_sub = base.split(".")[0] == "rtwidgets" and _is_module(candidate, package_dir)
                yield Import(module, candidate if is_sub else base, file, node.lineno, module_level)
        for sub_node in ast.iter_child_nodes(node):
            yield from visit(sub_node, module_level)

    yield from visit(tree, True)


def _all_imports(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    return [imp for path in sorted(package_dir.rglob("*.py")) for imp in _imports(path, package_dir)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer_violations(imports: list[Import]) -> list[tuple[str, Import, str]]:
    """(rule, import, why) for every import that breaks rules 1 to 3."""
    found: list[tuple[str, Import, str]] = []
    for imp in imports:
        top = imp.target.split(".")[0]
        if _within(imp.module, "rtwidgets.core"):
            if top == "rtwidgets":
                if not any(_within(imp.target, allowed) for allowed in CORE_INTERNAL):
                    found.append(("core", imp, "a core imports only rtwidgets.core, .protocol, .errors"))
            elif top in sys.stdlib_module_names:
                if top in CORE_FORBIDDEN_STDLIB:
                    found.append(("core", imp, f"{top} is I/O (cores are sans-I/O)"))
            elif top not in CORE_THIRD_PARTY:
                found.append(("core", imp, f"third-party {top} (allowed: {sorted(CORE_THIRD_PARTY)})"))
        if _within(imp.module, "rtwidgets.models") and _within(imp.target, "rtwidgets.widgets"):
            found.append(("models", imp, "models must not import widgets (widgets use models)"))
        if _within(imp.module, "rtwidgets.gateway"):
            for upper in ("rtwidgets.models", "rtwidgets.widgets"):
                if _within(imp.target, upper):
                    found.append(("gateway", imp, f"the gateway must not import {upper}"))
    return found


def _cycles(imports: list[Import]) -> list[list[Import]]:
    """One cycle (as the imports along it) per strongly connected group of modules."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.module_level and _within(imp.target, "rtwidgets") and imp.target != imp.module:
            graph.setdefault(imp.module, {}).setdefault(imp.target, imp)
    # Tarjan's strongly connected components, iteratively (no recursion limit to worry about).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    cycles: list[list[Import]] = []
    for group in groups:
        # A shortest path back to the group's first module, through the group only.
        members = set(group)
        start = group[0]
        previous: dict[str, tuple[str, Import]] = {}
        frontier = [start]
        while frontier and start not in previous:
            nxt: list[str] = []
            for node in frontier:
                for target, imp in sorted(graph.get(node, {}).items()):
                    if target in members and target not in previous:
                        previous[target] = (node, imp)
                        nxt.append(target)
            frontier = nxt
        path: list[Import] = []
        node = start
        while True:
            node, imp = previous[node]
            path.append(imp)
            if node == start:
                break
        cycles.append(list(reversed(path)))
    return cycles


def _report(lines: list[str]) -> str:
    return "\n  " + "\n  ".join(lines)


def test_layers_import_only_what_their_rules_allow() -> None:
    violations = _layer_violations(_all_imports())
    seen_known = {(rule, imp.module, imp.target) for rule, imp, _ in violations} & set(KNOWN)
    new = [(rule, imp, why) for rule, imp, why in violations if (rule, imp.module, imp.target) not in KNOWN]
    assert not new, _report([f"{i.where()}: {i.module} imports {i.target}: {why}" for _, i, why in new])
    stale = set(KNOWN) - seen_known
    assert not stale, f"allow-list entries that no longer occur (remove them): {sorted(stale)}"


def test_no_import_cycles_among_rtwidgets_modules() -> None:
    cycles = _cycles(_all_imports())
    assert not cycles, _report(
        [" -> ".join([c[0].module] + [f"{imp.target} ({imp.where()})" for imp in c]) for c in cycles]
    )


# ---------------------------------------------------------------------- the checker itself


def _fake_imports(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    """Run the checker over a throwaway package laid out like rtwidgets."""
    root = tmp_path / "rtwidgets"
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return _all_imports(root)


def test_the_checker_sees_the_package() -> None:
    """Guards the two tests above against passing because they look at nothing."""
    imports = _all_imports()
    edges = {(imp.module, imp.target) for imp in imports if imp.module_level}
    assert ("rtwidgets.gateway.server", "rtwidgets.gateway.hub") in edges  # relative import
    assert ("rtwidgets.gateway.session", "rtwidgets.core.catchup") in edges  # absolute import
    assert ("rtwidgets.gateway.hub", "rtwidgets.protocol") in edges  # from rtwidgets import protocol
    lazy = {(imp.module, imp.target) for imp in imports if not imp.module_level}
    assert ("rtwidgets.gateway.server", "rtwidgets.gateway.brokers.redis_cluster") in lazy  # in a function
    assert len({imp.module for imp in imports}) > 50


def test_checker_reports_each_broken_rule_with_its_line(tmp_path: Path) -> None:
    imports = _fake_imports(
        tmp_path,
        {
            "core/bad.py": "import math\nimport asyncio\nfrom traitlets import Int\n"
            "from rtwidgets.gateway import hub\nfrom . import good\nimport pycrdt\n",
            "core/good.py": "from rtwidgets.protocol import encode\nfrom ..errors import X\nimport time\n",
            "errors.py": "",
            "protocol.py": "",
            "models/m.py": "def lazy():\n    from rtwidgets.widgets import chat\n",
            "widgets/chat.py": "",
            "gateway/hub.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rtwidgets.models import m\n"
            ),
        },
    )
    found = sorted((rule, imp.module, imp.target, imp.line) for rule, imp, _ in _layer_violations(imports))
    assert found == [
        ("core", "rtwidgets.core.bad", "asyncio", 2),
        ("core", "rtwidgets.core.bad", "rtwidgets.gateway.hub", 4),
        ("core", "rtwidgets.core.bad", "traitlets", 3),
        ("gateway", "rtwidgets.gateway.hub", "rtwidgets.models.m", 3),
        ("models", "rtwidgets.models.m", "rtwidgets.widgets.chat", 2),
    ]
    (_, imp, _) = next(v for v in _layer_violations(imports) if v[0] == "models")
    assert imp.where() == "rtwidgets/models/m.py:2"


def test_checker_finds_cycles_but_not_through_lazy_or_type_checking_imports(tmp_path: Path) -> None:
    imports = _fake_imports(
        tmp_path,
        {
            "a.py": "from rtwidgets import b\n",
            "b.py": "from .c import thing\n",
            "c.py": "import rtwidgets.a\n",
            "d.py": "from rtwidgets.e import x\n",
            "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rtwidgets import d\n"
            "def f():\n    from rtwidgets import d\n",
        },
    )
    cycles = _cycles(imports)
    assert len(cycles) == 1
    (cycle,) = cycles
    assert [(imp.module, imp.target) for imp in cycle] == [
        ("rtwidgets.a", "rtwidgets.b"),
        ("rtwidgets.b", "rtwidgets.c"),
        ("rtwidgets.c", "rtwidgets.a"),
    ]
