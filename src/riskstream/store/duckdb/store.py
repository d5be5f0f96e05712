"""The embedded store: one DuckDB file in the data dir holding buckets, positions and the case outbox.

The run process keeps the file open (``hold``); ``riskstream query`` in another process asks
it to let go and reads between checkpoints (``held.py``); both sides retry briefly on DuckDB's
file lock.
"""

from __future__ import annotations

from pathlib import Path

from riskstream.errors import StoreError
from riskstream.store.duckdb.checkpoint import Checkpoints
from riskstream.store.duckdb.lab import LabTables
from riskstream.store.duckdb.reads import Reads
from riskstream.store.duckdb.schema import migrate
from riskstream.store.duckdb.upkeep import Upkeep
from riskstream.store.lab import LabQueries
from riskstream.store.private import narrow_path, private_dir, tighten_umask
from riskstream.store.protocol import Store as StoreProtocol
from riskstream.store.shared import SharedQueries

DB_NAME = "riskstream.duckdb"


class DuckDBStore(Reads, Checkpoints, Upkeep, LabTables, SharedQueries, LabQueries):
    """Access to ``DATA_DIR/riskstream.duckdb``; every method opens, works, closes (or borrows
    the connection the process holds: ``hold``, for the engine).

    Its parts, by job: ``connection`` (opening, locking), ``schema`` (migrations), ``keys``
    (the key dictionary), ``checkpoint`` (the write transaction), ``upkeep`` (roll-up, fold,
    retention), ``reads`` and ``lab``; ``store.shared`` and ``store.lab`` hold the queries
    written once for both backends.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        read_only: bool = False,
        lock_wait_s: float = 30.0,
        keep_open: bool = False,
        hold: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.read_only = read_only
        self.lock_wait_s = lock_wait_s
        #: Read-only only: keep one connection for every call (a query service over a store no
        #: engine is writing; it holds DuckDB's file lock, so a writer in another process waits).
        self.keep_open = keep_open and read_only
        self._kept = None
        self._dict = None
        if not read_only:
            # Full event bodies live here: the dir 0700, DuckDB's own files (db, WAL) 0600.
            private_dir(self.data_dir)
            tighten_umask()
            with self.connect() as con:
                migrate(con)
            for name in (DB_NAME, DB_NAME + ".wal"):
                narrow_path(self.data_dir / name)
            if hold:
                self.hold()
        elif not self.path.exists():
            raise StoreError(
                f"no store in {str(self.data_dir)!r} (run a pipeline with --data-dir first)"
            )


#: The name this class had before the Store protocol (``store.protocol.Store``) existed.
Store = DuckDBStore


def _implements_protocol(store: DuckDBStore) -> StoreProtocol:
    """mypy checks here that the DuckDB store implements the ``Store`` protocol."""
    return store
