"""The spool: a local SQLite file (WAL mode) that keeps what could not reach a backend, so a
process restarted during an outage, or the next one started with the same file, delivers it.

One row per pending change (an entry to drop, a tag to invalidate, a write-behind record),
owned by the process that wrote it. Several processes may share one file: every write is a
short transaction (SQLite's locking), and rows are taken over (*adopted*) in a transaction,
only from owners that are gone: a process of this host that no longer runs, a registry that
was closed, or an owner elsewhere that has not shown signs of life for ``LEASE`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from cachedeco.core.forking import redo_after_fork
from cachedeco.errors import ConfigurationError

__all__ = ["LEASE", "Spool", "open_spool"]

LEASE: Final = 10.0  # seconds after which an owner on another host that stays silent is gone
_TIMEOUT: Final = 5.0  # seconds a writer waits for SQLite's lock
_OPENING = threading.Lock()  # one connection made at a time (made anew in a forked child)


def _after_fork() -> None:
    """A child forked while a thread of its parent held ``_OPENING`` would wait for it."""
    global _OPENING
    _OPENING = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "owner TEXT NOT NULL, prefix TEXT NOT NULL, backend TEXT NOT NULL, ident TEXT NOT NULL, "
    "body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_owner ON changes (owner, ident)",
    "CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, host TEXT NOT NULL, "
    "pid INTEGER NOT NULL, seen REAL NOT NULL)",
)


def open_spool(path: object) -> Spool:
    """A spool at ``path``, created if need be; ConfigurationError when it cannot be a file."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"spool must be a file path, not {path!r}")
    where = Path(path)
    if where.is_dir():
        raise ConfigurationError(f"spool={str(where)!r} is a directory: give a file path")
    if not where.parent.is_dir():
        raise ConfigurationError(f"spool={str(where)!r}: its directory does not exist")
    spool = Spool(where)
    try:
        spool.connection()
    except sqlite3.Error as exc:
        raise ConfigurationError(f"spool={str(where)!r} cannot be opened as an SQLite "
                                 f"file: {exc}") from exc
    return spool


def _into_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so: later connections find it done). Switching
    needs the file to itself, and SQLite answers "database is locked" at once, without its
    busy wait, while another connection holds a write lock on it (another worker creating the
    tables): so workers that open a new spool at the same moment try again, up to _TIMEOUT."""
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked: could not switch to WAL mode")
        time.sleep(0.005)


def _alive(pid: int) -> bool:
    """Whether a process of this host runs with ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """One spool file, shared by the registries and processes that name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = socket.gethostname()
        self._lock = threading.Lock()  # over the connection; this process's
        self._conn: tuple[int, sqlite3.Connection] | None = None
        self._owner = (0, "")
        redo_after_fork(self)  # a lock of its own in a child; the connection is opened
        # again at its first use there (its pid differs)

    @property
    def owner(self) -> str:
        """This process's owner name (a forked child gets its own)."""
        pid = os.getpid()
        if self._owner[0] != pid:
            self._owner = (pid, f"{self.host}:{pid}:{os.urandom(4).hex()}")
        return self._owner[1]

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, used by one thread at a time: taken under the lock, so that
        :meth:`close` never closes it under another thread's statement."""
        with self._lock:
            yield self._connect()

    def connection(self) -> sqlite3.Connection:
        """This process's connection (made again in a forked child, or after
        :meth:`close`); schema made once."""
        with self._lock:
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        """The connection (lock held), opened when this process has none."""
        pid = os.getpid()
        if self._conn is not None and self._conn[0] == pid:
            return self._conn[1]
        with _OPENING:
            conn = sqlite3.connect(self.path, timeout=_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
            _into_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                conn.execute(statement)
        self._conn = (pid, conn)
        return conn

    def add(self, prefix: str, backend: str, ident: str, body: bytes, replace: bool) -> int:
        """Keep one change (replacing this owner's pending one with the same ``ident`` when
        ``replace``); return its row id. Durable when this returns (``synchronous=FULL``)."""
        owner = self.owner
        with self._using() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._seen(conn, owner)
                if replace:
                    conn.execute("DELETE FROM changes WHERE owner = ? AND ident = ?",
                                 (owner, ident))
                row = conn.execute(
                    "INSERT INTO changes (owner, prefix, backend, ident, body) "
                    "VALUES (?, ?, ?, ?, ?)", (owner, prefix, backend, ident, body)).lastrowid
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        assert row is not None
        return row

    def done(self, rows: Iterable[int]) -> None:
        """Forget changes that landed."""
        ids = [(row,) for row in rows]
        if not ids:
            return
        with self._using() as conn:
            conn.execute("BEGIN IMMEDIATE")  # one transaction (one sync) for the lot
            try:
                conn.executemany("DELETE FROM changes WHERE id = ?", ids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def heartbeat(self) -> None:
        """Show that this owner lives (its rows are not taken over meanwhile)."""
        with self._using() as conn:
            self._seen(conn, self.owner)

    def _seen(self, conn: sqlite3.Connection, owner: str) -> None:
        conn.execute("INSERT INTO owners (owner, host, pid, seen) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen",
                     (owner, self.host, os.getpid(), time.time()))

    def adopt(self, prefix: str, backends: Iterable[str]) -> list[tuple[int, bytes]]:
        """Take over the rows under ``prefix`` for ``backends`` whose owners are gone, in one
        transaction; return them (id, body) in the order they were written."""
        owner = self.owner
        names = sorted(set(backends))
        marks = ",".join("?" * len(names))
        with self._using() as conn:
            others = conn.execute("SELECT 1 FROM changes WHERE prefix = ? AND owner != ? LIMIT 1",
                                  (prefix, owner)).fetchone()
            if others is None:  # the usual case: nothing to look at, and no write lock taken
                return []
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._seen(conn, owner)  # listed as living: what it takes stays its own
                gone = self._gone(conn, owner)
                rows = conn.execute(
                    f"SELECT id, owner, body FROM changes WHERE prefix = ? AND owner != ? "
                    f"AND backend IN ({marks}) ORDER BY id", (prefix, owner, *names)).fetchall()
                taken = [(row, body) for row, who, body in rows if who in gone]
                conn.executemany("UPDATE changes SET owner = ? WHERE id = ?",
                                 [(owner, row) for row, _ in taken])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return taken

    def _gone(self, conn: sqlite3.Connection, me: str) -> set[str]:
        """The owners of rows that are gone (lock held, in a transaction)."""
        living = {who: (host, pid, seen) for who, host, pid, seen in
                  conn.execute("SELECT owner, host, pid, seen FROM owners")}
        now = time.time()
        gone = set()
        for (who,) in conn.execute("SELECT DISTINCT owner FROM changes WHERE owner != ?", (me,)):
            seen = living.get(who)
            if seen is None or (seen[0] == self.host and not _alive(seen[1])) or (
                    seen[0] != self.host and now - seen[2] > LEASE):
                gone.add(who)
        conn.executemany("DELETE FROM owners WHERE owner = ?", [(who,) for who in gone])
        return gone

    def release(self) -> None:
        """This owner stops (a registry closed): its rows may be taken over at once."""
        with self._using() as conn:
            conn.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))

    def close(self) -> None:
        """Close this process's connection, once no thread uses it (the next use opens
        another)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and conn[0] == os.getpid():
                conn[1].close()
