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
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from cachedeco.backends.contracts.consumers import alive
from cachedeco.core.forking import redo_after_fork
from cachedeco.errors import ConfigurationError

__all__ = ["LEASE", "Spool", "open_spool"]

LEASE: Final = 10.0  # seconds after which an owner on another host that stays silent is gone
_TIMEOUT: Final = 5.0  # seconds a writer waits for SQLite's lock
_POLL: Final = 0.001  # seconds between two tries for it (on average: jittered)
_INHERITED: list[sqlite3.Connection] = []  # a forked child's copies of its parent's connections
_T = TypeVar("_T")
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


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    return "locked" in str(exc) or "busy" in str(exc)


def _retrying(attempt: Callable[[], _T]) -> _T:
    """``attempt()``, tried again every millisecond or so while another connection holds the
    lock, for up to _TIMEOUT. Our own wait rather than SQLite's: its busy handler backs off
    to sleeps of 100 ms, and under load a process that sleeps that long can lose every turn
    to the others for seconds (its callers then fail); polling this often, each process gets
    its turn soon after the lock is free."""
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(_POLL * (0.5 + random.random()))


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: the write lock taken at once (``BEGIN IMMEDIATE``, waited for
    by :func:`_retrying`), committed at the end, rolled back on an error."""
    _retrying(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a COMMIT that failed (a full disk) leaves it open too
            conn.execute("ROLLBACK")
        raise


def _into_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so: later connections find it done). Switching
    needs the file to itself: while another connection holds a lock on it (another worker
    creating the tables), SQLite says so, and this tries again."""
    def switch() -> None:
        if str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() != "wal":
            raise sqlite3.OperationalError("database is locked: could not switch to WAL mode")

    _retrying(switch)


_Row = tuple[str, str, str, bytes, bool]  # prefix, backend, ident, body, replace


class _Batch:
    """Rows that one transaction adds, and what came of it: their ids, in order."""

    __slots__ = ("led", "outcome", "rows")

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.outcome: Future[list[int]] = Future()
        self.led = False  # whether the spool's writer thread was asked to commit it


