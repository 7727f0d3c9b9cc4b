"""The version of rtwidgets, in one place.

hatchling reads this file (statically, without importing the package) for the wheel's and
sdist's metadata (``[tool.hatch.version]`` in pyproject.toml); ``rtwidgets.__version__``
imports it and ``rtwidgets --version`` prints that. A file rather than
``importlib.metadata``: the tests and ``python -m rtwidgets`` also run from the source tree,
where no metadata (or another install's) would be found.
"""

__version__ = "0.1.0"
