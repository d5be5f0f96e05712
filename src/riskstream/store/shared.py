"""The case queue, decisions and run-state reads of a SQL store with the version-1 tables
(``cases``, ``decisions``, ``throttles``, ``rule_hits``, ``feature_values``): the DuckDB store's.

Written against ``connect()`` (``execute(sql_with_?, args)``) and ``frame(sql, args)`` only, so
a backend with the same tables can reuse it as a mixin.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import polars as pl

from riskstream.core.case import STATUS_OF_DECISION, CaseQuery, Decision, StoredCase


class SharedQueries:
    """Protocol methods over the tables both backends share (a mixin for a store class)."""

    def connect(self) -> AbstractContextManager[Any]:
        """A connection answering ``execute(sql_with_?, args)`` (the backend's)."""
        raise NotImplementedError

    def frame(self, sql: str, args: Sequence[Any] = ()) -> pl.DataFrame:
        """A read query into a Polars frame (the backend's)."""
        raise NotImplementedError

    def throttles(self) -> dict[tuple[str, str], int]:
        """``(rule, key) -> until_ms`` of ``once_per`` rules."""
        with self.connect() as con:
            rows = con.execute("SELECT rule, key, until_ms FROM throttles").fetchall()
        return {(str(r), str(k)): int(u) for r, k, u in rows}

    def rule_hits(self) -> dict[str, int]:
        """Checkpointed hit count per rule."""
        with self.connect() as con:
            rows = con.execute("SELECT rule, hits FROM rule_hits").fetchall()
        return {str(r): int(h) for r, h in rows}

    def feature_values(self, metric: str, tier: str, since: int) -> pl.DataFrame:
        """Values behind distinct features (``key, b, c``) with ``b >= since``."""
        return self.frame(
            "SELECT key, b, c FROM feature_values WHERE metric = ? AND tier = ? AND b >= ?",
            [metric, tier, since],
        )

    def find_cases(self, query: CaseQuery, limit: int, offset: int) -> tuple[int, list[StoredCase]]:
        """How many cases match ``query``, and one page of them, newest event first."""
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        for column, value in (
            ("rule", query.rule),
            ("action", query.action),
            ("status", query.status),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if query.event_time_from is not None:
            where.append("event_time >= ?")
            args.append(query.event_time_from)
        if query.event_time_to is not None:
            where.append("event_time < ?")
            args.append(query.event_time_to)
        cond = " AND ".join(where)
        with self.connect() as con:
            total = con.execute(f"SELECT count(*) FROM cases WHERE {cond}", args).fetchone()
            rows = con.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases WHERE {cond} "
                "ORDER BY event_time DESC, seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return (int(total[0]) if total else 0), [_stored_case(r) for r in rows]

    def get_case(self, case_id: str) -> StoredCase | None:
        """One case of the queue, or None."""
        with self.connect() as con:
            row = con.execute(
                f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", [case_id]
            ).fetchone()
        return _stored_case(row) if row is not None else None

    def decisions(self, case_id: str) -> list[Decision]:
        """The decisions recorded on ``case_id``, oldest first."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT decision, note, analyst, at_ms FROM decisions WHERE case_id = ? "
                "ORDER BY at_ms, rowid",
                [case_id],
            ).fetchall()
        return [
            Decision(decision=str(d), note=n, analyst=str(a), at_ms=int(at)) for d, n, a, at in rows
        ]

    def record_decision(self, case_id: str, decision: Decision) -> bool:
        """Record ``decision`` and the status it implies, in one transaction; False: no such case."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                found = con.execute("SELECT 1 FROM cases WHERE case_id = ?", [case_id]).fetchone()
                if found is None:
                    con.execute("ROLLBACK")
                    return False
                con.execute(
                    "INSERT INTO decisions (case_id, decision, note, analyst, at_ms) VALUES (?, ?, ?, ?, ?)",
                    [case_id, decision.decision, decision.note, decision.analyst, decision.at_ms],
                )
                status = STATUS_OF_DECISION.get(decision.decision)
                if status is not None:
                    con.execute("UPDATE cases SET status = ? WHERE case_id = ?", [status, case_id])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return True

    def ping(self) -> None:
        """Raise StoreError when the store cannot be opened and read."""
        with self.connect() as con:
            con.execute("SELECT 1").fetchone()


_CASE_COLUMNS = "seq, case_id, rule, action, score, event_id, event_time, created_ms, status, body"


def _stored_case(row: tuple[Any, ...]) -> StoredCase:
    seq, case_id, rule, action, score, event_id, event_time, created_ms, status, body = row
    return StoredCase(
        seq=int(seq),
        case_id=str(case_id),
        rule=str(rule),
        action=str(action),
        score=float(score),
        event_id=event_id,
        event_time=int(event_time),
        created_ms=int(created_ms or 0),
        status=str(status or "open"),
        body=str(body or ""),
    )
