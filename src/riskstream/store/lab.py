"""The rule lab's tables in the store: labels and rule versions (created on first use).

Functions take an open DuckDB connection (``Store.connect()``, or the API's ``ctx.db()``
which also holds the engine lock), so callers decide the locking.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

_TABLES = (
    """CREATE TABLE IF NOT EXISTS labels (
        event_id VARCHAR, label TINYINT, source VARCHAR, at_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS rule_versions (
        rule VARCHAR, version INTEGER, status VARCHAR, body VARCHAR, author VARCHAR,
        at_ms BIGINT, approved_by VARCHAR, approved_ms BIGINT, summary VARCHAR,
        diff VARCHAR, note VARCHAR, PRIMARY KEY (rule, version))""",
)

#: Analysts' case decisions that are labels.
DECISION_LABELS = {"confirmed_fraud": 1, "false_positive": 0}

LABEL_SCHEMA = pl.Schema({"event_id": pl.String, "label": pl.Int8})


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the lab's tables when missing."""
    for stmt in _TABLES:
        con.execute(stmt)


def insert_labels(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, source: str, at_ms: int
) -> int:
    """Append ``frame`` (event_id, label 0/1) as labels from ``source``; returns the count."""
    ensure_tables(con)
    if not frame.height:
        return 0
    rows = frame.select(
        pl.col("event_id").cast(pl.String),
        pl.col("label").cast(pl.Int8),
        pl.lit(source, pl.String).alias("source"),
        pl.lit(at_ms, pl.Int64).alias("at_ms"),
    )
    con.register("_labels", rows.to_arrow())
    try:
        con.execute("INSERT INTO labels SELECT event_id, label, source, at_ms FROM _labels")
    finally:
        con.unregister("_labels")
    return rows.height


def read_labels(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The latest label per event id: imported labels and analysts' decisions (by time).

    Works on a read-only connection to a store without the lab's tables yet.
    """
    have = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'labels'"
        ).fetchall()
    }
    imported = (
        "SELECT event_id, label, at_ms FROM labels"
        if "labels" in have
        else "SELECT NULL::VARCHAR AS event_id, NULL::TINYINT AS label, NULL::BIGINT AS at_ms WHERE false"
    )
    sql = f"""
        WITH l AS (
            {imported}
            UNION ALL
            SELECT c.event_id,
                   CASE d.decision WHEN 'confirmed_fraud' THEN 1 ELSE 0 END::TINYINT,
                   d.at_ms
            FROM decisions d JOIN cases c ON c.case_id = d.case_id
            WHERE d.decision IN ('confirmed_fraud', 'false_positive')
        )
        SELECT event_id, arg_max(label, at_ms) AS label FROM l GROUP BY event_id
    """
    got = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(got, pl.DataFrame)
    return got.cast(LABEL_SCHEMA) if got.height else pl.DataFrame(schema=LABEL_SCHEMA)


def case_hits(
    con: duckdb.DuckDBPyConnection, from_ms: int | None, to_ms: int | None
) -> pl.DataFrame:
    """(rule, event_id) of the live cases with event time in the range (for overlaps)."""
    sql = "SELECT DISTINCT rule, event_id FROM cases WHERE 1 = 1"
    args: list[Any] = []
    if from_ms is not None:
        sql += " AND event_time >= ?"
        args.append(from_ms)
    if to_ms is not None:
        sql += " AND event_time < ?"
        args.append(to_ms)
    got = pl.from_arrow(con.sql(sql, params=args).to_arrow_table())
    assert isinstance(got, pl.DataFrame)
    return got
