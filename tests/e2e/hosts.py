"""App hosts for the e2e tests: ``voila``, ``marimo run`` and Jupyter Notebook 7 on a free port.

:class:`AppServer` starts the host on 127.0.0.1 with fresh Jupyter, IPython and XDG
directories and its own ``RTWIDGETS_RUNTIME_DIR``, so the shared gateway its kernels start is
this test's alone. :meth:`AppServer.stop` stops the host (SIGTERM to its process group: it
shuts its kernels down), then every process it left, then the shared gateway (its process
group), also when the test failed.

Jupyter Notebook 7 (``host="notebook"``) serves the folder of ``app`` with the news toast off
and ``window.jupyterapp`` exposed, so :class:`~tests.e2e.lab.NotebookPage` drives its pages
(its front end is JupyterLab's): :meth:`AppServer.url_for` opens any notebook of that folder.

Everything waits on conditions (HTTP answers, process exits) with generous bounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from rtwidgets.gateway.discovery import GATEWAY_URL_ENV, RUNTIME_DIR_ENV, RuntimePaths, read_record
from tests._support.net import free_port
from tests._support.waiting import GiveUp, wait_until

from .lab import USER_SETTINGS

__all__ = ["AppServer", "Host"]

Host = Literal["voila", "marimo", "notebook"]
START_TIMEOUT = 120.0  # a host and its first kernel on a busy 2-core machine
STOP_TIMEOUT = 60.0


@dataclass
class AppServer:
    """One host serving one app; ``page_url`` opens it (with the host's token).

    For ``notebook`` the app is one notebook of the folder served (``app.parent``); every
    notebook there opens with :meth:`url_for`.
    """

    host: Host
    app: Path
    home: Path
    log_path: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _known: dict[int, psutil.Process] = field(default_factory=dict, repr=False)

    @property
    def runtime_dir(self) -> Path:
        """The ``RTWIDGETS_RUNTIME_DIR`` of this host's kernels."""
        return self.home / "rtwidgets-runtime"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def page_url(self) -> str:
        if self.host == "notebook":
            return self.url_for(self.app.name)
        param = "token" if self.host == "voila" else "access_token"
        return f"{self.base_url}/?{param}={self.token}"

    @property
    def user_settings_dir(self) -> Path:
        """The JupyterLab user settings of a ``notebook`` host (Notebook 7 reads them too)."""
        return self.home / "jupyter-config" / "lab" / "user-settings"

    def url_for(self, notebook_path: str, workspace: str = "") -> str:
        """The Notebook 7 page of ``notebook_path`` (relative to the folder served).

        ``workspace`` is ignored: Notebook 7 opens one document per page, with no workspace to
        restore (it is there for :class:`~tests.e2e.lab.NotebookPage`).

        Raises:
            ValueError: the host is not ``notebook``.
        """
        if self.host != "notebook":
            raise ValueError(f"url_for() opens a notebook of a Notebook 7 host, not of {self.host}")
        quoted = urllib.parse.quote(notebook_path)
        return f"{self.base_url}/notebooks/{quoted}?token={self.token}"

    def _command(self) -> list[str]:
        if self.host == "notebook":
            # No "jupyter notebook" dispatcher: killing it would leave the real server running.
            return [
                sys.executable,
                "-m",
                "notebook",
                "--no-browser",
                f"--port={self.port}",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                "--allow-root",
                f"--notebook-dir={self.app.parent}",
                f"--JupyterNotebookApp.user_settings_dir={self.user_settings_dir}",
                "--JupyterNotebookApp.expose_app_in_browser=True",
            ]
        if self.host == "voila":
            return [
                sys.executable,
                "-m",
                "voila",
                str(self.app),
                "--no-browser",
                f"--port={self.port}",
                "--Voila.ip=127.0.0.1",
                f"--token={self.token}",
                "--show_tracebacks=True",
            ]
        return [
            sys.executable,
            "-m",
            "marimo",
            "run",
            str(self.app),
            "--headless",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--token-password",
            self.token,
            "--no-sandbox",
            "--no-check",
        ]

    def start(self) -> AppServer:
        dirs = {
            "JUPYTER_CONFIG_DIR": self.home / "jupyter-config",
            "JUPYTER_RUNTIME_DIR": self.home / "jupyter-runtime",
            "IPYTHONDIR": self.home / "ipython",
            # marimo keeps its config, cache and state under the XDG directories.
            "XDG_CONFIG_HOME": self.home / "xdg-config",
            "XDG_CACHE_HOME": self.home / "xdg-cache",
            "XDG_STATE_HOME": self.home / "xdg-state",
        }
        for folder in dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        if self.host == "notebook":
            # JupyterLab's quiet settings (no news toast over the notebook, every cell in the DOM).
            for rel, values in USER_SETTINGS.items():
                target = self.user_settings_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(values), encoding="utf-8")
        env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
        env[RUNTIME_DIR_ENV] = str(self.runtime_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(GATEWAY_URL_ENV, None)  # the kernels must find (or start) the shared gateway
        self.port = free_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self._command(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.app.parent,
            start_new_session=True,
        )
        wait_until(self._answers, START_TIMEOUT, f"{self.host} to serve (log: {self.log_path})", interval=0.2)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise GiveUp(f"{self.host} exited with {self.process.returncode}: {self.log_tail()}")
        # Not the app's page: Voilà starts a kernel (a viewer) for every GET of it. Any HTTP
        # answer (a redirect to a login, a 404) means the server is up.
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/status", timeout=10):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False  # not listening yet (or the free port was taken: the poll above says)

    def gateway_pids(self) -> list[int]:
        """The running shared gateways of this host's kernels (their cmdline names its runtime dir)."""
        pids = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                str(self.runtime_dir) in part for part in cmdline
            ):
                pids.append(proc.pid)
        return pids

    def remember_children(self) -> None:
        """Note the host's processes (its kernels), so :meth:`stop` ends any it leaves behind."""
        if self.process is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self._known[child.pid] = child

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
        return text.replace(self.token, "***")

    def stop(self) -> None:
        process = self.process
        if process is not None:
            self.remember_children()
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)  # the host shuts its kernels down
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(STOP_TIMEOUT)
            self._log.close()
            self.process = None
        # Kernels in sessions of their own, left behind by an unclean stop.
        leftovers = [p for p in self._known.values() if p.is_running()]
        for proc in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=STOP_TIMEOUT)
        self._stop_gateways()
        # The log holds the host's token in URLs: keep only a redacted copy.
        with contextlib.suppress(OSError):
            self.log_path.write_text(self.log_tail(chars=10**7))

    def _stop_gateways(self) -> None:
        record = None
        with contextlib.suppress(Exception):
            record = read_record(RuntimePaths(self.runtime_dir).record)
        pids = set(self.gateway_pids()) | ({record.pid} if record is not None else set())
        procs = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if any(str(self.runtime_dir) in part for part in proc.cmdline()):
                    os.killpg(pid, signal.SIGTERM)  # the gateway leads its own process group
                    procs.append(proc)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT)
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def copy_app(source: Path, target_dir: Path) -> Path:
    """Copy one app file into ``target_dir`` (the host serves the copy: nothing it writes lands
    in the repository)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    shutil.copyfile(source, target)
    return target
