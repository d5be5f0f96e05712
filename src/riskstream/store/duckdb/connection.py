"""Opening the DuckDB file: one connection at a time per process, retrying while another
process holds DuckDB's file lock (the run process and ``riskstream query`` take turns).

An engine keeps its connection open (``held.py``): every store object of its process then
borrows a cursor of it, and a reader in another process asks it to let go.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from riskstream.errors import StoreError
from riskstream.store.duckdb.held import MEMORY_LIMIT, HeldConnection, ask_to_read

T = TypeVar("T")


class Connection:
    """The store file and how it is opened: the base of the DuckDB store's parts."""

    path: Path
    read_only: bool
    lock_wait_s: float
    #: Read-only only: keep one connection for every call (see ``DuckDBStore``).
    keep_open: bool
    _kept: duckdb.DuckDBPyConnection | None
    #: This store object started the process's held connection (:meth:`hold`).
    _holding = False

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, retrying while another process holds the file.

        While the process holds the file (:meth:`hold`), a cursor of the kept connection:
        calls of several threads run side by side (the engine's case commits beside the
        writer's bulk checkpoint; they write disjoint tables). Otherwise connections to the
        same file are taken one at a time per process (DuckDB refuses a read-only and a
        read-write handle to one file in one process).
        """
        try:
            held = _HELD.get(_key(self.path))
            cursor = held.lend() if held is not None else None
            if held is not None and cursor is None and held.active():
                with process_lock(self.path):
                    if held.con is None and held.active():
                        # read-write, whichever store object of the process asks first
                        with self._open(close=False, read_only=False) as con:
                            held.keep(con)
                cursor = held.lend()
            if held is not None and cursor is not None:
                try:
                    yield cursor
                finally:
                    held.give_back(cursor)
                return
            with process_lock(self.path):
                if self.keep_open:
                    if self._kept is None:
                        with self._open(close=False) as con:
                            self._kept = con
                    yield self._kept
                    return
                with self._open() as con:
                    yield con
        except duckdb.Error as exc:
            # A store that opens but cannot be read (a truncated or damaged file): one
            # line naming the file, never an internal error.
            raise StoreError(f"cannot read store {str(self.path)!r}: {first_line(exc)}") from None

    shared = False

    @property
    def concurrent_commits(self) -> bool:
        """Cursors of the held connection run side by side (while no reader is let in)."""
        held = _HELD.get(_key(self.path))
        return held is not None and held.active()

    def hold(self) -> None:
        """Keep a connection to the file open until :meth:`close` (the engine's store): every
        store object of this process borrows it; readers elsewhere ask for turns."""
        key = _key(self.path)
        with process_lock(self.path), _LOCKS_GUARD:
            if key not in _HELD:
                _HELD[key] = HeldConnection(self.path)
                self._holding = True

    def close(self) -> None:
        """Close the kept connection (``keep_open``, :meth:`hold`), if any."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        if self._holding:
            self._holding = False
            with _LOCKS_GUARD:
                held = _HELD.pop(_key(self.path), None)
            if held is not None:
                held.close()

    def _in_transaction(self, what: str, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work(con)`` in one transaction: it commits, or rolls back and raises."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                out = work(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return out

    def ping(self) -> None:
        """Raise StoreError when the store cannot be opened and read."""
        with self.connect() as con:
            con.execute("SELECT 1").fetchone()

    @contextmanager
    def _open(
        self, *, close: bool = True, read_only: bool | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.005
        con_read_only = self.read_only if read_only is None else read_only
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=con_read_only)
                break
            except duckdb.IOException as exc:
                text = str(exc).lower()
                other_process = "lock" in text and "file handle conflict" not in text
                retry = other_process or "file handle conflict" in text
                if not retry or time.monotonic() > deadline:
                    raise StoreError(
                        f"cannot open store {str(self.path)!r}: {first_line(exc)}"
                    ) from None
                if other_process:
                    ask_to_read(self.path)  # an engine holding the file lets go (held.py)
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot open store {str(self.path)!r}: {first_line(exc)}"
                ) from None
        if not con_read_only:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        try:
            yield con
        finally:
            if close:
                con.close()


_LOCKS: dict[str, threading.RLock] = {}
_HELD: dict[str, HeldConnection] = {}
_LOCKS_GUARD = threading.Lock()


@atexit.register
def _close_held() -> None:
    """A process leaving without closing its store (an error on the way out) still closes
    the file cleanly, and DuckDB's bindings print no leak report after the one-line error."""
    with _LOCKS_GUARD:
        held = list(_HELD.values())
        _HELD.clear()
    for h in held:
        h.close()


def _key(path: Path) -> str:
    return str(path.resolve())


def process_lock(path: Path) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(_key(path), threading.RLock())


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
