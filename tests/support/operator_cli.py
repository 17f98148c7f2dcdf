"""The operator's command line (``python -m cachedeco``) run as a subprocess, without the
test environment's ``CACHEDECO_*`` variables."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["cli"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cachedeco ARGS`` (60 s at most); its status, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDECO_")}
    return subprocess.run([sys.executable, "-m", "cachedeco", *args], capture_output=True,
                          text=True, timeout=60, check=False, stdin=subprocess.DEVNULL, env=env)
