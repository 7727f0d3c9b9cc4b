"""hatch_build.py, the build hook that refuses to build without node/npm when bundles are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hatch_build import NEEDED, missing_tools

pytestmark = pytest.mark.package
BUNDLES = ["rtwidgets/static/chat.js", "rtwidgets/static/THIRD_PARTY_NOTICES.md"]


def _tree(root: Path, *present: str) -> Path:
    for rel in present:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root


def test_no_tools_needed_when_every_bundle_is_there(tmp_path: Path) -> None:
    root = _tree(tmp_path, *BUNDLES)
    assert missing_tools(BUNDLES, root, which=lambda tool: None) == []


def test_a_missing_bundle_needs_node_and_npm(tmp_path: Path) -> None:
    root = _tree(tmp_path, BUNDLES[0])
    assert missing_tools(BUNDLES, root, which=lambda tool: None) == list(NEEDED)
    assert missing_tools(BUNDLES, root, which=lambda tool: None if tool == "node" else "/bin/npm") == ["node"]
    assert missing_tools(BUNDLES, root, which=lambda tool: f"/usr/bin/{tool}") == []


def test_without_a_bundle_list_the_tools_are_always_checked(tmp_path: Path) -> None:
    assert missing_tools([], tmp_path, which=lambda tool: None) == list(NEEDED)
