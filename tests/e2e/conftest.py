"""Fixtures of the real-browser tests: JupyterLab, a gateway, Chromium, users, a flaky network.

* ``lab`` (package: one for all e2e tests): ``python -m jupyterlab`` on a free port,
  serving a temporary folder holding a copy of ``notebooks/`` and the notebooks the tests write.
* ``gateway`` (package): ``python -m rtwidgets gateway --port 0`` as a subprocess; the
  tests mint tokens with its secret (passed by environment, never on a command line).
* ``browser`` (module): headless Debian Chromium through a **module**-scoped
  ``sync_playwright()`` (a live sync Playwright keeps an asyncio loop in the main thread;
  releasing it per module lets later asyncio tests run).
* ``users``: opens notebooks as users, each in its own browser context and JupyterLab
  workspace (so each page has its own kernel); pages are closed and kernels shut down
  after the test. On failure a full-page screenshot of every open page is saved.
* ``make_proxy``: a :class:`~rtwidgets.chaos.ChaosProxy` to cut or slow a kernel's link.

Screenshots go to ``test-artifacts/e2e/<test>/`` (gitignored) on every run;
``RTW_UPDATE_SCREENSHOTS=1`` also refreshes the few kept in ``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rtwidgets.auth import issue_token
from rtwidgets.chaos import ChaosProxy

from .lab import LabServer, NotebookPage, copy_tree, write_notebook

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("RTW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET_BUNDLES = (
    "connection_status",
    "chat",
    "presence_bar",
    "todo_list",
    "live_chart",
    "inspector",
    "collab_text",
    "gateway_monitor",
)
# Generous, condition-based: a failing condition is a bug, not a slow machine.
UI_TIMEOUT_MS = 60_000
# `expect` has its own default (5 s), separate from the context's: raise it too.
expect.set_options(timeout=UI_TIMEOUT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.e2e)
            # Kernel starts and page loads on a busy 2-core machine: allow minutes, not seconds.
            item.add_marker(pytest.mark.timeout(600))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def has_class(name: str) -> re.Pattern[str]:
    """A pattern for ``expect(...).to_have_class``: the class list contains ``name``.

    (A plain string there must equal the whole class attribute, so a negative
    ``not_to_have_class("rtw-pending")`` on a row with more classes would pass vacuously.)
    """
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def artifact_dir(test_name: str) -> Path:
    """``test-artifacts/e2e/<test>/`` (not created)."""
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)


def artifact_path(test_name: str, name: str) -> Path:
    """``test-artifacts/e2e/<test>/<name>`` (parents created)."""
    path = artifact_dir(test_name) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A running JupyterLab serving a temporary copy of ``notebooks/``."""
    missing = [
        name for name in WIDGET_BUNDLES if not (ROOT / "rtwidgets" / "static" / f"{name}.js").is_file()
    ]
    if missing:
        pytest.fail(
            f"widget bundles missing in rtwidgets/static/ ({', '.join(missing)}): "
            "run `bash scripts/dev.sh setup` (or `cd js && npm ci && npm run build`)"
        )
    base = tmp_path_factory.mktemp("e2e-lab")
    root = base / "root"
    root.mkdir()
    copy_tree(ROOT / "notebooks", root / "notebooks")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LabServer(root, base / "home", ARTIFACTS / "jupyterlab.log")
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    with contextlib.suppress(Exception):
        server.shutdown_all_sessions()
    server.stop()


@dataclass
class GatewayProcess:
    """An ``rtwidgets gateway`` subprocess; :meth:`token` mints tokens it accepts."""

    process: subprocess.Popen[str]
    url: str
    secret: str = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def token(
        self,
        user: str,
        channels: tuple[str, ...] = ("*",),
        *,
        publish: tuple[str, ...] | None = None,
        presence: tuple[str, ...] | None = None,
    ) -> str:
        return issue_token(self.secret, user, channels, publish=publish, presence=presence, ttl=3600)


