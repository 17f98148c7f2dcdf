"""``python -m benchmarks``: see :mod:`benchmarks.runner` and ``benchmarks/README.md``."""

from __future__ import annotations

from benchmarks.runner import main

raise SystemExit(main())
