"""Build hook run before hatch-jupyter-builder: a clear error when node/npm are missing.

The wheel must carry the widget bundles (``rtwidgets/static/*.js``). When they are not in
the tree yet (a clean clone), hatch-jupyter-builder's ``npm_builder`` runs ``npm install``
and ``npm run build`` in ``js/``; without npm on PATH it fails with "Could not find cmd
(npm) in path", and with npm but no node with a bare ``env: 'node'`` error. This hook
checks first and says what is needed. It does nothing when the bundles are already there
(hatch-jupyter-builder's ``skip-if-exists``: a wheel built from an sdist, which carries
them) or when npm is skipped on purpose (then ``ensured-targets`` still refuses a wheel
without its front end).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NEEDED = ("node", "npm")


def missing_tools(bundles: list[str], root: Path, which: Any = shutil.which) -> list[str]:
    """The tools of :data:`NEEDED` not on PATH, when a bundle of ``bundles`` (paths relative
    to ``root``) is missing and so must be built; ``[]`` when nothing needs building."""
    if bundles and all((root / path).exists() for path in bundles):
        return []
    return [tool for tool in NEEDED if which(tool) is None]


class FrontEndToolsHook(BuildHookInterface):  # type: ignore[type-arg]
    """Fails the build early, with advice, if the JavaScript bundles need node/npm and they are absent."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Check before ``jupyter-builder`` runs (hooks run in pyproject order).

        Raises:
            RuntimeError: a bundle must be built and node or npm is not on PATH.
        """
        if self.target_name not in ("wheel", "sdist"):
            return
        # The switches hatch-jupyter-builder honours: then it runs no npm at all.
        if os.environ.get("SKIP_JUPYTER_BUILDER") or os.environ.get("HATCH_JUPYTER_BUILDER_SKIP_NPM") == "1":
            return
        config = self.build_config.build_config.get("hooks", {}).get("jupyter-builder", {})
        missing = missing_tools(list(config.get("skip-if-exists", [])), Path(self.root))
        if missing:
            raise RuntimeError(
                f"building rtwidgets needs {' and '.join(missing)} on PATH: the widget front end "
                "(rtwidgets/static/*.js) is bundled from js/ with `npm install` + `npm run build`. "
                "Install Node.js 20 or newer (with npm), e.g. `apt-get install nodejs npm`, or "
                "install rtwidgets from a wheel or an sdist that already carries the bundles."
            )
