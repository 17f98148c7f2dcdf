"""``python -m tools.servers up|down --env-file PATH`` (see :mod:`tools.servers.cli`)."""

import sys

from tools.servers.cli import main

sys.exit(main())