class Spool:
    """One spool file, shared by the registries and processes that name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = socket.gethostname()
        self._lock = threading.Lock()  # over the connection; this process's
        self._conn: sqlite3.Connection | None = None
        self.owner = self._name()  # this process's owner name
        self._group = threading.Condition()  # over the rows waiting to be added together
        self._filling: _Batch | None = None  # the rows that the next transaction adds
        self._writing = False  # whether a thread is adding a batch
        self._writer: ThreadPoolExecutor | None = None  # commits the batches of event loops
        redo_after_fork(self)

    def _name(self) -> str:
        """A new owner name: the host, the process and a random part (a pid is reused)."""
        return f"{self.host}:{os.getpid()}:{os.urandom(4).hex()}"

    def after_fork(self) -> None:
        """A child is an owner of its own, with its own connection, opened at its first use:
        its parent's stays open there, never used (SQLite's connections do not cross a fork,
        and closing that copy could touch the file's locks), and rows its parent's threads
        were adding are theirs."""
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        self.owner = self._name()
        self._group = threading.Condition()
        self._filling = None
        self._writing = False
        self._writer = None  # its thread is the parent's

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
        """The connection (lock held), opened when this process has none. SQLite's own busy
        wait is off (``timeout=0``): :func:`_retrying` waits instead."""
        if self._conn is not None:
            return self._conn
        with _OPENING:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                   check_same_thread=False)
            _into_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            _retrying(lambda: [conn.execute(statement) for statement in _SCHEMA])
        self._conn = conn
        return conn

    def add(self, prefix: str, backend: str, ident: str, body: bytes, replace: bool) -> int:
        """Keep one change (replacing this owner's pending one with the same ``ident`` when
        ``replace``); return its row id. Durable when this returns (``synchronous=FULL``)."""
        return self.add_many(prefix, [(backend, ident, body, replace)])[0]

    def add_many(self, prefix: str, changes: Sequence[tuple[str, str, bytes, bool]]
                 ) -> list[int]:
        """Keep changes (backend, ident, body, replace) as :meth:`add` does, in one
        transaction; return their row ids, in order.

        Group commit: the rows that this process's threads add while a transaction is under
        way wait for it, then go in the next one together (one lock and one sync for them
        all, where each would wait for the lock and sync on its own)."""
        batch, first = self._join(prefix, changes)
        self._commit(batch)
        return batch.outcome.result()[first:first + len(changes)]

    def submit_many(self, prefix: str, changes: Sequence[tuple[str, str, bytes, bool]]
                    ) -> Future[list[int]]:
        """:meth:`add_many` for an event loop, which must not wait: the rows join the next
        transaction at once, which the spool's own writer thread commits (not the loop's
        executor, which the application's blocking calls may fill); the future gives their
        row ids."""
        batch, first = self._join(prefix, changes)
        mine: Future[list[int]] = Future()

        def settle(outcome: Future[list[int]]) -> None:
            if (exc := outcome.exception()) is not None:
                mine.set_exception(exc)
            else:
                mine.set_result(outcome.result()[first:first + len(changes)])

        batch.outcome.add_done_callback(settle)
        with self._group:
            lead, batch.led = not batch.led and not batch.outcome.done(), True
        if lead:
            self._submit(batch)
        return mine

    def _join(self, prefix: str, changes: Sequence[tuple[str, str, bytes, bool]]
              ) -> tuple[_Batch, int]:
        """Add ``changes`` to the rows the next transaction adds: that batch, and where
        they start in it."""
        with self._group:
            batch = self._filling
            if batch is None:
                batch = self._filling = _Batch()
            first = len(batch.rows)
            batch.rows.extend((prefix, *change) for change in changes)
        return batch, first

    def _commit(self, batch: _Batch) -> None:
        """Once no other thread is adding a batch, add ``batch`` unless another thread did
        meanwhile. An error of the transaction is every row's (each thread of the batch
        raises it); an interruption of the thread adding it (KeyboardInterrupt in the main
        thread) is that thread's alone: the batch is left for another of its threads (or the
        spool's writer) to add, its rows the interrupted thread's too."""
        with self._group:
            while self._writing and not batch.outcome.done():
                self._group.wait()
            if batch.outcome.done():
                return
            self._writing = True
            if self._filling is batch:  # (an interrupted batch, added again, is not)
                self._filling = None
        try:
            batch.outcome.set_result(self._insert(batch.rows))
        except Exception as exc:  # in every thread of the batch, as in a Future
            batch.outcome.set_exception(exc)
        finally:
            with self._group:
                self._writing = False
                self._group.notify_all()

    def _submit(self, batch: _Batch) -> None:
        """Have the writer thread commit ``batch`` (made at first use, and again after
        :meth:`close`). Under ``_group``, held for moments only, not under the connection's
        lock, which a transaction holds while it waits for the file. Should it refuse (shut
        down by a :meth:`close` in between, or the interpreter exiting), this thread commits."""
        with self._group:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="cachedeco-spool")
            writer = self._writer
        try:
            writer.submit(self._commit, batch)
        except RuntimeError:
            self._commit(batch)

    def _insert(self, rows: list[_Row]) -> list[int]:
        """Add ``rows`` in one transaction; their ids, in order."""
        owner, ids = self.owner, []
        with self._using() as conn, _transaction(conn):
            self._seen(conn, owner)
            for prefix, backend, ident, body, replace in rows:
                if replace:
                    conn.execute("DELETE FROM changes WHERE owner = ? AND ident = ?",
                                 (owner, ident))
                row = conn.execute(
                    "INSERT INTO changes (owner, prefix, backend, ident, body) "
                    "VALUES (?, ?, ?, ?, ?)", (owner, prefix, backend, ident, body)).lastrowid
                assert row is not None
                ids.append(row)
        return ids

    def done(self, rows: Iterable[int]) -> None:
        """Forget changes that landed (one transaction, one sync, for the lot)."""
        ids = [(row,) for row in rows]
        if not ids:
            return
        with self._using() as conn, _transaction(conn):
            conn.executemany("DELETE FROM changes WHERE id = ?", ids)

    def heartbeat(self) -> None:
        """Show that this owner lives (its rows are not taken over meanwhile)."""
        with self._using() as conn, _transaction(conn):
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
            others = _retrying(lambda: conn.execute(
                "SELECT 1 FROM changes WHERE prefix = ? AND owner != ? LIMIT 1",
                (prefix, owner)).fetchone())
            if others is None:  # the usual case: nothing to look at, and no write lock taken
                return []
            with _transaction(conn):
                self._seen(conn, owner)  # listed as living: what it takes stays its own
                gone = self._gone(conn, owner)
                rows = conn.execute(
                    f"SELECT id, owner, body FROM changes WHERE prefix = ? AND owner != ? "
                    f"AND backend IN ({marks}) ORDER BY id", (prefix, owner, *names)).fetchall()
                taken = [(row, body) for row, who, body in rows if who in gone]
                conn.executemany("UPDATE changes SET owner = ? WHERE id = ?",
                                 [(owner, row) for row, _ in taken])
        return taken

    def _gone(self, conn: sqlite3.Connection, me: str) -> set[str]:
        """The owners of rows that are gone (lock held, in a transaction)."""
        living = {who: (host, pid, seen) for who, host, pid, seen in
                  conn.execute("SELECT owner, host, pid, seen FROM owners")}
        now = time.time()
        gone = set()
        for (who,) in conn.execute("SELECT DISTINCT owner FROM changes WHERE owner != ?", (me,)):
            seen = living.get(who)
            if seen is None or (seen[0] == self.host and not alive(seen[1])) or (
                    seen[0] != self.host and now - seen[2] > LEASE):
                gone.add(who)
        conn.executemany("DELETE FROM owners WHERE owner = ?", [(who,) for who in gone])
        return gone

    def release(self) -> None:
        """This owner stops (a registry closed): its rows may be taken over at once."""
        with self._using() as conn, _transaction(conn):
            conn.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))

    def close(self) -> None:
        """Stop the writer thread once it has committed what it was given, and close this
        process's connection once no thread uses it (the next use opens another of each)."""
        with self._group:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
