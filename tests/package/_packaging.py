"""Helpers of the packaging tests: a clean copy of the checkout, commands with their output,
and what a wheel or sdist holds.

Nothing here touches the checkout itself: builds run in a copy (so no ``node_modules``,
bundles or ``dist/`` appear in the tree other tests and engineers use).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPORT",
    "ROOT",
    "Dists",
    "archive_files",
    "copy_checkout",
    "expected_static",
    "run",
    "source_version",
]

ROOT = Path(__file__).resolve().parents[2]
# Figures measured by the tests of this session ({title: text}), for the terminal summary.
REPORT: dict[str, str] = {}

# Never copied: what a fresh clone does not have (the fallback when the tree is not a git checkout).
_NOT_SOURCES = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".jupyter",
    "test-artifacts",
    "site",
    "dist",
    "build",
}
_GENERATED_STATIC = re.compile(r"^rtwidgets/static/(.*\.js(\.map)?|THIRD_PARTY_NOTICES\.md)$")


@dataclass(frozen=True)
class Dists:
    """The sdist and wheel built from one copy of the checkout, and how long that took."""

    source: Path
    sdist: Path
    wheel: Path
    seconds: float
    log: str  # the build's output (also written to test-artifacts/package/build.log)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with stdout and stderr captured together (text).

    Args:
        cmd: the command and its arguments.
        cwd: working directory.
        timeout: seconds before the command and everything it started are killed (then
            :class:`subprocess.TimeoutExpired`).
        env: the environment (default: this process's).
        check: fail with the command's output if it exits non-zero.

    Raises:
        AssertionError: ``check`` is set and the command failed (the message ends with its output).
    """
    args = [str(part) for part in cmd]
    # Its own session, so a timeout or an interrupted test ends the whole tree (pip's build
    # backend, npm, node), not only the direct child.
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    result = subprocess.CompletedProcess(args, process.returncode, output)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited with {result.returncode}:\n{result.stdout[-6000:]}"
        )
    return result


def _source_files() -> list[str]:
    """Paths (relative, posix) of a fresh clone plus the working changes: tracked and untracked
    files that .gitignore does not exclude. Generated files (bundles, node_modules) are ignored,
    so they are not among them."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout (e.g. an unpacked sdist): everything but the known generated folders.
        found = []
        for path in ROOT.rglob("*"):
            rel = path.relative_to(ROOT)
            if path.is_file() and not _NOT_SOURCES.intersection(rel.parts):
                found.append(rel.as_posix())
        return [rel for rel in found if not _GENERATED_STATIC.match(rel)]
    return [rel for rel in listing.split("\0") if rel]


def copy_checkout(target: Path) -> Path:
    """Copy the checkout's sources (see :func:`_source_files`) to ``target``; return ``target``.

    Files deleted in the working tree but still tracked are skipped, like a commit of the tree would.
    """
    for rel in _source_files():
        source = ROOT / rel
        if not source.is_file():
            continue
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    return target


def expected_static(source: Path) -> list[str]:
    """What must be in ``rtwidgets/static/`` of a wheel built from ``source``: one bundle per
    top-level ``js/src/*.js`` (js/build.mjs' rule) and the third-party notice file."""
    bundles = sorted(f"{path.stem}.js" for path in (source / "js" / "src").glob("*.js"))
    return sorted([*bundles, "THIRD_PARTY_NOTICES.md"])


def source_version(source: Path) -> str:
    """``__version__`` as written in ``rtwidgets/_version.py`` under ``source`` (read, not imported)."""
    text = (source / "rtwidgets" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match, 'rtwidgets/_version.py has no `__version__ = "..."` line'
    return match.group(1)


def archive_files(path: Path) -> dict[str, int]:
    """``{member path: size}`` of the files in a wheel (zip) or an sdist (tar.gz); sdist paths
    lose their ``<name>-<version>/`` prefix."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return {info.filename: info.file_size for info in wheel.infolist() if not info.is_dir()}
    with tarfile.open(path) as sdist:
        return {
            member.name.split("/", 1)[1]: member.size
            for member in sdist.getmembers()
            if member.isfile() and "/" in member.name
        }
