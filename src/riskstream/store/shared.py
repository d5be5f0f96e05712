"""Protocol methods written once for both backends, over the tables they share by name and
meaning (``buckets``, ``cases``, ``decisions``, ``throttles``, ``rule_hits``,
``feature_values``): the case queue, decisions, run-state and bucket reads.

A mixin written against ``select``/``frame`` (``?`` placeholders; PostgreSQL translates them)
and the backend's ``_in_transaction``; DuckDB and PostgreSQL each supply those three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import polars as pl

from riskstream.core.case import STATUS_OF_DECISION, Case, CaseQuery, Decision, StoredCase

T = TypeVar("T")


class SharedQueries:
    """Protocol methods over the tables both backends share (a mixin for a store class)."""

    #: Appended to the read that finds a case before a decision (PostgreSQL locks the row;
    #: DuckDB has one writer and no row locks).
    _ROW_LOCK = ""

    def select(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read query written with ``?`` placeholders (the backend's)."""
        raise NotImplementedError

    def frame(self, sql: str, args: Sequence[Any] = ()) -> pl.DataFrame:
        """A read query into a Polars frame (the backend's)."""
        raise NotImplementedError

    def _in_transaction(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(con)`` in one transaction; ``con.execute(sql_with_?, args)`` (the backend's)."""
        raise NotImplementedError

    def throttles(self) -> dict[tuple[str, str], int]:
        """``(rule, key) -> until_ms`` of ``once_per`` rules."""
        rows = self.select("SELECT rule, key, until_ms FROM throttles")
        return {(str(r), str(k)): int(u) for r, k, u in rows}

    def rule_hits(self) -> dict[str, int]:
        """Checkpointed hit count per rule."""
        return {str(r): int(h) for r, h in self.select("SELECT rule, hits FROM rule_hits")}

    def buckets(
        self, metric: str, tier: str, key: str | None, start_from: int, start_to: int
    ) -> pl.DataFrame:
        """Numeric partials of ``metric`` at ``tier`` with start in [start_from, start_to)."""
        sql = (
            "SELECT key, start, count, sum, min, max, m2 FROM buckets "
            "WHERE metric = ? AND tier = ? AND start >= ? AND start < ?"
        )
        args: list[Any] = [metric, tier, start_from, start_to]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        return self.frame(sql, args)

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
        total = self.select(f"SELECT count(*) FROM cases WHERE {cond}", args)
        rows = self.select(
            f"SELECT {_CASE_COLUMNS} FROM cases WHERE {cond} "
            "ORDER BY event_time DESC, seq DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return (int(total[0][0]) if total else 0), [_stored_case(r) for r in rows]

    def get_case(self, case_id: str) -> StoredCase | None:
        """One case of the queue, or None."""
        rows = self.select(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = ?", [case_id])
        return _stored_case(rows[0]) if rows else None

    def decisions(self, case_id: str) -> list[Decision]:
        """The decisions recorded on ``case_id``, oldest first."""
        rows = self.select(
            "SELECT decision, note, analyst, at_ms FROM decisions WHERE case_id = ? "
            "ORDER BY at_ms, rowid",
            [case_id],
        )
        return [
            Decision(decision=str(d), note=n, analyst=str(a), at_ms=int(at)) for d, n, a, at in rows
        ]

    def record_decision(self, case_id: str, decision: Decision) -> bool:
        """Record ``decision`` and the status it implies, in one transaction; False: no such case."""

        def record(con: Any) -> bool:
            found = con.execute(
                f"SELECT 1 FROM cases WHERE case_id = ?{self._ROW_LOCK}", [case_id]
            ).fetchone()
            if found is None:
                return False
            con.execute(
                "INSERT INTO decisions (case_id, decision, note, analyst, at_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [case_id, decision.decision, decision.note, decision.analyst, decision.at_ms],
            )
            status = STATUS_OF_DECISION.get(decision.decision)
            if status is not None:
                con.execute("UPDATE cases SET status = ? WHERE case_id = ?", [status, case_id])
            return True

        return bool(self._in_transaction("recording a decision", record))


_CASE_COLUMNS = "seq, case_id, rule, action, score, event_id, event_time, created_ms, status, body"


def case_from_body(seq: int, body: str) -> Case:
    """An outbox case from its stored JSON body and its number."""
    return Case(seq=seq, **msgspec.json.decode(body))


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
