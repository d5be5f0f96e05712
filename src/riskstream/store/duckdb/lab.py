"""The rule lab's tables in the DuckDB store: created on first write, bulk label loads.

The queries are :class:`~riskstream.store.lab.LabQueries`'; a store written before the lab
existed has no lab tables, and a read-only handle reads them as empty.
"""

from __future__ import annotations

import duckdb
import polars as pl

from riskstream.store.duckdb.connection import Connection
from riskstream.store.lab import label_rows

_TABLES = (
    """CREATE TABLE IF NOT EXISTS labels (
        event_id VARCHAR, label TINYINT, source VARCHAR, at_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS rule_versions (
        rule VARCHAR, version INTEGER, status VARCHAR, body VARCHAR, author VARCHAR,
        at_ms BIGINT, approved_by VARCHAR, approved_ms BIGINT, summary VARCHAR,
        diff VARCHAR, note VARCHAR, PRIMARY KEY (rule, version))""",
)


class LabTables(Connection):
    """DuckDB's side of the lab's tables."""

    def _has_lab_table(self, table: str) -> bool:
        with self.connect() as con:
            row = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
        return bool(row and row[0])

    def _ensure_lab_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        for stmt in _TABLES:
            con.execute(stmt)

    def add_labels(self, frame: pl.DataFrame, source: str, at_ms: int) -> int:
        """Append ``frame`` (``event_id``, ``label`` 0/1) as labels from ``source``; the count."""
        rows = label_rows(frame, source, at_ms, pl.Int8())

        def load(con: duckdb.DuckDBPyConnection) -> int:
            self._ensure_lab_tables(con)
            if not rows.height:
                return 0
            con.register("_labels", rows.to_arrow())
            try:
                con.execute("INSERT INTO labels SELECT event_id, label, source, at_ms FROM _labels")
            finally:
                con.unregister("_labels")
            return rows.height

        return self._in_transaction("importing labels", load)