@pytest.fixture(scope="package")
def gateway() -> Iterator[GatewayProcess]:
    """``python -m rtwidgets gateway --port 0`` (fast publishers allowed: the chart test streams)."""
    secret = secrets.token_urlsafe(32)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "gateway.log", "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtwidgets",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--publish-rate",
            "20000",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "RTWIDGETS_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    line = ""
    # The CLI prints exactly one line once it listens: wait for it (or for the process to die).
    if selector.select(timeout=60):
        line = process.stdout.readline().strip()
    selector.close()
    match = re.search(r"listening on (ws://\S+)", line)
    if match is None:
        process.kill()
        log.close()
        pytest.fail(f"the gateway did not start: stdout {line!r}, log {ARTIFACTS / 'gateway.log'}")
    yield GatewayProcess(process, match.group(1), secret)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)
    log.close()


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (Playwright cannot download browsers here)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} not found: install it with `apt-get install -y chromium` (or set RTW_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


_RECORD = """([name, expression]) => {
  const read = new Function(`return (${expression});`);
  const values = [];
  (window.__rtwRecords ||= {})[name] = values;
  const record = () => {
    const value = JSON.stringify(read());
    if (values.length === 0 || JSON.stringify(values[values.length - 1]) !== value) {
      values.push(JSON.parse(value));
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
  record();
}"""


@dataclass
class User:
    """A user at a browser: one context (own storage), one page, one notebook and kernel."""

    name: str
    notebook: NotebookPage
    context: Any
    page_errors: list[str] = field(default_factory=list)

    @property
    def page(self) -> Any:
        return self.notebook.page

    def widget(self, name: str) -> Any:
        """Locator of the (first) rendered widget root ``.rtw-widget.rtw-<name>``."""
        return self.page.locator(f".rtw-widget.rtw-{name}").first

    def record(self, name: str, expression: str) -> None:
        """Start recording every distinct value of the JS ``expression`` (re-evaluated on each
        DOM change) under ``name``, in order.

        For states that last only a moment (a typing line, a "left" notice that fades): they
        are checked from the record (:meth:`wait_recorded`) instead of being raced by polling.
        """
        self.page.evaluate(_RECORD, [name, expression])

    def wait_recorded(self, name: str, predicate: str) -> None:
        """Wait until the JS ``predicate`` (a function of the list of recorded values) is true."""
        self.page.wait_for_function(
            f"(name) => ({predicate})(window.__rtwRecords[name])", arg=name, polling=100
        )

    def screenshot(self, test_name: str, name: str, target: Any = None) -> Path:
        """Save a PNG of ``target`` (a locator; default the whole page) as a test artefact."""
        path = artifact_path(test_name, f"{name}.png")
        (target if target is not None else self.page).screenshot(path=str(path))
        return path


class Users:
    """Factory of :class:`User` for one test; closes everything it opened at teardown."""

    def __init__(self, lab: LabServer, browser: Any, test_name: str) -> None:
        self.lab = lab
        self.browser = browser
        self.test_name = test_name
        self.opened: list[User] = []
        self.suffix = uuid.uuid4().hex[:8]
        # This run's pictures only: a stale one from an earlier run would mislead.
        shutil.rmtree(artifact_dir(test_name), ignore_errors=True)

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write ``e2e-<name>-<suffix>.ipynb`` of code ``cells`` into the server root; return its path."""
        rel = f"e2e-{name}-{self.suffix}.ipynb"
        write_notebook(self.lab.root / rel, cells)
        return rel

    def token_file(self, name: str, token: str) -> str:
        """Store ``token`` in a private file next to the notebooks (so it never shows in a cell)."""
        rel = f".e2e-{name}-{self.suffix}.token"
        path = self.lab.root / rel
        path.write_text(token, encoding="utf-8")
        path.chmod(0o600)
        return rel

    def start(self, name: str, notebook_path: str) -> User:
        """Open ``notebook_path`` as ``name`` (loading only: ``user.notebook.wait_kernel()`` follows)."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        notebook = NotebookPage(page, self.lab, notebook_path, f"e2e-{name}-{self.suffix}")
        user = User(name, notebook, context)
        page.on("pageerror", lambda exc: user.page_errors.append(str(exc)))
        self.opened.append(user)
        user.notebook.goto()
        return user

    def open(self, *specs: tuple[str, str]) -> list[User]:
        """Open each ``(name, notebook_path)`` (all load at once), wait for every kernel, Run All."""
        users = [self.start(name, path) for name, path in specs]
        for user in users:
            user.notebook.wait_kernel()
        for user in users:
            user.notebook.run_all()
        return users

    def close_user(self, user: User) -> None:
        """The user leaves: the page closes and the notebook's session (its kernel) ends."""
        user.context.close()
        self.lab.shutdown_session(user.notebook.path)

    def teardown(self, failed: bool) -> list[str]:
        """Close every page and end every session; return the pages' uncaught errors."""
        errors = []
        for user in self.opened:
            if failed and not user.page.is_closed():
                with contextlib.suppress(Exception):
                    path = artifact_path(self.test_name, f"FAILED-{user.name}.png")
                    user.page.screenshot(path=str(path), full_page=True)
            errors += [f"{user.name}'s page: {e}" for e in user.page_errors if not _benign(e)]
            with contextlib.suppress(Exception):
                user.context.close()
        for user in self.opened:
            with contextlib.suppress(Exception):
                self.lab.shutdown_session(user.notebook.path, timeout=60)
        return errors


def _benign(error: str) -> bool:
    # Chromium reports this when a layout change outruns ResizeObserver callbacks: not a bug.
    return "ResizeObserver loop" in error


@pytest.fixture
def users(lab: LabServer, browser: Any, request: pytest.FixtureRequest) -> Iterator[Users]:
    """The test's :class:`Users`; afterwards every page is closed, every kernel shut down, and an
    uncaught exception in any page fails the test."""
    factory = Users(lab, browser, request.node.name)
    yield factory
    report = getattr(request.node, "rep_call", None)
    errors = factory.teardown(failed=report is None or report.failed)
    # An exception escaping a widget's code in the browser is a bug even if the test's checks passed.
    assert not errors, f"uncaught errors in the browser: {errors}"


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., ChaosProxy]]:
    """Factory: ``make_proxy(port, delay=0.0)`` -> a started proxy to 127.0.0.1:port; stopped at teardown.

    ``delay`` is the latency added to every chunk in each direction (``ChaosProxy.latency``).
    The proxy runs on the rtwidgets runtime thread, so the sync Playwright tests drive it directly.
    """
    proxies: list[ChaosProxy] = []

    def factory(port: int, delay: float = 0.0) -> ChaosProxy:
        proxy = ChaosProxy(port).start()
        proxies.append(proxy)
        if delay:
            proxy.latency(delay)
        return proxy

    yield factory
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def test_name(request: pytest.FixtureRequest) -> str:
    return str(request.node.name)


def copy_to_docs(source: Path, name: str) -> None:
    """Refresh ``docs/screenshots/<name>`` from a run (only with RTW_UPDATE_SCREENSHOTS=1)."""
    if os.environ.get("RTW_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
