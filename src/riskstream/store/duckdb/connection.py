"""Opening the DuckDB file: one connection at a time per process, retrying while another
process holds DuckDB's file lock (the run process and ``riskstream query`` take turns)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from riskstream.errors import StoreError

T = TypeVar("T")


class Connection:
    """The store file and how it is opened: the base of the DuckDB store's parts."""

    path: Path
    read_only: bool
    lock_wait_s: float
    #: Read-only only: keep one connection for every call (see ``DuckDBStore``).
    keep_open: bool
    _kept: duckdb.DuckDBPyConnection | None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, retrying while another process holds the file.

        Within one process, connections to the same file are taken one at a time
        (the engine thread and the HTTP API share the file; DuckDB refuses two
        handles opened at the same moment).
        """
        with process_lock(self.path):
            try:
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
                raise StoreError(
                    f"cannot read store {str(self.path)!r}: {first_line(exc)}"
                ) from None

    shared = False

    def close(self) -> None:
        """Close the kept connection (``keep_open``), if any."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

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
    def _open(self, *, close: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.IOException as exc:
                text = str(exc).lower()
                retry = "lock" in text or "file handle conflict" in text
                if not retry or time.monotonic() > deadline:
                    raise StoreError(
                        f"cannot open store {str(self.path)!r}: {first_line(exc)}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot open store {str(self.path)!r}: {first_line(exc)}"
                ) from None
        try:
            yield con
        finally:
            if close:
                con.close()


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def process_lock(path: Path) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.RLock())


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
