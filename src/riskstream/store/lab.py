"""The rule lab's tables: labels and rule versions, written once for both backends.

A mixin over ``select`` and the backend's transaction (``_in_transaction``), like
:class:`~riskstream.store.shared.SharedQueries`. PostgreSQL has the tables from its
migrations; DuckDB creates them on first write (``_ensure_lab_tables``) and reads a store
without them as empty (``_has_lab_table``). Each backend bulk-loads labels its own way
(``add_labels``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import polars as pl

from riskstream.core.lab import LABEL_SCHEMA, RuleVersion

T = TypeVar("T")

_VERSION_COLS = (
    "rule, version, status, body, author, at_ms, approved_by, approved_ms, summary, diff, note"
)


class LabQueries:
    """Labels and rule versions (a mixin for a store class)."""

    def select(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read query written with ``?`` placeholders (the backend's)."""
        raise NotImplementedError

    def _in_transaction(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(con)`` in one transaction; ``con.execute(sql_with_?, args)`` (the backend's)."""
        raise NotImplementedError

    def _has_lab_table(self, table: str) -> bool:
        """Whether the lab's ``table`` exists yet (PostgreSQL: always, from its migrations)."""
        return True

    def _ensure_lab_tables(self, con: Any) -> None:
        """Create the lab's tables when missing (DuckDB; PostgreSQL's migrations have them)."""

    def _lock_rule_versions(self, con: Any, rule: str) -> None:
        """Serialize numbering a new version of ``rule`` between writers (PostgreSQL)."""

    # ---- labels --------------------------------------------------------------------------

    def labels(self) -> pl.DataFrame:
        """The latest label per event id (``event_id``, ``label``: 1 fraud, 0 not), from
        imported labels and analysts' decisions (confirmed_fraud, false_positive), by time."""
        imported = (
            "SELECT event_id, label, at_ms FROM labels"
            if self._has_lab_table("labels")
            else "SELECT event_id, 0 AS label, 0 AS at_ms FROM cases WHERE FALSE"
        )
        rows = self.select(
            f"""SELECT DISTINCT ON (event_id) event_id, label FROM (
                {imported}
                UNION ALL
                SELECT c.event_id, CASE d.decision WHEN 'confirmed_fraud' THEN 1 ELSE 0 END,
                       d.at_ms
                FROM decisions d JOIN cases c ON c.case_id = d.case_id
                WHERE d.decision IN ('confirmed_fraud', 'false_positive')
            ) l ORDER BY event_id, at_ms DESC, label DESC"""
        )
        return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")

    def case_hits(self, from_ms: int | None, to_ms: int | None) -> pl.DataFrame:
        """``rule, event_id`` of the stored cases with event time in ``[from_ms, to_ms)``
        (either bound optional): what the live rules raised, for a backtest's overlaps."""
        sql = "SELECT DISTINCT rule, event_id FROM cases WHERE TRUE"
        args: list[Any] = []
        if from_ms is not None:
            sql += " AND event_time >= ?"
            args.append(from_ms)
        if to_ms is not None:
            sql += " AND event_time < ?"
            args.append(to_ms)
        return pl.DataFrame(
            self.select(sql, args), schema={"rule": pl.String, "event_id": pl.String}, orient="row"
        )

    # ---- rule versions -------------------------------------------------------------------

    def rule_versions(self, rule: str) -> list[RuleVersion]:
        """Every version of ``rule``, newest first."""
        if not self._has_lab_table("rule_versions"):
            return []
        rows = self.select(
            f"SELECT {_VERSION_COLS} FROM rule_versions WHERE rule = ? ORDER BY version DESC",
            [rule],
        )
        return [_version(row) for row in rows]

    def add_rule_version(
        self,
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
        """Append a version of ``rule`` (numbered 1, 2, ...); its number."""
        values = [
            status,
            orjson.dumps(body).decode(),
            author,
            at_ms,
            None,
            None,
            orjson.dumps(summary).decode() if summary is not None else None,
            diff,
            note,
        ]

        def add(con: Any) -> int:
            self._ensure_lab_tables(con)
            self._lock_rule_versions(con, rule)
            row = con.execute(
                "SELECT coalesce(max(version), 0) FROM rule_versions WHERE rule = ?", [rule]
            ).fetchone()
            version = int(row[0]) + 1
            con.execute(
                f"INSERT INTO rule_versions ({_VERSION_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [rule, version, *values],
            )
            return version

        return self._in_transaction("recording a rule version", add)

    def set_rule_status(
        self,
        rule: str,
        version: int,
        status: str,
        *,
        approved_by: str | None = None,
        approved_ms: int | None = None,
    ) -> None:
        """Change one version's status (and who approved it, when); a version going ``live``
        supersedes the live one."""

        def update(con: Any) -> None:
            self._ensure_lab_tables(con)
            if status == "live":
                con.execute(
                    "UPDATE rule_versions SET status = 'superseded' "
                    "WHERE rule = ? AND status = 'live'",
                    [rule],
                )
            con.execute(
                "UPDATE rule_versions SET status = ?, approved_by = coalesce(?, approved_by), "
                "approved_ms = coalesce(?, approved_ms) WHERE rule = ? AND version = ?",
                [status, approved_by, approved_ms, rule, version],
            )

        self._in_transaction("recording a rule status", update)


def _version(row: tuple[Any, ...]) -> RuleVersion:
    rule, version, status, body, author, at_ms, by, by_ms, summary, diff, note = row
    return RuleVersion(
        rule=str(rule),
        version=int(version),
        status=str(status),
        body=orjson.loads(body) if body else {},
        author=str(author),
        at_ms=int(at_ms),
        approved_by=str(by) if by is not None else None,
        approved_ms=int(by_ms) if by_ms is not None else None,
        summary=orjson.loads(summary) if summary else None,
        diff=str(diff or ""),
        note=str(note or ""),
    )


def label_rows(frame: pl.DataFrame, source: str, at_ms: int, label: pl.DataType) -> pl.DataFrame:
    """``frame`` (``event_id``, ``label``) as rows of the ``labels`` table (``label`` cast to the
    backend's integer type)."""
    return frame.select(
        pl.col("event_id").cast(pl.String),
        pl.col("label").cast(label),
        pl.lit(source, pl.String).alias("source"),
        pl.lit(at_ms, pl.Int64).alias("at_ms"),
    )
