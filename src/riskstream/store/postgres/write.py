"""The checkpoint transaction on PostgreSQL: binary COPY, appends and merges.

Bucket partials, sketch rows and distinct-feature values are appended (binary COPY;
readers merge, ``PgStore.fold`` folds). Distributions (few rows) are merged with
``INSERT … ON CONFLICT DO UPDATE`` (counts add), in key order so two writers lock rows in
the same order. Positions move forward only, and
only from where this engine last knew them (a fence against a stale writer). The
checkpoint's token makes a retry after a lost COMMIT a no-op.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import polars as pl
import psycopg

from riskstream.core.checkpoint import Checkpoint
from riskstream.errors import StoreError
from riskstream.store.postgres.schema import SHARED_META

if TYPE_CHECKING:
    from riskstream.store.postgres.store import PgStore

_BUCKET_COLS = ["metric", "tier", "key", "start", "count", "sum", "min", "max", "m2"]
_BUCKET_TYPES = ["text", "text", "text", "int8", "int8", "float8", "float8", "float8", "float8"]

_MERGE_DISTRIBUTIONS = """
INSERT INTO distributions AS t (metric, tier, key, start, category, count)
SELECT metric, tier, key, start, category, count FROM _d
ORDER BY metric, key, tier, start, category
ON CONFLICT (metric, key, tier, start, category) DO UPDATE SET count = t.count + EXCLUDED.count
"""


class Fenced(StoreError):
    """Another engine moved a partition's position since this engine last knew it."""


def _tagged(frames: dict[tuple[str, str], pl.DataFrame], cols: list[str]) -> pl.DataFrame | None:
    parts = [
        f.select(pl.lit(metric).alias("metric"), pl.lit(tier).alias("tier"), *cols)
        for (metric, tier), f in frames.items()
        if f.height
    ]
    return pl.concat(parts, how="vertical_relaxed") if parts else None


def copy_rows(
    con: psycopg.Connection[Any], table: str, frame: pl.DataFrame, types: list[str]
) -> None:
    """Append ``frame`` to ``table`` by binary COPY (``types``: the columns' PostgreSQL types)."""
    cols = ", ".join(frame.columns)
    with con.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:  # type: ignore[arg-type]
        cp.set_types(types)
        for row in frame.iter_rows():
            cp.write_row(row)


def _temp(con: psycopg.Connection[Any], name: str, like: str) -> None:
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {like} INCLUDING DEFAULTS) "  # type: ignore[arg-type]
        "ON COMMIT DELETE ROWS"
    )


def checkpoint(
    con: psycopg.Connection[Any],
    cp: Checkpoint,
    store: PgStore,
    token: str,
    staged: dict[tuple[str, str], int],
) -> None:
    """Apply ``cp`` in one transaction (nothing if ``token`` was applied already)."""
    if cp.prepare is not None:
        cp.prepare()
    with con.transaction():
        if con.execute("SELECT 1 FROM applied WHERE token = %s", [token]).fetchone():
            return  # an earlier attempt committed before its connection was lost
        _buckets(con, cp)
        _positions(con, cp, store, staged)
        _cases(con, cp, store.engine or "")
        _small(con, cp, store.engine or "")
        con.execute("INSERT INTO applied VALUES (%s, %s)", [token, int(time.time() * 1000)])


def _buckets(con: psycopg.Connection[Any], cp: Checkpoint) -> None:
    parts = _tagged(cp.partials, ["key", "start", "count", "sum", "min", "max", "m2"])
    if parts is not None:
        frame = parts.select(_BUCKET_COLS).cast(
            {
                "start": pl.Int64,
                "count": pl.Int64,
                "sum": pl.Float64,
                "min": pl.Float64,
                "max": pl.Float64,
                "m2": pl.Float64,
            }
        )
        copy_rows(con, "buckets", frame, _BUCKET_TYPES)
    sketches = _tagged(cp.sketches, ["key", "start", "vals", "hll"])
    if sketches is not None:
        frame = sketches.cast({"start": pl.Int64})
        copy_rows(con, "sketches", frame, ["text", "text", "text", "int8", "text[]", "bytea"])
    dist = _tagged(cp.distributions, ["key", "start", "category", "count"])
    if dist is not None:
        _temp(con, "_d", "distributions")
        frame = dist.cast({"start": pl.Int64, "count": pl.Int64, "category": pl.String})
        copy_rows(con, "_d", frame, ["text", "text", "text", "int8", "text", "int8"])
        con.execute(_MERGE_DISTRIBUTIONS)
    values = _tagged(cp.feature_values, ["key", "b", "c"])
    if values is not None:
        frame = values.cast({"b": pl.Int64, "c": pl.String})
        copy_rows(con, "feature_values", frame, ["text", "text", "text", "int8", "text"])


