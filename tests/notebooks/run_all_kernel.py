"""Run a notebook's code cells in a fresh kernel as *Run All* does, look around, shut the kernel down.

``python tests/notebooks/run_all_kernel.py NOTEBOOK`` prints one JSON line:

* ``errors``: the cells that raised (``[]`` when Run All went through);
* ``live``: what the notebook's namespace holds after its last cell: every rtwidgets widget
  (``[name, closed]``, lists and dicts of them included) and every ``Connection`` (``{name: state}``);
* ``exit``: how the kernel ended after a *polite* shutdown (a ``shutdown_request``, what
  JupyterLab sends for "Shut Down Kernel" and when the server stops): ``returncode`` is ``0``
  only when the kernel process exited by itself; a kernel that hangs is sent SIGTERM and then
  SIGKILL by ``jupyter_client`` after ``SHUTDOWN_WAIT`` seconds, and its return code says so;
* ``stderr``: the kernel's stderr, for the caller to check for tracebacks.

A subprocess of its own (like nbval's run in ``test_notebooks.py``), so the kernel client's
event loops never meet the test session's. The kernel is this interpreter (its ``python3``
kernelspec is the venv's ipykernel); the probe checks that.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

from jupyter_client.manager import KernelManager

CELL_TIMEOUT = 120.0
# Generous: a kernel that needs longer than this to exit after a shutdown request is hung.
SHUTDOWN_WAIT = 60.0

PROBE = """
import json as _json
import sys as _sys

from rtwidgets.models import Connection as _Connection
from rtwidgets.sharing import ShareLink as _ShareLink
from rtwidgets.widgets._base import RealtimeWidget as _RealtimeWidget


def _rtw_probe():
    widgets, connections = [], {}
    for name, value in list(globals().items()):
        if name.startswith("_") or name in ("In", "Out"):  # IPython history
            continue
        items = list(value.values()) if isinstance(value, dict) else value
        items = items if isinstance(items, (list, tuple)) else [value]
        for i, item in enumerate(items):
            label = name if item is value else f"{name}[{i}]"
            if isinstance(item, _RealtimeWidget):
                widgets.append([label, item.closed or item.comm is None])
            elif isinstance(item, _ShareLink):  # a shared ipywidget: live while linked and open
                widgets.append([label, not item.linked or getattr(item.widget, "comm", None) is None])
            elif isinstance(item, _Connection):
                connections[label] = item.state
    return {"prefix": _sys.prefix, "widgets": widgets, "connections": connections}


print(_json.dumps(_rtw_probe()))
"""


def code_cells(path: pathlib.Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def main(notebook: str) -> int:
    path = pathlib.Path(notebook).resolve()
    with tempfile.TemporaryDirectory(prefix="rtw-run-all-") as home:
        stderr_path = pathlib.Path(home) / "kernel.stderr"
        km = KernelManager(kernel_name="python3")
        km.shutdown_wait_time = SHUTDOWN_WAIT
        with open(stderr_path, "w") as stderr, open(pathlib.Path(home) / "kernel.stdout", "w") as stdout:
            km.start_kernel(cwd=str(path.parent), stdout=stdout, stderr=stderr)
        process = km.provisioner.process  # type: ignore[union-attr]
        client = km.client()
        client.start_channels()
        result: dict[str, object] = {"errors": []}
        try:
            client.wait_for_ready(timeout=60)
            errors: list[dict[str, object]] = []
            for index, source in enumerate(code_cells(path)):
                reply = client.execute_interactive(source, timeout=CELL_TIMEOUT, output_hook=lambda _m: None)
                content = reply["content"]
                if content["status"] != "ok":
                    errors.append(
                        {"cell": index, "ename": content.get("ename"), "evalue": content.get("evalue")}
                    )
                    break  # Run All stops at the first error
            result["errors"] = errors
            printed: list[str] = []

            def collect(msg: dict[str, object]) -> None:
                content = msg["content"]
                if msg["header"]["msg_type"] == "stream":  # type: ignore[index]
                    printed.append(content["text"])  # type: ignore[index]

            reply = client.execute_interactive(PROBE, timeout=CELL_TIMEOUT, output_hook=collect)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"the probe failed: {reply['content']}")
            result["live"] = json.loads("".join(printed))
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=False)  # a shutdown_request; SIGTERM/SIGKILL only if it hangs
        result["exit"] = {"returncode": process.returncode}
        result["stderr"] = stderr_path.read_text(errors="replace")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
