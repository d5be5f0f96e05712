"""The embedded store: one DuckDB file in the data dir holding buckets, positions and the case outbox.

The run process opens the file only while it writes a checkpoint, so ``riskstream
query`` in another process can read between checkpoints; both sides retry briefly
on DuckDB's file lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from riskstream.engine import sketch
from riskstream.errors import StoreError
from riskstream.sinks.case import Case
from riskstream.store.checkpoint import Checkpoint
from riskstream.store.schema import MIGRATIONS, SCHEMA_VERSION

DB_NAME = "riskstream.duckdb"
_NUMERIC = ["count", "sum", "min", "max", "m2"]


class Store:
    """Access to ``DATA_DIR/riskstream.duckdb``; every method opens, works, closes."""

    def __init__(
        self, data_dir: str | Path, *, read_only: bool = False, lock_wait_s: float = 30.0
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.read_only = read_only
        self.lock_wait_s = lock_wait_s
        if not read_only:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create data dir {str(self.data_dir)!r}: {exc.strerror}"
                ) from None
            with self.connect() as con:
                self._migrate(con)
        elif not self.path.exists():
            raise StoreError(
                f"no store in {str(self.data_dir)!r} (run a pipeline with --data-dir first)"
            )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, retrying while another process holds the file.

        Within one process, connections to the same file are taken one at a time
        (the engine thread and the HTTP API share the file; DuckDB refuses two
        handles opened at the same moment).
        """
        with _process_lock(self.path), self._open() as con:
            yield con

    @contextmanager
    def _open(self) -> Iterator[duckdb.DuckDBPyConnection]:
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
                        f"cannot open store {str(self.path)!r}: {_first_line(exc)}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot open store {str(self.path)!r}: {_first_line(exc)}"
                ) from None
        try:
            yield con
        finally:
            con.close()

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
        row = con.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {current} is newer than this riskstream ({SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute("BEGIN")
            for stmt in MIGRATIONS[version]:
                con.execute(stmt)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version)])
            con.execute("COMMIT")

    # ---- reads -------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """All meta keys (schema_version, watermark, next_seq, quarantine_bytes ...)."""
        with self.connect() as con:
            return dict(con.execute("SELECT k, v FROM meta").fetchall())

    def positions(self, source: str) -> dict[str, int]:
        """Stored positions of ``source`` by partition."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT part, pos FROM positions WHERE source = ?", [source]
            ).fetchall()
        return {str(p): int(v) for p, v in rows}

    def sink_marks(self) -> dict[str, int]:
        """Per sink, the highest case seq known delivered."""
        with self.connect() as con:
            return {
                str(s): int(q)
                for s, q in con.execute("SELECT sink, seq FROM sink_marks").fetchall()
            }

    def cases_after(self, seq: int, limit: int | None = None) -> list[Case]:
        """Outbox cases with seq greater than ``seq``, in order."""
        sql = "SELECT seq, body FROM cases WHERE seq > ? ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            rows = con.execute(sql, [seq]).fetchall()
        return [_case_from_row(int(s), str(b)) for s, b in rows]

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
        with self.connect() as con:
            return pl.from_arrow(con.sql(sql, params=args).to_arrow_table())  # type: ignore[return-value]

    def select(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (used by the query and API layers)."""
        with self.connect() as con:
            return con.execute(sql, list(args)).fetchall()

    def frame(self, sql: str, args: Sequence[Any] = ()) -> pl.DataFrame:
        """Run a read query into a Polars frame."""
        with self.connect() as con:
            return pl.from_arrow(con.sql(sql, params=list(args)).to_arrow_table())  # type: ignore[return-value]

    # ---- the checkpoint transaction ----------------------------------------------------

    def write_checkpoint(self, cp: Checkpoint) -> None:
        """Write everything in ``cp`` in one transaction: all of it lands, or none of it."""
        try:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    self._write(con, cp)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        except duckdb.Error as exc:
            raise StoreError(f"checkpoint failed: {_first_line(exc)}") from None

    def _write(self, con: duckdb.DuckDBPyConnection, cp: Checkpoint) -> None:
        self._append(con, "buckets", cp.partials, ["key", "start", *_NUMERIC])
        self._append(con, "sketches", cp.sketches, ["key", "start", "vals", "hll"])
        self._append(con, "distributions", cp.distributions, ["key", "start", "category", "count"])
        for (metric, tier), values in cp.feature_values.items():
            if not values.height:
                continue
            rows = values.select("key", "b", "c").with_columns(
                pl.lit(metric).alias("metric"), pl.lit(tier).alias("tier")
            )
            con.register("_v", rows.to_arrow())
            con.execute("INSERT INTO feature_values SELECT metric, tier, key, b, c FROM _v")
            con.unregister("_v")
        for partition, pos in cp.positions.items():
            con.execute(
                "INSERT OR REPLACE INTO positions VALUES (?, ?, ?)", [cp.source, partition, pos]
            )
        if cp.cases:
            frame = pl.DataFrame(
                {
                    "seq": [c.seq for c in cp.cases],
                    "case_id": [c.case_id for c in cp.cases],
                    "rule": [c.rule for c in cp.cases],
                    "action": [c.action for c in cp.cases],
                    "score": [float(c.score) for c in cp.cases],
                    "event_id": [c.event_id for c in cp.cases],
                    "event_time": [c.event_time for c in cp.cases],
                    "created_ms": [int(time.time() * 1000)] * len(cp.cases),
                    "status": ["open"] * len(cp.cases),
                    "body": [c.body().decode() for c in cp.cases],
                },
                schema_overrides={"event_id": pl.String, "seq": pl.Int64, "event_time": pl.Int64},
            )
            con.register("_c", frame.to_arrow())
            con.execute("INSERT INTO cases SELECT * FROM _c ON CONFLICT DO NOTHING")
            con.unregister("_c")
        for rule, key, until in cp.throttles:
            con.execute("INSERT OR REPLACE INTO throttles VALUES (?, ?, ?)", [rule, key, until])
        for rule, hits in cp.rule_hits.items():
            con.execute(
                "INSERT INTO rule_hits VALUES (?, ?) ON CONFLICT DO UPDATE SET hits = rule_hits.hits + EXCLUDED.hits",
                [rule, hits],
            )
        for sink, seq in cp.sink_marks.items():
            con.execute("INSERT OR REPLACE INTO sink_marks VALUES (?, ?)", [sink, seq])
        for k, v in cp.meta.items():
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, v])

    @staticmethod
    def _append(
        con: duckdb.DuckDBPyConnection,
        table: str,
        frames: dict[tuple[str, str], pl.DataFrame],
        cols: list[str],
    ) -> None:
        parts = [
            f.select(pl.lit(metric).alias("metric"), pl.lit(tier).alias("tier"), *cols)
            for (metric, tier), f in frames.items()
            if f.height
        ]
        if not parts:
            return
        con.register("_rows", pl.concat(parts, how="vertical_relaxed").to_arrow())
        con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
        con.unregister("_rows")

    # ---- upkeep ------------------------------------------------------------------------

    def fold(self) -> None:
        """Fold the rows of each bucket into one (appends leave one row per checkpoint)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            keys = "metric, tier, key, start"
            match = (
                "t.metric = d.metric AND t.tier = d.tier AND t.key = d.key AND t.start = d.start"
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _dup AS SELECT {keys} FROM buckets GROUP BY ALL HAVING count(*) > 1"
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _folded AS
                SELECT {keys}, sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
                       sum(m2 + count * (sum / count - gsum / gcount) ** 2) AS m2
                FROM (SELECT b.*, sum(b.sum) OVER w AS gsum, sum(b.count) OVER w AS gcount
                      FROM buckets b SEMI JOIN _dup USING ({keys})
                      WINDOW w AS (PARTITION BY {keys}))
                GROUP BY {keys}"""
            )
            con.execute(f"DELETE FROM buckets t USING _dup d WHERE {match}")
            con.execute("INSERT INTO buckets SELECT * FROM _folded")
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _dup AS SELECT {keys}, category FROM distributions
                GROUP BY ALL HAVING count(*) > 1"""
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _folded AS SELECT {keys}, category, sum(count) AS count
                FROM distributions SEMI JOIN _dup USING ({keys}, category) GROUP BY ALL"""
            )
            con.execute(
                f"DELETE FROM distributions t USING _dup d WHERE {match} AND t.category = d.category"
            )
            con.execute("INSERT INTO distributions SELECT * FROM _folded")
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _folded AS SELECT DISTINCT * FROM feature_values"
            )
            con.execute("DELETE FROM feature_values")
            con.execute("INSERT INTO feature_values SELECT * FROM _folded")
            con.execute("DROP TABLE _folded")
            con.execute("DROP TABLE _dup")
            self._fold_sketches(con)
            con.execute("COMMIT")

    @staticmethod
    def _fold_sketches(con: duckdb.DuckDBPyConnection) -> None:
        rows = pl.from_arrow(
            con.sql(
                """SELECT metric, tier, key, start, vals, hll FROM sketches
                WHERE (metric, tier, key, start) IN (
                    SELECT (metric, tier, key, start) FROM sketches GROUP BY ALL HAVING count(*) > 1)"""
            ).to_arrow_table()
        )
        assert isinstance(rows, pl.DataFrame)
        if not rows.height:
            return
        folded = []
        for (metric, tier), group in rows.group_by("metric", "tier"):
            exact = group.filter(pl.col("hll").is_null())
            frames = [exact.select("key", "start", "vals")] if exact.height else []
            merged = sketch.compact_values(frames) if frames else pl.DataFrame()
            with_hll = group.filter(pl.col("hll").is_not_null())
            if with_hll.height:
                blobs: dict[tuple[str, int], list[Any]] = {}
                for key, start, blob in with_hll.select("key", "start", "hll").iter_rows():
                    blobs.setdefault((key, start), []).append(bytes(blob))
                keep = []
                if merged.height:
                    for key, start, vals, blob in merged.iter_rows():
                        if (key, start) in blobs:
                            blobs[(key, start)].append(
                                sketch.sketch_of(vals or []) if vals else bytes(blob)
                            )
                        else:
                            keep.append((key, start, vals, blob))
                rows_hll = [
                    (k, s, None, sketch.to_bytes(sketch.merge(parts)))
                    for (k, s), parts in blobs.items()
                ]
                merged = pl.DataFrame(
                    keep + rows_hll,
                    schema={
                        "key": pl.String,
                        "start": pl.Int64,
                        "vals": pl.List(pl.String),
                        "hll": pl.Binary,
                    },
                    orient="row",
                )
            folded.append(
                merged.select(
                    pl.lit(metric).alias("metric"),
                    pl.lit(tier).alias("tier"),
                    "key",
                    "start",
                    "vals",
                    "hll",
                )
            )
        con.execute(
            """DELETE FROM sketches WHERE (metric, tier, key, start) IN (
                SELECT (metric, tier, key, start) FROM sketches GROUP BY ALL HAVING count(*) > 1)"""
        )
        con.register("_f", pl.concat(folded).to_arrow())
        con.execute("INSERT INTO sketches SELECT * FROM _f")
        con.unregister("_f")

    def compact_before(
        self,
        available_from: dict[str, int],
        value_horizons: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Drop buckets older than each tier's first retained instant (see ``query.stitch``)
        and distinct-feature values older than their window horizon."""
        dropped = 0
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for (metric, tier), cutoff in (value_horizons or {}).items():
                con.execute(
                    "DELETE FROM feature_values WHERE metric = ? AND tier = ? AND b < ?",
                    [metric, tier, cutoff],
                )
            for tier, cutoff in available_from.items():
                for table in ("buckets", "sketches", "distributions"):
                    row = con.execute(
                        f"DELETE FROM {table} WHERE tier = ? AND start < ?", [tier, cutoff]
                    ).fetchone()
                    dropped += int(row[0]) if row else 0
            con.execute("COMMIT")
        return dropped


def _case_from_row(seq: int, body: str) -> Case:
    import msgspec

    data = msgspec.json.decode(body)
    return Case(seq=seq, **data)


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.RLock())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
