"""Upkeep of the PostgreSQL store: roll marks, folding appended rows, retention.

Every tier is complete in its own rows here (``derive.py``), so there is no roll-up to do;
folding merges the rows checkpoints appended, retention drops what no tier reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from riskstream.core import layout


class Upkeep:
    """Roll marks, fold and retention (a mixin for :class:`PgStore`)."""

    schema: str
    #: The spec's tiers, finest first, once :meth:`configure_tiers` ran.
    ladder: list[str]

    def _retry(self, what: str, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        raise NotImplementedError

    def meta(self) -> dict[str, str]:
        raise NotImplementedError

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
