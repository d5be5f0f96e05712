"""The checkpoint transaction: everything a batch produced lands in one DuckDB transaction."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core.checkpoint import Checkpoint
from riskstream.core.keys import CODE
from riskstream.errors import StoreError
from riskstream.store.duckdb.connection import first_line
from riskstream.store.duckdb.keys import KeyDictionary

_NUMERIC = ["count", "sum", "min", "max", "m2"]


class Checkpoints(KeyDictionary):
    """Writes: the checkpoint transaction and the sink marks."""

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
            raise StoreError(f"checkpoint failed: {first_line(exc)}") from None

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
        if cp.rule_hits:
            # One upsert for every rule: per rule it was most of a case commit's time.
            hits = pl.DataFrame(
                {"rule": list(cp.rule_hits), "hits": list(cp.rule_hits.values())},
                schema={"rule": pl.String, "hits": pl.Int64},
            )
            con.register("_h", hits.to_arrow())
            con.execute(
                "INSERT INTO rule_hits SELECT rule, hits FROM _h "
                "ON CONFLICT DO UPDATE SET hits = rule_hits.hits + EXCLUDED.hits"
            )
            con.unregister("_h")
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
