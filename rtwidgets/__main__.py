"""``python -m rtwidgets``: the same CLI as the ``rtwidgets`` console script."""

from rtwidgets.cli import main

raise SystemExit(main())
