"""*Run All* leaves every demo notebook live, and the kernel still shuts down cleanly.

A newcomer who runs all cells must see working widgets, so no notebook closes its widgets or
stops its gateway in a cell: each ends with a markdown "Clean up" section holding the
clean-up code to paste (nbval runs that code after the notebook's cells, see
``test_notebooks.py``). With everything left running, a politely shut down kernel (what
JupyterLab's "Shut Down Kernel", a restart and the server's own shutdown send) must exit by
itself: the rtwidgets runtime is a daemon thread whose ``atexit`` hook stops its loop, so no
gateway, connection or timer may keep the process alive or print errors on the way out.
(nbval itself kills its kernels, so it cannot see a kernel that hangs at shutdown.)
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DRIVER = pathlib.Path(__file__).with_name("run_all_kernel.py")

# Connections a notebook takes down on purpose, as part of what it demonstrates.
EXPECTED_DOWN = {
    "05_cli_gateway.ipynb": {"alice", "bob"},  # the lesson ends with the gateway's SIGTERM
    "06_collaborative_editing.ipynb": {"dave_conn"},  # dave leaves; alice, bob and carol stay
}
CLEANUP_HEADING = re.compile(r"^#+ .*Clean up", re.MULTILINE)
SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)


def cells(path: pathlib.Path) -> list[dict[str, object]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["cells"])


def source(cell: dict[str, object]) -> str:
    return "".join(cell["source"])  # type: ignore[arg-type]


def cleanup_snippet(path: pathlib.Path) -> str:
    """The clean-up code of a notebook: the ```python block of its last cell, a markdown "Clean up"."""
    last = cells(path)[-1]
    text = source(last)
    assert last["cell_type"] == "markdown" and CLEANUP_HEADING.search(text), (
        f"{path.name}: the last cell must be a markdown 'Clean up' section (Run All must not clean up)"
    )
    match = SNIPPET.search(text)
    assert match, f"{path.name}: the clean-up section has no ```python block"
    return match.group(1)


def test_no_cell_cleans_up_and_each_notebook_documents_how() -> None:
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        snippet = cleanup_snippet(path)
        code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
        # Run All never stops the in-kernel gateway (05 stops its gateway subprocess, on purpose).
        assert not any("gw.stop()" in s for s in code), path.name
        # Nor does any cell run a line of the clean-up that closes or stops something.
        closing = [line.strip() for line in snippet.splitlines() if ".close()" in line or ".stop()" in line]
        assert closing, path.name
        assert not [line for line in closing if any(line in s for s in code)], path.name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_run_all_leaves_widgets_live_and_the_kernel_exits_by_itself(
    path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipy"),
    ):
        env[var] = str(tmp_path / sub)
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == [], result["errors"]

    live = result["live"]
    assert pathlib.Path(live["prefix"]) == pathlib.Path(sys.prefix), "the kernel is not this venv's"
    # After the last cell every widget is still open (its view is live in the page) ...
    assert live["widgets"], f"{path.name}: no rtwidgets widget found after Run All"
    assert [name for name, closed in live["widgets"] if closed] == [], live["widgets"]
    # ... and every connection is still connected, except those the notebook drops on purpose.
    down = {name for name, state in live["connections"].items() if state != "connected"}
    assert down == EXPECTED_DOWN.get(path.name, set()), live["connections"]

    # With all that running, a shutdown request ends the kernel: it exits by itself, with 0
    # (a hung kernel would be sent SIGTERM/SIGKILL: a negative return code), and prints no error.
    assert result["exit"]["returncode"] == 0, result
    stderr = result["stderr"]
    for bad in ("Traceback", "Exception ignored", "Task was destroyed", "Error", "never awaited"):
        assert bad not in stderr, f"{path.name}: kernel stderr:\n{stderr}"
