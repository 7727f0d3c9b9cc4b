"""A real JupyterLab server for the e2e tests, and a driver for one notebook in one page.

:class:`LabServer` runs ``python -m jupyterlab`` on a free 127.0.0.1 port with fresh
config, runtime and IPython directories (so no old workspace or extra kernel is
restored), the news toast off, and ``window.jupyterapp`` exposed to the page.
:class:`NotebookPage` opens a notebook in a Playwright page (its own workspace, so two
pages do not restore each other's tabs), waits until the kernel is really idle and
connected (a Run All sent earlier is silently ignored), runs all cells, and reports
error outputs with their tracebacks.

Everything waits on conditions (HTTP answers, kernel state, DOM) with generous
timeouts; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Protocol

from playwright.sync_api import Page

from tests._support.waiting import GiveUp, wait_until

__all__ = [
    "KERNEL_TIMEOUT",
    "GiveUp",
    "LabServer",
    "NotebookPage",
    "copy_tree",
    "wait_until",
    "write_notebook",
]

# Generous: two cores shared with other test runs; a kernel start can take many seconds.
START_TIMEOUT = 90.0
KERNEL_TIMEOUT = 120.0

# JupyterLab user settings for a quiet, deterministic UI.
USER_SETTINGS = {
    # No news/update toast covering the notebook (and no request to the internet).
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
    # Attach every cell to the DOM, so outputs below the fold exist for selectors and screenshots.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


# Conditions outside the browser (processes, files, HTTP) are polled with the shared
# wait_until at this pace; a request failing while a server starts means "not yet", so any
# Exception is retried (GiveUp ends the wait). In-page conditions use Playwright's own waiting
# (wait_for_function / locators).
OUTSIDE = {"interval": 0.1, "retry_on": (Exception,)}


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write an nbformat 4 notebook of code ``cells`` (with a Python 3 kernelspec) to ``path``."""
    nb_cells: list[dict[str, Any]] = []
    for source in cells:
        nb_cells.append(
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": source,
                "id": uuid.uuid4().hex[:8],
            }
        )
    notebook = {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return path


class LabServer:
    """``python -m jupyterlab`` on a free port, serving ``root`` (fresh Jupyter dirs under ``home``).

    ``python`` is the interpreter that runs JupyterLab (and so its kernels): by default this
    one; tests/package passes a fresh venv's, to render widgets from an installed wheel.
    """

    def __init__(self, root: Path, home: Path, log_path: Path, python: str | None = None) -> None:
        self.root = root
        self.home = home
        self.log_path = log_path
        self.python = python or sys.executable
        self.token = secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LabServer:
        config = self.home / "config"
        runtime = self.home / "runtime"
        ipython = self.home / "ipython"
        for folder in (config, runtime, ipython):
            folder.mkdir(parents=True, exist_ok=True)
        settings_dir = config / "lab" / "user-settings"
        for rel, values in USER_SETTINGS.items():
            target = settings_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values), encoding="utf-8")
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "IPYTHONDIR": str(ipython),
            "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
            "JUPYTERLAB_WORKSPACES_DIR": str(config / "lab" / "workspaces"),
            "PYTHONUNBUFFERED": "1",
        }
        if self.python != sys.executable:
            # Another venv's JupyterLab: its bin/ first on PATH, so what it starts by name is its own.
            env["PATH"] = os.pathsep.join([os.path.dirname(self.python), env.get("PATH", "")])
            env.pop("VIRTUAL_ENV", None)
        # No "jupyter lab" dispatcher: killing it would leave the real server running.
        cmd = [
            self.python,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--port=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            "--allow-root",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        self.port = wait_until(
            lambda: self._server_port(runtime),
            START_TIMEOUT,
            f"JupyterLab to start (log: {self.log_path})",
            **OUTSIDE,
        )
        wait_until(
            lambda: self.api("GET", "/api/status") is not None,
            START_TIMEOUT,
            "JupyterLab's /api/status",
            **OUTSIDE,
        )
        return self

    def _server_port(self, runtime: Path) -> int | None:
        """The port from the server's info file (written once it listens), or None if not yet."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise GiveUp(f"JupyterLab exited with {self.process.returncode}: {self.log_tail()}")
        info = runtime / f"jpserver-{self.process.pid}.json"
        try:
            return int(json.loads(info.read_text())["port"])
        except (OSError, ValueError, KeyError):
            return None  # not written yet, or written half-way

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Jupyter REST API; return the decoded JSON (``True`` for an empty answer)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else True

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/sessions"))

    def shutdown_session(self, notebook_path: str, timeout: float = KERNEL_TIMEOUT) -> None:
        """End the session of ``notebook_path`` (its kernel shuts down) and wait until it is gone."""
        for session in self.sessions():
            if session.get("path") == notebook_path:
                self.api("DELETE", f"/api/sessions/{session['id']}")
        wait_until(
            lambda: all(s.get("path") != notebook_path for s in self.sessions()),
            timeout,
            f"the session of {notebook_path} to end",
            **OUTSIDE,
        )

    def shutdown_all_sessions(self) -> None:
        for session in self.sessions():
            try:
                self.api("DELETE", f"/api/sessions/{session['id']}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # already gone is fine
                    raise

    def url_for(self, notebook_path: str, workspace: str) -> str:
        """The URL opening ``notebook_path`` alone in a fresh workspace ``workspace``."""
        quoted = urllib.parse.quote(notebook_path)
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{quoted}?reset&token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server log, with the Jupyter token hidden."""
        try:
            text = self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
        return text.replace(self.token, "***")

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            # SIGTERM: the server shuts its kernels down before it exits.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        self._log.close()
        # The log holds the Jupyter token in URLs: keep only a redacted copy.
        text = self.log_path.read_text(errors="replace").replace(self.token, "***")
        self.log_path.write_text(text)


# JavaScript run in the page. ``find`` locates the notebook panel of a path among the main-area widgets.
_FIND_PANEL = """
const findPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path) return w;
  }
  return null;
};
"""

_KERNEL_READY = (
    "(path) => {"
    + _FIND_PANEL
    + """
  const panel = findPanel(path);
  if (!panel || !panel.context.isReady) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}"""
)

# Run the code cells [start, stop) (stop null: to the end) with one JupyterLab command:
# Run All, or "run all above" the cell at ``stop``, or "run all below" from ``start``. Their
# outputs and execution counts are cleared first, so "finished" below cannot be satisfied
# by what the notebook stored.
_RUN = (
    "async ({path, command, start, stop}) => {"
    + _FIND_PANEL
    + """
  const panel = findPanel(path);
  window.jupyterapp.shell.activateById(panel.id);
  await panel.revealed;
  const cells = panel.content.widgets;
  const end = stop === null ? cells.length : stop;
  for (let i = start; i < end; i++) {
    if (cells[i].model.type !== 'code') continue;
    cells[i].model.outputs.clear();
    cells[i].model.executionCount = null;
  }
  if (command !== 'notebook:run-all-cells') {
    panel.content.activeCellIndex = command === 'notebook:run-all-above' ? end : start;
  }
  await window.jupyterapp.commands.execute(command);
  return true;
}"""
)

# Finished = every code cell in [start, stop) has an execution count and the kernel is
# idle; or an error output appeared (Run All stops there, later cells never get a count).
_RUN_STATE = (
    "({path, start, stop}) => {"
    + _FIND_PANEL
    + """
  const panel = findPanel(path);
  if (!panel) return null;
  const errors = [];
  let done = true;
  const cells = panel.content.widgets;
  const end = stop === null ? cells.length : stop;
  for (let i = start; i < end; i++) {
    const model = cells[i].model;
    if (model.type !== 'code') continue;
    for (const out of model.outputs.toJSON()) {
      if (out.output_type === 'error') {
        const traceback = (out.traceback || []).join('\\n');
        errors.push({cell: i, ename: out.ename, evalue: out.evalue, traceback});
      }
    }
    if (model.executionCount === null || model.executionCount === undefined) done = false;
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const idle = !!kernel && kernel.status === 'idle';
  if (errors.length) return {finished: true, errors};
  return done && idle ? {finished: true, errors} : null;
}"""
)

_SOURCES = (
    "(path) => {"
    + _FIND_PANEL
    + """
  return findPanel(path).content.widgets.map(
    (cell) => ({type: cell.model.type, source: cell.model.sharedModel.getSource()}));
}"""
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotebookHost(Protocol):
    """What :class:`NotebookPage` needs of a server: a :class:`LabServer`, or Jupyter Notebook 7
    (``tests/e2e/hosts.py``), whose front end is JupyterLab's."""

    def url_for(self, notebook_path: str, workspace: str) -> str: ...


class NotebookPage:
    """One notebook open in one Playwright page (a user's browser tab)."""

    def __init__(self, page: Page, server: NotebookHost, notebook_path: str, workspace: str) -> None:
        self.page = page
        self.server = server
        self.path = notebook_path
        self.workspace = workspace

    def goto(self) -> NotebookPage:
        """Start loading JupyterLab with the notebook (returns once the document loaded)."""
        self.page.goto(self.server.url_for(self.path, self.workspace), wait_until="domcontentloaded")
        return self

    def wait_kernel(self, timeout: float = KERNEL_TIMEOUT) -> NotebookPage:
        """Wait until the notebook's kernel is idle and connected (Run All before that is lost)."""
        self.page.wait_for_function(_KERNEL_READY, arg=self.path, timeout=timeout * 1000, polling=200)
        return self

    def run_all(self, timeout: float = KERNEL_TIMEOUT) -> None:
        """Run all cells and wait until they finished; fail with the traceback of an error output."""
        self._run("notebook:run-all-cells", 0, None, timeout)

    def run_above(self, stop: int, timeout: float = KERNEL_TIMEOUT) -> None:
        """Run the cells before index ``stop`` (see :meth:`run_all`)."""
        self._run("notebook:run-all-above", 0, stop, timeout)

    def run_from(self, start: int, timeout: float = KERNEL_TIMEOUT) -> None:
        """Run the cells from index ``start`` to the end (see :meth:`run_all`)."""
        self._run("notebook:run-all-below", start, None, timeout)

    def cells(self) -> list[dict[str, str]]:
        """``[{type, source}]`` of every cell, as the page has them."""
        return list(self.page.evaluate(_SOURCES, self.path))

    def _run(self, command: str, start: int, stop: int | None, timeout: float) -> None:
        args = {"path": self.path, "command": command, "start": start, "stop": stop}
        self.page.evaluate(_RUN, args)
        handle = self.page.wait_for_function(
            _RUN_STATE,
            arg={"path": self.path, "start": start, "stop": stop},
            timeout=timeout * 1000,
            polling=200,
        )
        state = handle.json_value()
        if state["errors"]:
            report = "\n\n".join(
                f"cell {e['cell']}: {e['ename']}: {e['evalue']}\n{_ANSI.sub('', e['traceback'])}"
                for e in state["errors"]
            )
            raise AssertionError(f"{self.path}: a cell raised an error:\n{report}")

    def close(self) -> None:
        self.page.close()


def copy_tree(source: Path, target: Path) -> None:
    """Copy the project's notebooks into the server root (so autosave never touches the repo)."""
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