def _positions(
    con: psycopg.Connection[Any],
    cp: Checkpoint,
    store: PgStore,
    staged: dict[tuple[str, str], int],
) -> None:
    for part, pos in sorted(cp.positions.items()):
        known = store._known.get((cp.source, part))
        if known is not None and pos <= known:
            continue  # unchanged by this engine (or a partition it gave away)
        row = con.execute(
            "INSERT INTO positions AS t VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (pipeline, source, part) DO UPDATE SET pos = EXCLUDED.pos "
            "WHERE t.pos IS NOT DISTINCT FROM %s RETURNING pos",
            [store.pipeline, cp.source, part, pos, known],
        ).fetchone()
        if row is None:
            now = con.execute(
                "SELECT pos FROM positions WHERE pipeline = %s AND source = %s AND part = %s",
                [store.pipeline, cp.source, part],
            ).fetchone()
            raise Fenced(
                f"partition {part} of {cp.source} moved to another engine (stored position "
                f"{now[0] if now else None}, this engine last knew {known}); checkpoint not written"
            )
        staged[(cp.source, part)] = pos


def _cases(con: psycopg.Connection[Any], cp: Checkpoint, engine: str) -> None:
    if not cp.cases:
        return
    now = int(time.time() * 1000)
    with con.cursor() as cur:
        cur.executemany(
            "INSERT INTO cases (case_id, rule, action, score, event_id, event_time, created_ms, "
            "status, body, engine, engine_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, 'open', %s, "
            "%s, %s) ON CONFLICT (case_id) DO NOTHING",
            [
                (
                    c.case_id,
                    c.rule,
                    c.action,
                    float(c.score),
                    None if c.event_id is None else str(c.event_id),
                    c.event_time,
                    now,
                    c.body().decode(),
                    engine,
                    c.seq,
                )
                for c in cp.cases
            ],
        )


def _small(con: psycopg.Connection[Any], cp: Checkpoint, engine: str) -> None:
    with con.cursor() as cur:
        if cp.throttles:
            last: dict[tuple[str, str], int] = {}
            for rule, key, until in cp.throttles:
                last[(rule, key)] = until
            cur.executemany(
                "INSERT INTO throttles AS t VALUES (%s, %s, %s) ON CONFLICT (rule, key) "
                "DO UPDATE SET until_ms = GREATEST(t.until_ms, EXCLUDED.until_ms)",
                [(r, k, u) for (r, k), u in sorted(last.items())],
            )
        if cp.rule_hits:
            cur.executemany(
                "INSERT INTO rule_hits AS t VALUES (%s, %s) "
                "ON CONFLICT (rule) DO UPDATE SET hits = t.hits + EXCLUDED.hits",
                sorted(cp.rule_hits.items()),
            )
        if cp.sink_marks:
            cur.executemany(
                "INSERT INTO sink_marks AS t VALUES (%s, %s, %s) ON CONFLICT (engine, sink) "
                "DO UPDATE SET seq = GREATEST(t.seq, EXCLUDED.seq)",
                [(engine, s, q) for s, q in sorted(cp.sink_marks.items())],
            )
        shared = {k: v for k, v in cp.meta.items() if k in SHARED_META}
        own = {k: v for k, v in cp.meta.items() if k not in SHARED_META}
        if "watermark" in shared:
            cur.execute(
                "INSERT INTO meta AS t VALUES ('watermark', %s) ON CONFLICT (k) DO UPDATE SET "
                "v = GREATEST(t.v::bigint, EXCLUDED.v::bigint)::text",
                [shared.pop("watermark")],
            )
        if shared:
            cur.executemany(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                sorted(shared.items()),
            )
        if own:
            cur.executemany(
                "INSERT INTO engine_meta VALUES (%s, %s, %s) ON CONFLICT (engine, k) "
                "DO UPDATE SET v = EXCLUDED.v",
                [(engine, k, v) for k, v in sorted(own.items())],
            )
