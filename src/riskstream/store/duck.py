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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core import layout, sketch
from riskstream.core.case import Case
from riskstream.core.checkpoint import Checkpoint
from riskstream.core.keys import CODE, HASH, gather_keys, keyed
from riskstream.core.stats import m2_merge_sql
from riskstream.errors import StoreError
from riskstream.store import reads, rollup
from riskstream.store.private import narrow_path, private_dir, tighten_umask
from riskstream.store.protocol import KeyRows, PlanFor
from riskstream.store.protocol import Store as StoreProtocol
from riskstream.store.schema import MIGRATIONS, SCHEMA_VERSION
from riskstream.store.shared import SharedQueries

DB_NAME = "riskstream.duckdb"
_NUMERIC = ["count", "sum", "min", "max", "m2"]


class DuckDBStore(SharedQueries):
    """Access to ``DATA_DIR/riskstream.duckdb``; every method opens, works, closes."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        read_only: bool = False,
        lock_wait_s: float = 30.0,
        keep_open: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.read_only = read_only
        self.lock_wait_s = lock_wait_s
        #: Read-only only: keep one connection for every call (a query service over a store no
        #: engine is writing; it holds DuckDB's file lock, so a writer in another process waits).
        self.keep_open = keep_open and read_only
        self._kept: duckdb.DuckDBPyConnection | None = None
        self._dict: _Dictionary | None = None
        if not read_only:
            # Full event bodies live here: the dir 0700, DuckDB's own files (db, WAL) 0600.
            private_dir(self.data_dir)
            tighten_umask()
            with self.connect() as con:
                self._migrate(con)
            for name in (DB_NAME, DB_NAME + ".wal"):
                narrow_path(self.data_dir / name)
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
        with _process_lock(self.path):
            try:
                if self.keep_open:
                    if self._kept is None:
                        with self._open(close=False) as con:
                            self._kept = con
                    yield self._kept
                    return
                with self._open() as con:
                    yield con
            except duckdb.Error as exc:
                # A store that opens but cannot be read (a truncated or damaged file): one
                # line naming the file, never an internal error.
                raise StoreError(
                    f"cannot read store {str(self.path)!r}: {_first_line(exc)}"
                ) from None

    shared = False

    def close(self) -> None:
        """Close the kept connection (``keep_open``), if any."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    @contextmanager
    def _open(self, *, close: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
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
            if close:
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

    def rename_sink_mark(self, old: str, new: str) -> None:
        """Move the mark of sink ``old`` to ``new`` (keeping the higher); ``old`` is deleted."""
        with self.connect() as con:
            con.execute("BEGIN")
            row = con.execute("SELECT seq FROM sink_marks WHERE sink = ?", [old]).fetchone()
            if row is not None:
                cur = con.execute("SELECT seq FROM sink_marks WHERE sink = ?", [new]).fetchone()
                seq = max(int(row[0]), int(cur[0]) if cur else 0)
                con.execute("INSERT OR REPLACE INTO sink_marks VALUES (?, ?)", [new, seq])
                con.execute("DELETE FROM sink_marks WHERE sink = ?", [old])
            con.execute("COMMIT")

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

    def key_rows(
        self, tiers: Sequence[str], metric: str, key: str, plan_for: PlanFor, stats: Sequence[str]
    ) -> KeyRows:
        """Rows of ``metric``/``key`` inside ``plan_for(meta)``, in one snapshot (store.reads)."""
        with self.connect() as con:
            return reads.key_rows(con, tiers, metric, key, None, plan_for, self.key_id, stats)

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
                    self._dict = None  # may hold ids the rollback took back
                    con.execute("ROLLBACK")
                    raise
        except duckdb.Error as exc:
            raise StoreError(f"checkpoint failed: {_first_line(exc)}") from None

    # Bucket, sketch and feature-value rows are stored with integer ids: ``slots`` for
    # (metric, tier) and ``keys`` for the key text (see schema version 2). The ids this
    # process assigned are cached and checked against the table sizes in each transaction.

    def _ids(self, con: duckdb.DuckDBPyConnection) -> _Dictionary:
        sizes = con.execute(
            "SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM slots)"
        ).fetchall()[0]
        d = self._dict
        if d is None or (d.size, len(d.slots)) != tuple(sizes):
            keys = pl.from_arrow(con.sql("SELECT key, kid FROM keys").to_arrow_table())
            assert isinstance(keys, pl.DataFrame)
            slots = {
                (str(m), str(t)): int(i)
                for i, m, t in con.execute("SELECT slot, metric, tier FROM slots").fetchall()
            }
            runs = [keyed(keys.cast({"kid": pl.UInt32}))] if keys.height else []
            d = self._dict = _Dictionary(runs, keys.height, slots)
        return d

    def key_id(self, con: duckdb.DuckDBPyConnection, key: str) -> int | None:
        """The id of ``key`` (None if never stored).

        A process that keeps the store (the engine, a kept read connection) looks it up in
        the cached key dictionary by binary search on the key hash; a one-shot reader scans.
        """
        if self.read_only and not self.keep_open:
            rows = con.execute("SELECT kid FROM keys WHERE key = ?", [key]).fetchall()
            return int(rows[0][0]) if rows else None
        d = self._ids(con)
        h = pl.Series([key]).hash()[0]
        for run in d.runs:
            col = run[HASH].to_numpy()
            lo, hi = np.searchsorted(col, h, "left"), np.searchsorted(col, h, "right")
            for i in range(int(lo), int(hi)):
                if run["key"][i] == key:
                    return int(run["kid"][i])
        return None

    def _slot(self, con: duckdb.DuckDBPyConnection, d: _Dictionary, metric: str, tier: str) -> int:
        slot = d.slots.get((metric, tier))
        if slot is None:
            slot = len(d.slots)
            con.execute("INSERT INTO slots VALUES (?, ?, ?)", [slot, metric, tier])
            d.slots[(metric, tier)] = slot
        return slot

    def _key_ids(
        self, con: duckdb.DuckDBPyConnection, d: _Dictionary, frames: list[pl.DataFrame]
    ) -> pl.DataFrame:
        """``key -> kid`` for every key of ``frames``, adding new keys to the dictionary.

        The dictionary is a few runs sorted by key hash: a lookup is a binary search per key
        (:func:`gather_keys`), not a scan or a hash table over every key ever seen.
        """
        keys = pl.concat([f.select("key") for f in frames]).unique()
        cand = gather_keys(d.runs, keys["key"], {"key": pl.String(), "kid": pl.UInt32()})
        found = keys.join(cand.select("key", "kid"), on="key", how="left")
        new = found.filter(pl.col("kid").is_null()).select("key")
        if not new.height:
            return found
        new = new.with_columns((pl.int_range(pl.len(), dtype=pl.UInt32) + d.size).alias("kid"))
        con.register("_k", new.select("kid", "key").to_arrow())
        con.execute("INSERT INTO keys SELECT kid, key FROM _k")
        con.unregister("_k")
        d.runs.append(keyed(new))
        d.size += new.height
        if len(d.runs) > 8:
            d.runs = [keyed(pl.concat([r.select("key", "kid", HASH) for r in d.runs]))]
        return pl.concat([found.filter(pl.col("kid").is_not_null()), new])

    def _write_rows(self, con: duckdb.DuckDBPyConnection, cp: Checkpoint) -> None:
        parts = {s: f for s, f in cp.partials.items() if f.height}
        sketches = {s: f for s, f in cp.sketches.items() if f.height}
        values = {s: f for s, f in cp.feature_values.items() if f.height}
        if not (parts or sketches or values):
            return
        d = self._ids(con)
        # The finest tier of a metric (its largest frame) has all its keys; coarser tiers hold
        # late deltas only, or the same keys. Frames from the engine carry a per-checkpoint key
        # code (``_code``): ids map by code, once per key; other frames (feature values,
        # hand-made checkpoints) join on the key text.
        largest: dict[str, pl.DataFrame] = {}
        for (metric, _), f in [*parts.items(), *sketches.items()]:
            if CODE in f.columns and (metric not in largest or f.height > largest[metric].height):
                largest[metric] = f
        by_code = {m: f.select("key", CODE).unique(CODE) for m, f in largest.items()}
        plain = [f for (m, _), f in [*parts.items(), *sketches.items()] if m not in by_code]
        ids = self._key_ids(con, d, [*by_code.values(), *plain, *values.values()])
        maps: dict[str, npt.NDArray[np.uint32]] = {}
        for metric, m in by_code.items():
            pairs = m.join(ids, on="key", how="left")
            arr = np.zeros(int(pairs[CODE].max() or 0) + 1, dtype=np.uint32)  # type: ignore[arg-type]
            arr[pairs[CODE].to_numpy()] = pairs["kid"].to_numpy()
            maps[metric] = arr
        ids_lazy = ids.lazy()

        def with_kid(metric: str, f: pl.DataFrame) -> pl.LazyFrame:
            arr = maps.get(metric)
            if arr is not None and CODE in f.columns:
                return f.lazy().with_columns(pl.Series("kid", arr[f[CODE].to_numpy()]))
            return f.lazy().join(ids_lazy, on="key", how="left")

        # A metric without numeric values (distinct only) keeps its count in the sketch row.
        counted: dict[tuple[str, str], pl.DataFrame] = {}
        for slot, f in list(parts.items()):
            if slot in sketches and f["min"].null_count() == f.height:
                by = [CODE] if CODE in f.columns and CODE in sketches[slot].columns else ["key"]
                counted[slot] = f.select(*by, "start", "count")
                del parts[slot]
        jobs: list[tuple[str, pl.LazyFrame]] = []

        def encode(table: str, slot: tuple[str, str], lf: pl.LazyFrame, cols: list[str]) -> None:
            sid = self._slot(con, d, *slot)
            jobs.append((table, lf.select(pl.lit(sid, pl.UInt16).alias("slot"), "kid", *cols)))

        for slot, f in parts.items():
            encode("bucket_rows", slot, with_kid(slot[0], f), ["start", *_NUMERIC])
        for slot, f in sketches.items():
            lf = with_kid(slot[0], f)
            if slot in counted:
                by = [c for c in counted[slot].columns if c != "count"]
                lf = lf.join(counted[slot].lazy(), on=by, how="left")
            else:
                lf = lf.with_columns(pl.lit(None, pl.Int64).alias("count"))
            encode("sketch_rows", slot, lf, ["start", "vals", "hll", "count"])
        for slot, f in values.items():
            encode("value_rows", slot, with_kid(slot[0], f.select("key", "b", "c")), ["b", "c"])
        done = pl.collect_all([lf for _, lf in jobs])
        for table in ("bucket_rows", "sketch_rows", "value_rows"):
            self._insert(
                con, table, [f for (t, _), f in zip(jobs, done, strict=True) if t == table]
            )

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, table: str, frames: list[pl.DataFrame]) -> None:
        if not frames:
            return
        con.register("_rows", pl.concat(frames, how="vertical_relaxed").to_arrow())
        con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
        con.unregister("_rows")

    def _write(self, con: duckdb.DuckDBPyConnection, cp: Checkpoint) -> None:
        self._write_rows(con, cp)
        self._append(
            con, "distribution_rows", cp.distributions, ["key", "start", "category", "count"]
        )
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
        if cp.throttles:
            # One statement for all of them; the last one per (rule, key) wins, as row by row.
            throttles = pl.DataFrame(
                cp.throttles,
                schema={"rule": pl.String, "key": pl.String, "until_ms": pl.Int64},
                orient="row",
            ).unique(["rule", "key"], keep="last", maintain_order=True)
            con.register("_t", throttles.to_arrow())
            con.execute("INSERT OR REPLACE INTO throttles SELECT rule, key, until_ms FROM _t")
            con.unregister("_t")
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

    def configure_tiers(self, tiers: Sequence[str]) -> dict[str, int]:
        """Set up lazy roll-up for the spec's ``tiers``; returns the roll marks (core.layout)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            row = con.execute("SELECT v FROM meta WHERE k = 'watermark'").fetchone()
            marks = rollup.configure(con, tiers, int(row[0]) if row else None)
            con.execute("COMMIT")
        return marks

    def roll_up(self, watermark: int, tiers: Sequence[str]) -> dict[str, int]:
        """Roll buckets closed before ``watermark``'s into coarser tiers; the new marks."""
        try:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    d = self._ids(con)
                    marks = rollup.roll_up(
                        con, watermark, tiers, lambda m, t: self._slot(con, d, m, t)
                    )
                    con.execute("COMMIT")
                except BaseException:
                    self._dict = None
                    con.execute("ROLLBACK")
                    raise
        except duckdb.Error as exc:
            raise StoreError(f"roll-up failed: {_first_line(exc)}") from None
        return marks

    def roll_marks(self) -> dict[str, int]:
        """The stored roll marks."""
        with self.connect() as con:
            return rollup.read_marks(con)

    def fold_when_grown(self, factor: float = 2.0, at_least: int = 100_000) -> bool:
        """:meth:`fold` once the tables hold ``factor`` times the rows of the last fold.

        Folding scans whole tables while readers are correct without it (they merge the
        rows of a bucket), so it runs at geometrically spaced sizes: linear work in total
        instead of a full scan at every compaction.
        """
        with self.connect() as con:
            rows = con.execute(
                "SELECT (SELECT count(*) FROM bucket_rows) + (SELECT count(*) FROM sketch_rows), "
                "(SELECT v FROM meta WHERE k = 'folded_rows')"
            ).fetchall()[0]
        total, last = int(rows[0]), int(rows[1] or 0)
        if total < max(at_least, factor * last):
            return False
        self.fold()
        with self.connect() as con:
            after = con.execute(
                "SELECT (SELECT count(*) FROM bucket_rows) + (SELECT count(*) FROM sketch_rows)"
            ).fetchall()[0][0]
            con.execute("INSERT OR REPLACE INTO meta VALUES ('folded_rows', ?)", [str(after)])
        return True

    def fold(self) -> None:
        """Fold the rows of each bucket into one (appends leave one row per checkpoint)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            keys = "slot, kid, start"
            match = "t.slot = d.slot AND t.kid = d.kid AND t.start = d.start"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _dup AS SELECT {keys} FROM bucket_rows GROUP BY ALL HAVING count(*) > 1"
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _folded AS
                SELECT {keys}, sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
                       {m2_merge_sql("count", "sum", "m2", "gcount", "gsum")} AS m2
                FROM (SELECT b.*, sum(b.sum) OVER w AS gsum, sum(b.count) OVER w AS gcount
                      FROM bucket_rows b SEMI JOIN _dup USING ({keys})
                      WINDOW w AS (PARTITION BY {keys}))
                GROUP BY {keys}"""
            )
            con.execute(f"DELETE FROM bucket_rows t USING _dup d WHERE {match}")
            con.execute("INSERT INTO bucket_rows SELECT * FROM _folded")
            dkeys = "metric, tier, key, start"
            dmatch = (
                "t.metric = d.metric AND t.tier = d.tier AND t.key = d.key AND t.start = d.start"
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _dup AS SELECT {dkeys}, category FROM distribution_rows
                GROUP BY ALL HAVING count(*) > 1"""
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _folded AS SELECT {dkeys}, category, sum(count) AS count
                FROM distribution_rows SEMI JOIN _dup USING ({dkeys}, category) GROUP BY ALL"""
            )
            con.execute(
                f"DELETE FROM distribution_rows t USING _dup d WHERE {dmatch} AND t.category = d.category"
            )
            con.execute("INSERT INTO distribution_rows SELECT * FROM _folded")
            con.execute("CREATE OR REPLACE TEMP TABLE _folded AS SELECT DISTINCT * FROM value_rows")
            con.execute("DELETE FROM value_rows")
            con.execute("INSERT INTO value_rows SELECT * FROM _folded")
            con.execute("DROP TABLE _folded")
            con.execute("DROP TABLE _dup")
            self._fold_sketches(con)
            con.execute("COMMIT")

    @staticmethod
    def _fold_sketches(con: duckdb.DuckDBPyConnection) -> None:
        dup = "(slot, kid, start) IN (SELECT (slot, kid, start) FROM sketch_rows GROUP BY ALL HAVING count(*) > 1)"
        rows = pl.from_arrow(
            con.sql(
                f"SELECT slot, kid AS key, start, vals, hll, count FROM sketch_rows WHERE {dup}"
            ).to_arrow_table()
        )
        assert isinstance(rows, pl.DataFrame)
        if not rows.height:
            return
        counts = rows.group_by("slot", "key", "start").agg(
            pl.when(pl.col("count").is_not_null().any()).then(pl.col("count").sum()).alias("count")
        )
        key_type = rows.schema["key"]
        folded = []
        for (slot,), group in rows.group_by("slot"):
            exact = group.filter(pl.col("hll").is_null())
            frames = [exact.select("key", "start", "vals")] if exact.height else []
            merged = sketch.compact_values(frames) if frames else pl.DataFrame()
            with_hll = group.filter(pl.col("hll").is_not_null())
            if with_hll.height:
                blobs: dict[tuple[int, int], list[Any]] = {}
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
                        "key": key_type,
                        "start": pl.Int64,
                        "vals": pl.List(pl.String),
                        "hll": pl.Binary,
                    },
                    orient="row",
                )
            folded.append(
                merged.select(pl.lit(slot, pl.UInt16).alias("slot"), "key", "start", "vals", "hll")
            )
        out = (
            pl.concat(folded)
            .join(counts.cast({"slot": pl.UInt16}), on=["slot", "key", "start"], how="left")
            .select("slot", pl.col("key").alias("kid"), "start", "vals", "hll", "count")
        )
        con.execute(f"DELETE FROM sketch_rows WHERE {dup}")
        con.register("_f", out.to_arrow())
        con.execute("INSERT INTO sketch_rows SELECT * FROM _f")
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
            ladder = layout.ladder_of(list(available_from))
            # Rows a coarser tier still reads through its roll mark stay (core.layout).
            available_from = layout.drop_floors(ladder, rollup.read_marks(con), available_from)
            for (metric, tier), cutoff in (value_horizons or {}).items():
                con.execute(
                    "DELETE FROM value_rows WHERE slot IN "
                    "(SELECT slot FROM slots WHERE metric = ? AND tier = ?) AND b < ?",
                    [metric, tier, cutoff],
                )
            for tier, cutoff in available_from.items():
                for table in ("bucket_rows", "sketch_rows"):
                    row = con.execute(
                        f"DELETE FROM {table} WHERE slot IN (SELECT slot FROM slots WHERE tier = ?) "
                        "AND start < ?",
                        [tier, cutoff],
                    ).fetchone()
                    dropped += int(row[0]) if row else 0
                row = con.execute(
                    "DELETE FROM distribution_rows WHERE tier = ? AND start < ?", [tier, cutoff]
                ).fetchone()
                dropped += int(row[0]) if row else 0
            con.execute("COMMIT")
        return dropped


@dataclass
class _Dictionary:
    """Ids of key texts and of (metric, tier) slots, as stored in ``keys`` and ``slots``."""

    runs: list[pl.DataFrame]  # key, kid, _h: each sorted by _h (the key's hash)
    size: int
    slots: dict[tuple[str, str], int]


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


#: The name this class had before the Store protocol (``store.protocol.Store``) existed.
Store = DuckDBStore


def _implements_protocol(store: DuckDBStore) -> StoreProtocol:
    """mypy checks here that the DuckDB store implements the ``Store`` protocol."""
    return store
