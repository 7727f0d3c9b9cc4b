"""Every other demo notebook renders its widgets in a real JupyterLab.

nbval (``tests/notebooks``) proves the notebooks' cells run and their asserts hold; only a
browser shows that the widgets' JavaScript renders. Each notebook runs up to its clean-up
cell (which would remove the views), every widget it shows must be visible (a screenshot
of each is saved), no exception may escape in the page, and the clean-up must run cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import ROOT, Users
from .test_quickstart import cleanup_index

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("0*.ipynb") if not p.name.startswith("01_"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_demo_notebook_renders_its_widgets(users: Users, name: str, test_name: str) -> None:
    viewer = users.start("viewer", f"notebooks/{name}")
    notebook = viewer.notebook
    notebook.wait_kernel()
    cleanup = cleanup_index(notebook.cells())
    if cleanup is None:
        notebook.run_all()
    else:
        notebook.run_above(cleanup)

    # rtwidgets' own widgets, and the ipywidgets a notebook shares with rtwidgets.share (08).
    widgets = viewer.page.locator(".rtw-widget, .widget-slider, .widget-dropdown")
    expect(widgets.first).to_be_visible()
    count = widgets.count()
    for i in range(count):
        widget = widgets.nth(i)
        expect(widget).to_be_visible()
        classes = (widget.get_attribute("class") or "").split()
        kind = next((c for c in classes if c.startswith(("rtw-", "widget-")) and c != "rtw-widget"), "widget")
        viewer.screenshot(test_name, f"{i:02d}-{kind}", widget)
    print(f"\n[e2e] {name}: {count} widgets rendered")

    if cleanup is not None:
        notebook.run_from(cleanup)


def test_demo_notebooks_found() -> None:
    """The parametrisation above is not silently empty."""
    assert NOTEBOOKS, f"no demo notebooks in {Path(ROOT / 'notebooks')}"
