"""Run the demo notebooks under nbval in a subprocess (a real kernel per notebook).

The notebooks are validated with ``--nbval-lax``: every cell must run without error (each
notebook asserts what it demonstrates), and cells marked ``# NBVAL_CHECK_OUTPUT`` must
reproduce their stored text output (after ``notebooks/nbval_sanitize.cfg``). The kernel is
the current interpreter (``--nbval-current-env``), so the venv's rtwidgets is the one tested.
A subprocess keeps nbval's kernels and event loops out of this test session.

No notebook cleans up in a cell (*Run All* must leave the widgets live, see
``test_live_after_run_all.py``); each ends with a markdown "Clean up" section holding the code
to paste. nbval runs a copy of each notebook with that code appended as a last code cell, so
the cells run exactly as stored and the documented clean-up is proved to work after them.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from .test_live_after_run_all import cleanup_snippet

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Every numbered demo notebook runs under nbval, and each is checked for having something to
# check (asserts and compared outputs): a notebook without them would pass trivially.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def with_cleanup_cell(path: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """A copy of ``path`` in ``folder`` whose last code cell is its documented clean-up code."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "rtw-clean-up",
            "metadata": {},
            "outputs": [],
            "source": cleanup_snippet(path),
        }
    )
    copy = folder / path.name
    copy.write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return copy


@pytest.mark.timeout(600)
def test_notebooks_run_and_checks_pass(tmp_path: pathlib.Path) -> None:
    copies = tmp_path / "notebooks"
    copies.mkdir()
    runs = [with_cleanup_cell(path, copies) for path in NOTEBOOKS]
    env = dict(os.environ)
    # Fresh Jupyter/IPython dirs: no user config or history leaks into the run.
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipy"),
    ):
        env[var] = str(tmp_path / sub)
    # One nbval session for all notebooks (a kernel each): pytest's start-up is paid once.
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-cell-timeout=120",
        "--nbval-sanitize-with",
        str(ROOT / "notebooks" / "nbval_sanitize.cfg"),
        *map(str, runs),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, f"nbval failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    # Every cell of every notebook, and each clean-up, ran as an nbval item and passed.
    cells = sum(
        sum(1 for c in json.loads(p.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
        for p in runs
    )
    assert cells == len(NOTEBOOKS) + sum(
        sum(1 for c in json.loads(p.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
        for p in NOTEBOOKS
    )
    assert f"{cells} passed" in proc.stdout, proc.stdout[-2000:]


def real_asserts(source: str) -> int:
    """The ``assert`` statements in a cell that can fail (parsed, not counted as substrings).

    The cell is first turned into plain Python the way IPython would run it (magics, ``!``
    commands), then parsed; an ``assert`` whose test is a constant (``assert True``,
    ``assert "text"``) cannot fail and is not counted, nor is the word in a string or comment.
    Raises ``SyntaxError`` for a cell that is not valid Python (nbval would fail it too).
    """
    tree = ast.parse(TransformerManager().transform_cell(source))
    asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    return sum(1 for node in asserts if not isinstance(node.test, ast.Constant))


def test_real_asserts_counts_statements_not_text() -> None:
    cell = (
        '%time x = 1\nassert x == 1, "assert in a message"\n'
        '# assert in a comment\ns = "assert y"\nassert True\n'
    )
    assert real_asserts(cell) == 1
    assert real_asserts("def check(v):\n    assert v > 0\ncheck(1)\nassert (x := 2)\n") == 2
    with pytest.raises(SyntaxError):
        real_asserts("assert (")


def test_every_notebook_checks_something() -> None:
    """A notebook without asserts or checked outputs would pass nbval trivially."""
    assert [p.name[:2] for p in NOTEBOOKS][:7] == ["01", "02", "03", "04", "05", "06", "07"], [
        p.name for p in NOTEBOOKS
    ]
    for path in NOTEBOOKS:
        cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
        sources = ["".join(c["source"]) for c in cells]
        assert any("NBVAL_CHECK_OUTPUT" in s for s in sources), path.name
        assert sum(real_asserts(s) for s in sources) >= 2, f"{path.name}: fewer than 2 assert statements"
        checked = [c for c, s in zip(cells, sources, strict=True) if "NBVAL_CHECK_OUTPUT" in s]
        assert all(c["outputs"] for c in checked), f"{path.name}: a checked cell has no stored output"
