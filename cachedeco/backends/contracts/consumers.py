"""Write-behind consumer names: whose batch is in flight, and whether its process is gone.

A consumer's name is ``host:pid:random:namespace``: the host's name, the process id, four
random bytes (a pid used again later names another consumer) and its pid namespace, told by
the kernel's boot id and the namespace's inode (machines given one host name each boot with
another id; containers that share a host name, as with ``network_mode: host``, do not share
pids). A consumer of this host and pid namespace whose process no longer runs holds its
batch for nobody: the next take claims it at once, not after ``claim_after`` (a process that
exits while Redis is down leaves its flushed batch unacknowledged, and one batch in flight
per queue means it held every process's records until then).
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

__all__ = ["alive", "consumer_name", "gone_here"]


@lru_cache(maxsize=1)
def _namespace() -> str:
    """This process's pid namespace ("" where it cannot be told: no claim is then early)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            booted = boot.read().strip().replace("-", "")
        inode = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{booted}-{inode}" if booted else ""


def consumer_name() -> str:
    """A new consumer name for this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}:{_namespace()}"


def gone_here(name: str) -> bool:
    """Whether ``name`` is a consumer of this host and pid namespace whose process is gone
    (False for any other: another host's, or a name of an older form)."""
    parts = name.rsplit(":", 3)
    if len(parts) != 4 or not parts[3] or not parts[1].isdigit():
        return False
    host, pid, _, namespace = parts
    if namespace != _namespace() or host != socket.gethostname():
        return False
    return not alive(int(pid))


def alive(pid: int) -> bool:
    """Whether a process of this host (and pid namespace) runs with ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True
