"""The PostgreSQL store: the same meaning as the DuckDB store, shared by many writers.

One :class:`PgStore` per process. An engine's store knows its ``engine`` id (stable per
data dir), so its case numbering, sink marks and quarantine size stay its own while
buckets, positions, cases, throttles and rule hits are shared. Readers (``query``,
``serve`` without an engine) open it with ``engine=None`` and see everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl
import psycopg

from riskstream.core.case import Case
from riskstream.core.checkpoint import Checkpoint
from riskstream.errors import StoreError
from riskstream.store.lab import LabQueries, label_rows
from riskstream.store.postgres import derive, reads, write
from riskstream.store.postgres.conn import Adapter, Connections, first_line, to_pg
from riskstream.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from riskstream.store.postgres.upkeep import Upkeep
from riskstream.store.protocol import KeyRows, PlanFor
from riskstream.store.shared import SharedQueries, case_from_body

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


T = TypeVar("T")


class PgStore(Upkeep, SharedQueries, LabQueries):
    """A PostgreSQL schema holding one pipeline's state (see ``store.postgres.schema``)."""

    shared = True
    #: Cases travel in the bucket checkpoint (``shared``): no early commit to run beside it.
    concurrent_commits = False
    _ROW_LOCK = " FOR UPDATE"

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

    def _in_transaction(self, what: str, work: Callable[[Adapter], T]) -> T:
        """``work(con)`` in one transaction, retried while the server is away."""

        def run(con: psycopg.Connection[Any]) -> T:
            with con.transaction():
                return work(Adapter(con))

        return self._retry(what, run)  # type: ignore[no-any-return]

    # ---- the rule lab (its queries: store.lab) -------------------------------------------

    def _lock_rule_versions(self, con: Adapter, rule: str) -> None:
        con.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [f"{self.schema}.rule.{rule}"])

    def add_labels(self, frame: pl.DataFrame, source: str, at_ms: int) -> int:
        """Append ``frame`` (``event_id``, ``label`` 0/1) as labels from ``source``; the count."""
        rows = label_rows(frame, source, at_ms, pl.Int16())
        if rows.height:
            self._in_transaction(
                "importing labels",
                lambda con: write.copy_rows(
                    con.raw, "labels", rows, ["text", "int2", "text", "int8"]
                ),
            )
        return rows.height

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
            return [case_from_body(int(s), str(b)) for s, b in con.execute(sql, args).fetchall()]  # type: ignore[arg-type]

        return self._retry("reading cases", read)  # type: ignore[no-any-return]

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
