"""``python -m cachedeco``: the operator's command line (see cachedeco.cli)."""

from cachedeco.cli import main

raise SystemExit(main())
