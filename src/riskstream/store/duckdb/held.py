"""The engine's kept DuckDB connection, and how it yields the file to readers in other processes.

Opening and closing the store file cost the checkpoint writer about half its time (issue 17:
open, then DuckDB's checkpoint-on-close, at every write). The engine therefore keeps one
connection open while it runs; every store object of the process borrows a cursor of it.

A kept connection holds DuckDB's file lock for good, and ``riskstream query`` (or a
``riskstream serve`` in another process) must still read while ``run`` runs. A reader that
finds the file locked touches ``<store>.readers`` (:func:`ask_to_read`) while it retries; a
watcher thread in the engine sees the touch within :data:`POLL_S`, closes the kept connection
(between two store calls) and stays *polite* for :data:`GRACE_S` after the last touch:
meanwhile every store call opens and closes the file, as readers expect, so both sides take
turns on the lock. Then the connection is kept again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb

#: How often the engine looks for readers' requests (a stat() call).
POLL_S = 0.05
#: How long after a reader's last request the engine keeps opening and closing per call.
GRACE_S = 2.0
#: DuckDB's memory for a writing connection (its default is 80% of RAM, which a kept
#: connection fills with cached blocks, and which let one fold of the 10M-event store add
#: ~850 MiB to the engine's peak). Upkeep works in key-id slices that fit; measured on the
#: 1.5M-event store: the fold adds +206 MiB at 128MB, +333 at 256MB, +353 unlimited, no slower.
MEMORY_LIMIT = "256MB"


def request_path(db: Path) -> Path:
    """The file readers touch to ask the engine for the store (next to the DuckDB file)."""
    return db.with_name(db.name + ".readers")


def ask_to_read(db: Path) -> None:
    """Ask the process holding ``db`` to let go of it (best effort: a read-only data dir
    just means the reader waits for the engine to stop)."""
    path = request_path(db)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.utime(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class HeldConnection:
    """One read-write connection kept open for a process, lent out as cursors.

    Cursors are independent DuckDB connections to the one open database, so threads use
    them side by side (DuckDB's MVCC; the engine's writers touch disjoint tables). To close,
    new loans are refused first, then the loans out are waited for.
    """

    def __init__(self, db: Path) -> None:
        self.db = db
        self._request = request_path(db)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._guard = threading.Condition()
        self._users = 0
        self._polite_until = 0.0
        self._seen = self._mtime()
        self._stop = threading.Event()
        #: Times the kept connection was given up for a reader (tests, progress).
        self.yields = 0
        self._watcher = threading.Thread(
            target=self._watch, name="riskstream-store-readers", daemon=True
        )
        self._watcher.start()

    def active(self) -> bool:
        """Whether store calls use the kept connection now (not while readers are let in)."""
        return time.monotonic() >= self._polite_until and not self._stop.is_set()

    @property
    def con(self) -> duckdb.DuckDBPyConnection | None:
        """The kept connection, if open."""
        return self._con

    def keep(self, con: duckdb.DuckDBPyConnection) -> None:
        """Keep ``con`` (opened by the caller, who retries on the file lock)."""
        with self._guard:
            self._con = con

    def lend(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor of the kept connection, or None (closed, or readers are being let in:
        the caller opens the file itself). Return it with :meth:`give_back`."""
        with self._guard:
            if self._con is None or not self.active():
                return None
            self._users += 1
            try:
                return self._con.cursor()
            except BaseException:
                self._users -= 1
                raise

    def give_back(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Close a cursor from :meth:`lend`."""
        try:
            cursor.close()
        finally:
            with self._guard:
                self._users -= 1
                self._guard.notify_all()

    def close(self) -> None:
        """Stop watching and close the connection (the engine is done with the store)."""
        self._stop.set()
        self._release()
        self._watcher.join(timeout=1)

    def _release(self) -> None:
        """Close the connection once no cursor is out (new loans are refused by now)."""
        with self._guard:
            while self._users:
                self._guard.wait()
            con, self._con = self._con, None
        if con is not None:
            con.close()
            self.yields += not self._stop.is_set()

    def _mtime(self) -> float:
        try:
            return self._request.stat().st_mtime
        except OSError:
            return 0.0

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            seen = self._mtime()
            if seen == self._seen:
                continue
            self._seen = seen
            with self._guard:
                self._polite_until = time.monotonic() + GRACE_S
            self._release()
