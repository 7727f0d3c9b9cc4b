"""rtwidgets as a user gets it: built with ``python -m build``, installed from the wheel.

The module builds an sdist and a wheel from a clean copy of the checkout (no bundles, no
``node_modules``: PEP 517 build isolation, hatch-jupyter-builder runs ``npm install`` +
``npm run build``; the wheel is built from the sdist, as ``python -m build`` does), checks
what each archive holds, rebuilds a wheel from the sdist's sources alone, checks that a
build without node fails clearly, then installs the wheel **non-editable into a fresh
venv** and, from a folder outside the checkout, imports the package and creates every
widget, and renders the quickstart's widgets in JupyterLab + Chromium started from that venv.

Figures (build time, wheel size and files, install time) are printed and written to
``test-artifacts/package/report.md``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import sys
import tarfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import UI_TIMEOUT_MS, browser, has_class
from tests.e2e.lab import LabServer, NotebookPage, write_notebook

from ._packaging import (
    REPORT,
    ROOT,
    Dists,
    archive_files,
    copy_checkout,
    expected_static,
    run,
    source_version,
)

__all__ = ["browser"]  # the e2e module-scoped Chromium fixture, reused here

# Minutes, not seconds: builds, a venv of JupyterLab and a kernel start on a busy 2-core machine.
pytestmark = [pytest.mark.package, pytest.mark.timeout(1800)]
BUILD_TIMEOUT = 900.0
INSTALL_TIMEOUT = 900.0
SCRIPT_TIMEOUT = 300.0
ARTIFACTS = ROOT / "test-artifacts" / "package"
# The test harness, not the package under test: the same JupyterLab and ipykernel as the e2e tests.
HARNESS = ("jupyterlab", "ipykernel")


def _report(key: str, text: str) -> None:
    """Add a section to test-artifacts/package/report.md and print it (shown with ``-s``; the
    first line of each also in pytest's terminal summary, see conftest.py)."""
    REPORT[key] = text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(f"## {name}\n\n{value}" for name, value in REPORT.items())
    (ARTIFACTS / "report.md").write_text(f"# Package test figures\n\n{body}\n", encoding="utf-8")
    print(f"[package] {key}: {text}")


# ----------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """``python -m build`` (sdist, then a wheel from it) on a clean copy of the checkout."""
    base = tmp_path_factory.mktemp("package-build")
    source = copy_checkout(base / "src")
    # The point is a build that bundles the front end itself: nothing generated may be in the copy.
    assert not (source / "js" / "node_modules").exists()
    assert not list((source / "rtwidgets" / "static").glob("*.js"))
    lock = (source / "js" / "package-lock.json").read_bytes()
    out = base / "dist"
    start = time.monotonic()
    result = run([sys.executable, "-m", "build", "--outdir", out, source], cwd=base, timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - start
    # npm_builder runs `npm install`: with a lock file in step with package.json it installs
    # exactly the locked versions and leaves the file alone. A rewritten lock means it was not.
    assert (source / "js" / "package-lock.json").read_bytes() == lock, (
        "the build rewrote js/package-lock.json"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build.log").write_text(result.stdout, encoding="utf-8")
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist, got {os.listdir(out)}"
    _report("build", f"`python -m build` (isolated, npm install + bundle, sdist then wheel): {seconds:.1f} s")
    return Dists(source, sdists[0], wheels[0], seconds, result.stdout)


def _unpacked_sdist(dists: Dists, target: Path, *, drop_bundles: bool) -> Path:
    """The sdist unpacked into ``target``; with ``drop_bundles`` without its built front end."""
    with tarfile.open(dists.sdist) as sdist:
        # The "data" filter (no links out, no device files) exists from Python 3.10.12 / 3.11.4 on.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        sdist.extractall(target, **safe)
    (tree,) = target.iterdir()
    if drop_bundles:
        for name in expected_static(dists.source):
            (tree / "rtwidgets" / "static" / name).unlink()
    return tree


def test_wheel_holds_the_front_end_notices_marker_and_version(dists: Dists) -> None:
    files = archive_files(dists.wheel)
    static = sorted(name.removeprefix("rtwidgets/static/") for name in files if "/static/" in name)
    # The generated front end, plus whatever source files live in static/ (copied as they are).
    sources = [path.name for path in (dists.source / "rtwidgets" / "static").glob("*") if path.is_file()]
    assert static == sorted({*expected_static(dists.source), *sources})
    assert all(files[f"rtwidgets/static/{name}"] > 0 for name in expected_static(dists.source))
    assert "rtwidgets/py.typed" in files
    assert "rtwidgets/_version.py" in files
    assert not [name for name in files if name.startswith(("js/", "tests/")) or "node_modules" in name]

    version = source_version(dists.source)
    assert dists.wheel.name == f"rtwidgets-{version}-py3-none-any.whl"
    dist_info = f"rtwidgets-{version}.dist-info"
    with zipfile.ZipFile(dists.wheel) as wheel:
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        notices = wheel.read("rtwidgets/static/THIRD_PARTY_NOTICES.md").decode()
    assert f"\nVersion: {version}\n" in metadata
    # collab_text bundles yjs and CodeMirror: their licences must travel with the wheel.
    for package in ("yjs", "lib0", "@codemirror/view", "y-codemirror.next"):
        assert f"\n## {package} " in notices

    listing = "\n".join(f"    {size:>9,d}  {name}" for name, size in sorted(files.items()))
    _report(
        "wheel",
        f"{dists.wheel.name}: {dists.wheel.stat().st_size:,d} bytes compressed, "
        f"{sum(files.values()):,d} bytes in {len(files)} files:\n\n{listing}",
    )


def test_sdist_holds_js_sources_and_no_node_modules(dists: Dists) -> None:
    files = archive_files(dists.sdist)
    for name in (
        "js/build.mjs",
        "js/package.json",
        "js/package-lock.json",
        "hatch_build.py",
        "pyproject.toml",
    ):
        assert name in files, f"{name} missing from the sdist"
    sources = sorted(
        path.relative_to(dists.source).as_posix() for path in (dists.source / "js" / "src").rglob("*.js")
    )
    assert sources and set(sources) <= set(files)
    assert not [name for name in files if "node_modules" in name]
    # The built front end too, so pip can install the sdist without node (skip-if-exists).
    assert {f"rtwidgets/static/{name}" for name in expected_static(dists.source)} <= set(files)
    _report("sdist", f"{dists.sdist.name}: {dists.sdist.stat().st_size:,d} bytes, {len(files)} files")


def test_sdist_sources_alone_build_the_same_wheel(dists: Dists, tmp_path: Path) -> None:
    """Without the bundles it carries, the sdist rebuilds them from js/ (npm install from its
    lock file): the sources are complete, and the bundles come out byte for byte the same."""
    tree = _unpacked_sdist(dists, tmp_path / "sdist", drop_bundles=True)
    out = tmp_path / "dist"
    # --no-isolation: this venv has hatchling and hatch-jupyter-builder (the dev extra); the
    # isolated path is what `dists` proved.
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, tree],
        cwd=tmp_path,
        timeout=BUILD_TIMEOUT,
    )
    (rebuilt,) = out.glob("*.whl")
    with zipfile.ZipFile(dists.wheel) as first, zipfile.ZipFile(rebuilt) as second:
        for name in expected_static(dists.source):
            member = f"rtwidgets/static/{name}"
            assert second.read(member) == first.read(member), f"{member} differs when built from the sdist"


def test_build_without_node_fails_clearly_and_makes_no_wheel(dists: Dists, tmp_path: Path) -> None:
    tree = _unpacked_sdist(dists, tmp_path / "sdist", drop_bundles=True)
    out = tmp_path / "dist"
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}  # no node, no npm (the build runs by absolute paths)
    result = run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, tree],
        cwd=tmp_path,
        timeout=BUILD_TIMEOUT,
        env=env,
        check=False,
    )
    assert result.returncode != 0, result.stdout[-3000:]
    assert "building rtwidgets needs node and npm on PATH" in result.stdout, result.stdout[-3000:]
    assert not out.exists() or not list(out.glob("*.whl")), "a wheel was built without its front end"


