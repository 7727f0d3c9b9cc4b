"""The packaging tests (tests/package): marker ``package``; their figures in the terminal summary."""

from __future__ import annotations

from typing import Any

from ._packaging import REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the packaging tests measured (build time, wheel size, install time), if they ran."""
    if not REPORT:
        return
    terminalreporter.section("package: measured")
    for key, text in REPORT.items():
        terminalreporter.write_line(f"{key}: {text.splitlines()[0]}")
    terminalreporter.write_line("(wheel file list: test-artifacts/package/report.md)")
