"""Write-behind consumer names: a consumer of this host and pid namespace whose process is
gone is known gone; any other (alive, another host's, another namespace's, an older name
form) is not, and waits for ``claim_after`` as before."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from cachedeco.backends.contracts.consumers import consumer_name, gone_here


def _ended_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_a_consumer_whose_process_ended_is_gone_and_a_living_one_is_not() -> None:
    mine = consumer_name()
    host, pid, random, namespace = mine.rsplit(":", 3)
    assert (host, int(pid), len(random)) == (socket.gethostname(), os.getpid(), 8)
    assert not gone_here(mine)
    ended = _ended_pid()
    assert gone_here(f"{host}:{ended}:{random}:{namespace}")


def test_names_of_other_hosts_namespaces_and_older_forms_are_never_gone() -> None:
    host, _, random, namespace = consumer_name().rsplit(":", 3)
    ended = _ended_pid()
    assert not gone_here(f"{host}x:{ended}:{random}:{namespace}")  # another host
    assert not gone_here(f"{host}:{ended}:{random}:{namespace}1")  # another pid namespace
    assert not gone_here(f"{host}:{ended}:{random}:")  # a namespace it could not tell
    assert not gone_here(f"{host}:{ended}:{random}")  # the form before namespaces
    assert not gone_here("")