# ----------------------------------------------------------------------------- installed


@dataclass(frozen=True)
class Venv:
    path: Path
    python: Path
    version: str  # of the wheel installed into it


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A fresh venv with the wheel installed (not editable) plus JupyterLab and ipykernel;
    removed afterwards (it is several hundred MB)."""
    path = tmp_path_factory.mktemp("package-venv") / "venv"
    try:
        start = time.monotonic()
        run([sys.executable, "-m", "venv", path], cwd=path.parent, timeout=INSTALL_TIMEOUT)
        python = path / "bin" / "python"
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in HARNESS]
        run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", dists.wheel, *pins],
            cwd=path.parent,
            timeout=INSTALL_TIMEOUT,
        )
        _report("venv", f"fresh venv + wheel + {', '.join(pins)}: {time.monotonic() - start:.1f} s")
        yield Venv(path, python, source_version(dists.source))
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Run by the venv's python from a folder outside the checkout; prints one JSON line.
_CHECK_SCRIPT = textwrap.dedent(
    """
    import importlib.metadata, inspect, json, pathlib, sys

    import rtwidgets
    from rtwidgets.widgets._base import RealtimeWidget

    report = {
        "file": rtwidgets.__file__,
        "prefix": sys.prefix,
        "version": rtwidgets.__version__,
        "metadata_version": importlib.metadata.version("rtwidgets"),
        "exported_widgets": sorted(
            name for name, value in ((n, getattr(rtwidgets, n)) for n in rtwidgets.__all__)
            if inspect.isclass(value) and issubclass(value, RealtimeWidget)
        ),
    }
    gw = rtwidgets.Gateway(port=0).start()
    try:
        conn = rtwidgets.Connection(gw.url, token=gw.token("alice")).connect(wait=True)
        chat = rtwidgets.Chat(conn, "lobby")
        widgets = {
            "ConnectionStatus": rtwidgets.ConnectionStatus(conn),
            "Chat": chat,
            "PresenceBar": rtwidgets.PresenceBar(chat.model),
            "TodoList": rtwidgets.TodoList(rtwidgets.OptimisticList(conn, "todos")),
            "LiveChart": rtwidgets.LiveChart(rtwidgets.Channel(conn, "ticks")),
            "Inspector": rtwidgets.Inspector(conn),
            "CollabText": rtwidgets.CollabText(rtwidgets.CollabDoc(conn, "doc")),
            "GatewayMonitor": rtwidgets.GatewayMonitor(gw),
        }
        static = pathlib.Path(rtwidgets.__file__).parent / "static"
        report["widgets"] = {
            name: {
                "esm_chars": len(widget._esm),
                "same_as_file": widget._esm == (static / f"{widget._bundle}.js").read_text(encoding="utf-8"),
            }
            for name, widget in widgets.items()
        }
        for widget in widgets.values():
            widget.close()
        conn.close()
    finally:
        gw.stop()
    print(json.dumps(report))
    """
)


def _isolated_env() -> dict[str, str]:
    """This environment without what would let the checkout leak into the venv's python."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_installed_wheel_imports_and_creates_every_widget(venv: Venv, tmp_path: Path) -> None:
    script = tmp_path / "check_installed.py"
    script.write_text(_CHECK_SCRIPT, encoding="utf-8")
    # -I: no PYTHON* variables, no user site, no script folder on sys.path; cwd outside the checkout.
    result = run([venv.python, "-I", script], cwd=tmp_path, timeout=SCRIPT_TIMEOUT, env=_isolated_env())
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])

    installed = Path(report["file"]).resolve()
    assert installed.is_relative_to(venv.path.resolve()), f"rtwidgets imported from {installed}, not the venv"
    assert not installed.is_relative_to(ROOT), installed
    assert Path(report["prefix"]).resolve() == venv.path.resolve()
    assert report["version"] == report["metadata_version"] == venv.version

    # Every widget class rtwidgets exports was created (a new one must be added to the script).
    assert sorted(report["widgets"]) == report["exported_widgets"]
    assert len(report["exported_widgets"]) >= 7
    for name, facts in report["widgets"].items():
        assert facts["esm_chars"] > 0, f"{name} has an empty front end"
        assert facts["same_as_file"], f"{name}'s _esm is not its installed bundle"

    cli = run(
        [venv.path / "bin" / "rtwidgets", "--version"],
        cwd=tmp_path,
        timeout=SCRIPT_TIMEOUT,
        env=_isolated_env(),
    )
    assert cli.stdout.strip() == f"rtwidgets {venv.version}"


