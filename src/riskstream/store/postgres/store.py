"""The PostgreSQL store: the same meaning as the DuckDB store, shared by many writers.

One :class:`PgStore` per process. An engine's store knows its ``engine`` id (stable per
data dir), so its case numbering, sink marks and quarantine size stay its own while
buckets, positions, cases, throttles and rule hits are shared. Readers (``query``,
``serve`` without an engine) open it with ``engine=None`` and see everything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
import psycopg

from riskstream.core import layout
from riskstream.core.case import STATUS_OF_DECISION, Case, CaseQuery, Decision, StoredCase
from riskstream.core.checkpoint import Checkpoint
from riskstream.errors import StoreError
from riskstream.store.postgres import derive, reads, write
from riskstream.store.postgres.conn import Adapter, Connections, first_line, to_pg
from riskstream.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from riskstream.store.protocol import KeyRows, PlanFor

#: How long a checkpoint keeps retrying while PostgreSQL is away (then the run stops).
DEFAULT_GIVE_UP_S = float(os.environ.get("RISKSTREAM_PG_RETRY_S", "300"))

_PL_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int64(),
    23: pl.Int64(),
    700: pl.Float64(),
    701: pl.Float64(),
    1700: pl.Float64(),
    25: pl.String(),
    1043: pl.String(),
    17: pl.Binary(),
    1009: pl.List(pl.String()),
}


class PgStore:
    """A PostgreSQL schema holding one pipeline's state (see ``store.postgres.schema``)."""

    shared = True

    def __init__(
        self,
        dsn: str,
        schema: str = "riskstream",
        *,
        pipeline: str = "",
        engine: str | None = None,
        read_only: bool = False,
        give_up_s: float = DEFAULT_GIVE_UP_S,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.schema = schema
        self.pipeline = pipeline
        self.engine = engine
        self.read_only = read_only
        self.give_up_s = give_up_s
        #: Told each time an operation waits for the server (the runner's progress/log).
        self.on_wait: Callable[[str], None] | None = log
        #: The last wait message, until the next success (progress shows it).
        self.waiting: str | None = None
        self.db = Connections(dsn, schema)
        self.where = self.db.where
        #: Positions as this engine last read or wrote them: the fence against a stale writer.
        self._known: dict[tuple[str, str], int] = {}
        #: The spec's tiers, finest first, once :meth:`configure_tiers` ran (then coarse tiers
        #: are derived from the finest in each checkpoint).
        self.ladder: list[str] = []
        self._migrate()

    def _retry(self, what: str, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        def waiting(msg: str) -> None:
            self.waiting = msg
            if self.on_wait is not None:
                self.on_wait(msg)

        out = self.db.retrying(what, fn, give_up_s=self.give_up_s, on_wait=waiting)
        self.waiting = None
        return out

    def _migrate(self) -> None:
        def migrate(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                # Two engines starting at once: one migrates, the other waits here.
                con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.schema])
                con.execute("CREATE TABLE IF NOT EXISTS meta (k text PRIMARY KEY, v text)")
                row = con.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"store schema version {current} in {self.schema!r} is newer than "
                        f"this riskstream ({SCHEMA_VERSION})"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for stmt in MIGRATIONS[version]:
                        con.execute(stmt)  # type: ignore[arg-type]
                    con.execute(
                        "INSERT INTO meta VALUES ('schema_version', %s) "
                        "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                        [str(version)],
                    )

        self._retry("schema migration", migrate)

    # ---- connections -------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[Adapter]:
        """A connection with DuckDB's calling convention (``?`` placeholders)."""
        try:
            with self.db.connection() as con:
                yield Adapter(con)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL at {self.where}: {first_line(exc)}") from None

    def close(self) -> None:
        self.db.close()

    # ---- reads -------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Shared meta, overlaid with this engine's own (case numbering, quarantine size)."""

        def read(con: psycopg.Connection[Any]) -> dict[str, str]:
            out = {str(k): str(v) for k, v in con.execute("SELECT k, v FROM meta").fetchall()}
            if self.engine is not None:
                rows = con.execute(
                    "SELECT k, v FROM engine_meta WHERE engine = %s", [self.engine]
                ).fetchall()
                out.update({str(k): str(v) for k, v in rows})
            return out

        return self._retry("reading meta", read)  # type: ignore[no-any-return]

    def positions(self, source: str) -> dict[str, int]:
        """Stored positions of ``source`` by partition, for this pipeline (every engine's)."""

        def read(con: psycopg.Connection[Any]) -> dict[str, int]:
            rows = con.execute(
                "SELECT part, pos FROM positions WHERE pipeline = %s AND source = %s",
                [self.pipeline, source],
            ).fetchall()
            return {str(p): int(v) for p, v in rows}

        found: dict[str, int] = self._retry("reading positions", read)
        for part, pos in found.items():
            self._known[(source, part)] = pos
        return found

    def sink_marks(self) -> dict[str, int]:
        """Per sink of this engine, the highest case seq known delivered."""

        def read(con: psycopg.Connection[Any]) -> dict[str, int]:
            rows = con.execute(
                "SELECT sink, seq FROM sink_marks WHERE engine = %s", [self.engine or ""]
            ).fetchall()
            return {str(s): int(q) for s, q in rows}

        return self._retry("reading sink marks", read)  # type: ignore[no-any-return]

    def rename_sink_mark(self, old: str, new: str) -> None:
        """Move this engine's mark of sink ``old`` to ``new`` (keeping the higher); drop ``old``."""
        engine = self.engine or ""

        def move(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                row = con.execute(
                    "DELETE FROM sink_marks WHERE engine = %s AND sink = %s RETURNING seq",
                    [engine, old],
                ).fetchone()
                if row is not None:
                    con.execute(
                        "INSERT INTO sink_marks AS t VALUES (%s, %s, %s) ON CONFLICT (engine, sink) "
                        "DO UPDATE SET seq = GREATEST(t.seq, EXCLUDED.seq)",
                        [engine, new, int(row[0])],
                    )

        self._retry("renaming a sink mark", move)

    def cases_after(self, seq: int, limit: int | None = None) -> list[Case]:
        """This engine's outbox cases numbered after ``seq`` (every case for a reader)."""
        if self.engine is None:
            sql = "SELECT seq, body FROM cases WHERE seq > %s ORDER BY seq"
            args: list[Any] = [seq]
        else:
            sql = (
                "SELECT engine_seq, body FROM cases WHERE engine = %s AND engine_seq > %s "
                "ORDER BY engine_seq"
            )
            args = [self.engine, seq]
        if limit:
            sql += f" LIMIT {int(limit)}"

        def read(con: psycopg.Connection[Any]) -> list[Case]:
            return [_case(int(s), str(b)) for s, b in con.execute(sql, args).fetchall()]  # type: ignore[arg-type]

        return self._retry("reading cases", read)  # type: ignore[no-any-return]

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

    def select(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query written with ``?`` placeholders."""

        def read(con: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return con.execute(to_pg(sql), list(args)).fetchall()  # type: ignore[arg-type,no-any-return]

        return self._retry("query", read)  # type: ignore[no-any-return]

    def frame(self, sql: str, args: Sequence[Any] = ()) -> pl.DataFrame:
        """Run a read query into a Polars frame (column types from the result's types)."""

        def read(con: psycopg.Connection[Any]) -> pl.DataFrame:
            cur = con.execute(to_pg(sql), list(args))  # type: ignore[arg-type]
            desc = cur.description or []
            schema = {d.name: _PL_TYPES.get(d.type_code, pl.String()) for d in desc}
            return pl.DataFrame(cur.fetchall(), schema=schema, orient="row")

        return self._retry("query", read)  # type: ignore[no-any-return]

    def key_rows(
        self,
        tiers: Sequence[str],
        metric: str,
        key: str,
        plan_for: PlanFor,
        stats: Sequence[str] = ("distinct", "distribution"),
    ) -> KeyRows:
        """Rows of one key behind a stitched plan, read in one snapshot."""

        def read(con: psycopg.Connection[Any]) -> KeyRows:
            return reads.key_rows(con, metric, key, plan_for, stats)

        return self._retry("query", read)  # type: ignore[no-any-return]

    # ---- run state read by the runner --------------------------------------------------

    def throttles(self) -> dict[tuple[str, str], int]:
        """``(rule, key) -> until_ms`` of ``once_per`` rules (every engine's, merged)."""
        rows = self.select("SELECT rule, key, until_ms FROM throttles")
        return {(str(r), str(k)): int(u) for r, k, u in rows}

    def rule_hits(self) -> dict[str, int]:
        """Checkpointed hit count per rule (every engine's)."""
        return {str(r): int(h) for r, h in self.select("SELECT rule, hits FROM rule_hits")}

    def feature_values(self, metric: str, tier: str, since: int) -> pl.DataFrame:
        """Values behind distinct features (``key, b, c``) with ``b >= since``."""
        return self.frame(
            "SELECT key, b, c FROM feature_values WHERE metric = ? AND tier = ? AND b >= ?",
            [metric, tier, since],
        )

    # ---- the case queue ----------------------------------------------------------------

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

        def run(con: psycopg.Connection[Any]) -> bool:
            with con.transaction():
                found = con.execute(
                    "SELECT 1 FROM cases WHERE case_id = %s FOR UPDATE", [case_id]
                ).fetchone()
                if found is None:
                    return False
                con.execute(
                    "INSERT INTO decisions (case_id, decision, note, analyst, at_ms) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [case_id, decision.decision, decision.note, decision.analyst, decision.at_ms],
                )
                status = STATUS_OF_DECISION.get(decision.decision)
                if status is not None:
                    con.execute(
                        "UPDATE cases SET status = %s WHERE case_id = %s", [status, case_id]
                    )
            return True

        return bool(self._retry("recording a decision", run))

    def ping(self) -> None:
        """Raise StoreError when PostgreSQL cannot be reached and read."""
        try:
            with self.db.connection() as con:
                con.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL at {self.where}: {first_line(exc)}") from None

    # ---- the checkpoint transaction ----------------------------------------------------

    def write_checkpoint(self, cp: Checkpoint) -> None:
        """Write ``cp`` in one transaction; retried (once applied) while the server is away."""
        if self.read_only:
            raise StoreError("the store is open read-only")
        if cp.prepare is not None:
            cp.prepare()
        if self.ladder:
            cp = derive.derive(cp, self.ladder)
        token = os.urandom(12).hex()
        staged: dict[tuple[str, str], int] = {}

        def attempt(con: psycopg.Connection[Any]) -> None:
            staged.clear()
            write.checkpoint(con, cp, self, token, staged)

        self._retry("checkpoint", attempt)
        self._known.update(staged)

    # ---- upkeep ------------------------------------------------------------------------

    def configure_tiers(self, tiers: Sequence[str]) -> dict[str, int]:
        """The roll marks the engine is to use: "nothing rolled" for every coarse tier.

        So the engine writes only the finest tier, and :func:`derive.derive` completes the
        coarse tiers inside each checkpoint (see there for why, with several engines).
        """
        self.ladder = layout.ladder_of(tiers)
        return {t: layout.NEVER for t in self.ladder[1:]}

    def roll_up(self, watermark: int, tiers: Sequence[str]) -> dict[str, int]:
        """Move the shared roll marks forward (informational: every tier is complete in its
        own rows here, so nothing moves); the new marks."""
        ladder = layout.ladder_of(tiers)

        def run(con: psycopg.Connection[Any]) -> dict[str, int]:
            with con.transaction():
                old = _marks(con)
                new = layout.next_marks(
                    watermark, ladder, {t: old.get(t, layout.NEVER) for t in ladder[1:]}
                )
                for tier, value in new.items():
                    con.execute(
                        "INSERT INTO meta AS t VALUES (%s, %s) ON CONFLICT (k) DO UPDATE "
                        "SET v = GREATEST(t.v::bigint, EXCLUDED.v::bigint)::text",
                        [layout.MARK_PREFIX + tier, str(value)],
                    )
                return _marks(con)

        return self._retry("roll-up", run)  # type: ignore[no-any-return]

    def roll_marks(self) -> dict[str, int]:
        """The stored roll marks."""
        return layout.marks_from_meta(self.meta())

    def fold_when_grown(self, factor: float = 2.0, at_least: int = 100_000) -> bool:
        """:meth:`fold` once ``buckets`` holds ``factor`` times the rows of the last fold.

        Readers are correct without folding (they merge a bucket's rows), so it runs at
        geometrically spaced sizes: linear work in total. The size is the planner's
        estimate (``pg_class.reltuples``), not a scan.
        """

        def size(con: psycopg.Connection[Any]) -> tuple[int, int]:
            row = con.execute(
                "SELECT (SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                "WHERE oid = 'buckets'::regclass), "
                "(SELECT v FROM meta WHERE k = 'folded_rows')"
            ).fetchone()
            assert row is not None
            return int(row[0] or 0), int(row[1] or 0)

        total, last = self._retry("fold", size)
        if total < max(at_least, factor * last):
            return False
        self.fold()
        return True

    def fold(self) -> None:
        """Merge the rows of each bucket into one (checkpoints append one row per bucket each).

        One transaction; engines go on appending meanwhile (their new rows are not touched).
        Two engines folding at once take turns (an advisory lock).
        """

        def run(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtext(%s || '.fold'))", [self.schema])
                con.execute(_FOLD)

        def vacuum(con: psycopg.Connection[Any]) -> None:
            # The fold leaves a dead tuple per merged row: reclaim them now (outside any
            # transaction), or point reads walk them until autovacuum comes by.
            con.execute("VACUUM (ANALYZE) buckets")
            con.execute(
                "INSERT INTO meta SELECT 'folded_rows', greatest(reltuples, 0)::bigint::text "
                "FROM pg_class WHERE oid = 'buckets'::regclass "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
            )

        self._retry("fold", run)
        self._retry("vacuum", vacuum)

    def compact_before(
        self,
        available_from: dict[str, int],
        value_horizons: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Drop buckets older than each tier's retention and distinct values past their window."""

        def drop(con: psycopg.Connection[Any]) -> int:
            dropped = 0
            with con.transaction():
                for (metric, tier), cutoff in (value_horizons or {}).items():
                    con.execute(
                        "DELETE FROM feature_values WHERE metric = %s AND tier = %s AND b < %s",
                        [metric, tier, cutoff],
                    )
                if available_from:
                    # One scan per table for every tier.
                    cond = " OR ".join("(tier = %s AND start < %s)" for _ in available_from)
                    args = [x for tier, cutoff in available_from.items() for x in (tier, cutoff)]
                    for table in ("buckets", "sketches", "distributions"):
                        cur = con.execute(
                            f"DELETE FROM {table} WHERE {cond}",  # type: ignore[arg-type]
                            args,
                        )
                        dropped += max(cur.rowcount, 0)
                day_ago = int(time.time() * 1000) - 86_400_000
                con.execute("DELETE FROM applied WHERE at_ms < %s", [day_ago])
            return dropped

        return self._retry("compaction", drop)  # type: ignore[no-any-return]


#: Partials merge exactly (Chan et al.): m2 = sum(m2_i + n_i (mean_i - mean)^2).
_FOLD = """
WITH dup AS (
    SELECT metric, key, tier, start FROM buckets GROUP BY metric, key, tier, start
    HAVING count(*) > 1),
moved AS (
    DELETE FROM buckets b USING dup d
    WHERE b.metric = d.metric AND b.key = d.key AND b.tier = d.tier AND b.start = d.start
    RETURNING b.*),
w AS (
    SELECT m.*, sum(m.sum) OVER g AS gsum, sum(m.count) OVER g AS gcount FROM moved m
    WINDOW g AS (PARTITION BY metric, key, tier, start))
INSERT INTO buckets (metric, tier, key, start, count, sum, min, max, m2)
SELECT metric, tier, key, start, sum(count), sum(sum), min(min), max(max),
       sum(m2 + count * (sum / NULLIF(count, 0) - gsum / NULLIF(gcount, 0)) ^ 2)
FROM w GROUP BY metric, key, tier, start
"""


def _marks(con: psycopg.Connection[Any]) -> dict[str, int]:
    rows = con.execute("SELECT k, v FROM meta WHERE k LIKE 'rolled.%%'").fetchall()
    return layout.marks_from_meta({str(k): str(v) for k, v in rows})


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


def _case(seq: int, body: str) -> Case:
    import msgspec

    data = msgspec.json.decode(body)
    return Case(seq=seq, **data)
