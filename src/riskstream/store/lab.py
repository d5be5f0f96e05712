"""The rule lab's tables in the store: labels and rule versions (created on first use).

Functions take an open DuckDB connection (``Store.connect()``, or the API's ``ctx.db()``
which also holds the engine lock), so callers decide the locking.
"""

from __future__ import annotations

from typing import Any

import duckdb
import orjson
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


def read_labels(con: Any) -> pl.DataFrame:
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
    rows = con.execute(sql).fetchall()
    return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")


def case_hits(con: Any, from_ms: int | None, to_ms: int | None) -> pl.DataFrame:
    """(rule, event_id) of the live cases with event time in the range (for overlaps)."""
    sql = "SELECT DISTINCT rule, event_id FROM cases WHERE 1 = 1"
    args: list[Any] = []
    if from_ms is not None:
        sql += " AND event_time >= ?"
        args.append(from_ms)
    if to_ms is not None:
        sql += " AND event_time < ?"
        args.append(to_ms)
    rows = con.execute(sql, args).fetchall()
    return pl.DataFrame(rows, schema={"rule": pl.String, "event_id": pl.String}, orient="row")


# ---- rule versions ------------------------------------------------------------------------

_VERSION_COLS = (
    "rule, version, status, body, author, at_ms, approved_by, approved_ms, summary, diff, note"
)


def versions(con: Any, rule: str) -> list[dict[str, Any]]:
    """Every version of ``rule``, newest first (``body``/``summary`` decoded from JSON)."""
    ensure_tables(con)
    rows = con.execute(
        f"SELECT {_VERSION_COLS} FROM rule_versions WHERE rule = ? ORDER BY version DESC", [rule]
    ).fetchall()
    keys = [k.strip() for k in _VERSION_COLS.split(",")]
    out = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        item["body"] = orjson.loads(item["body"]) if item["body"] else {}
        item["summary"] = orjson.loads(item["summary"]) if item["summary"] else None
        out.append(item)
    return out


def add_version(
    con: Any,
    rule: str,
    body: dict[str, Any],
    *,
    author: str,
    status: str,
    at_ms: int,
    summary: dict[str, Any] | None = None,
    diff: str = "",
    note: str = "",
) -> int:
    """Append a version of ``rule``; returns its number (1, 2, ...)."""
    ensure_tables(con)
    row = con.execute(
        "SELECT coalesce(max(version), 0) FROM rule_versions WHERE rule = ?", [rule]
    ).fetchone()
    version = int(row[0]) + 1
    con.execute(
        f"INSERT INTO rule_versions ({_VERSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            rule,
            version,
            status,
            orjson.dumps(body).decode(),
            author,
            at_ms,
            None,
            None,
            orjson.dumps(summary).decode() if summary is not None else None,
            diff,
            note,
        ],
    )
    return version


def set_status(
    con: Any,
    rule: str,
    version: int,
    status: str,
    *,
    approved_by: str | None = None,
    approved_ms: int | None = None,
) -> None:
    """Change one version's status (and who approved it, when)."""
    if status == "live":
        con.execute(
            "UPDATE rule_versions SET status = 'superseded' WHERE rule = ? AND status = 'live'",
            [rule],
        )
    con.execute(
        "UPDATE rule_versions SET status = ?, approved_by = coalesce(?, approved_by), "
        "approved_ms = coalesce(?, approved_ms) WHERE rule = ? AND version = ?",
        [status, approved_by, approved_ms, rule, version],
    )