# ----------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def venv_lab(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab run by the venv's python (so are its kernels), serving a folder outside the checkout."""
    base = tmp_path_factory.mktemp("package-lab")
    root = base / "root"
    root.mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LabServer(root, base / "home", ARTIFACTS / "jupyterlab.log", python=str(venv.python))
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.shutdown_all_sessions()
        server.stop()


MESSAGE = "posted from the installed package"


def _quickstart_cells(venv: Venv) -> list[str]:
    """The README quickstart (a gateway in the kernel, alice and bob, two chats, who is here,
    alice's connection), after checking the kernel runs the venv's rtwidgets; then a post."""
    setup = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path

        import rtwidgets

        assert Path(sys.prefix).resolve() == Path({str(venv.path)!r}).resolve(), sys.prefix
        here = Path(rtwidgets.__file__).resolve()
        assert here.is_relative_to(Path(sys.prefix).resolve()), here

        gw = rtwidgets.Gateway(port=0).start()
        alice = rtwidgets.Connection(gw.url, token=gw.token("alice")).connect(wait=True)
        bob = rtwidgets.Connection(gw.url, token=gw.token("bob")).connect(wait=True)
        chat_a, chat_b = rtwidgets.Chat(alice, "lobby"), rtwidgets.Chat(bob, "lobby")
        chat_a.model.wait_subscribed()
        chat_b.model.wait_subscribed()
        display(rtwidgets.ConnectionStatus(alice), rtwidgets.PresenceBar(chat_a.model), chat_a, chat_b)
        """
    ).strip()
    post = textwrap.dedent(
        f"""
        import time

        chat_a.post({MESSAGE!r})
        deadline = time.monotonic() + 60
        while not any(m["text"] == {MESSAGE!r} and not m["pending"] for m in chat_b.messages):
            if time.monotonic() > deadline:  # a bounded condition wait, not a speed check
                raise TimeoutError("bob never received alice's message within 60 s")
            time.sleep(0.05)
        """
    ).strip()
    return [setup, post]


@pytest.mark.e2e  # also a browser test: `-m "not e2e"` skips it with the others
def test_quickstart_renders_in_jupyterlab_from_the_installed_wheel(
    venv: Venv, venv_lab: LabServer, browser: Any
) -> None:
    rel = f"installed-{uuid.uuid4().hex[:8]}.ipynb"
    write_notebook(venv_lab.root / rel, _quickstart_cells(venv))
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page_errors: list[str] = []
    start = time.monotonic()
    page = context.new_page()
    try:
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        notebook = NotebookPage(page, venv_lab, rel, rel.removesuffix(".ipynb")).goto().wait_kernel()
        notebook.run_above(1)  # the widgets first, so the post below reaches views already rendered

        status = page.locator(".rtw-widget.rtw-connection_status").first
        expect(status).to_have_attribute("data-state", "connected")
        expect(status.locator(".rtw-cs-user")).to_have_text("alice")
        bar = page.locator(".rtw-widget.rtw-presence_bar").first
        expect(bar).to_have_attribute("data-count", "2")
        chats = page.locator(".rtw-widget.rtw-chat")
        expect(chats).to_have_count(2)
        for chat in (chats.nth(0), chats.nth(1)):
            expect(chat).to_have_attribute("data-state", "connected")

        notebook.run_from(1)  # Python posts as alice
        for chat in (chats.nth(0), chats.nth(1)):
            row = chat.locator(".rtw-msg", has_text=MESSAGE)
            expect(row).to_have_count(1)
            expect(row.locator(".rtw-msg-user")).to_have_text("alice")
            expect(row).not_to_have_class(has_class("rtw-pending"))

        # And the other way: typed in the browser, it reaches bob's view through the kernel.
        box = chats.nth(0).locator(".rtw-chat-input")
        box.fill("typed in the browser")
        box.press("Enter")
        expect(chats.nth(1).locator(".rtw-msg", has_text="typed in the browser")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "installed-quickstart.png"))
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / "FAILED-installed-quickstart.png"), full_page=True)
        raise
    finally:
        context.close()
        with contextlib.suppress(Exception):
            venv_lab.shutdown_session(rel, timeout=60)
    _report(
        "browser",
        f"JupyterLab from the venv, quickstart rendered and chatted: {time.monotonic() - start:.1f} s",
    )
    # Chromium reports this when a layout change outruns ResizeObserver callbacks: not a bug.
    errors = [error for error in page_errors if "ResizeObserver loop" not in error]
    assert not errors, f"uncaught errors in the page: {errors}"
