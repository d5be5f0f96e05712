"""The store's tables and their versioned migrations."""

from __future__ import annotations

from typing import Final

import duckdb

from riskstream.core.tiers import TIERS
from riskstream.errors import StoreError

#: Bump when the schema changes, and append the statements that migrate to it.
SCHEMA_VERSION: Final[int] = 3


#: Readers see the version-1 shape (metric, tier, key ...) through views over the compact tables.
_VIEWS: tuple[str, ...] = (
    """CREATE OR REPLACE VIEW buckets AS
        SELECT s.metric, s.tier, k.key, r.start, r.count, r.sum, r.min, r.max, r.m2
        FROM bucket_rows r JOIN slots s ON s.slot = r.slot JOIN keys k ON k.kid = r.kid
        UNION ALL
        SELECT s.metric, s.tier, k.key, r.start, r.count, 0.0::DOUBLE, NULL::DOUBLE,
               NULL::DOUBLE, 0.0::DOUBLE
        FROM sketch_rows r JOIN slots s ON s.slot = r.slot JOIN keys k ON k.kid = r.kid
        WHERE r.count IS NOT NULL""",
    """CREATE OR REPLACE VIEW sketches AS
        SELECT s.metric, s.tier, k.key, r.start, r.vals, r.hll
        FROM sketch_rows r JOIN slots s ON s.slot = r.slot JOIN keys k ON k.kid = r.kid""",
    """CREATE OR REPLACE VIEW feature_values AS
        SELECT s.metric, s.tier, k.key, r.b, r.c
        FROM value_rows r JOIN slots s ON s.slot = r.slot JOIN keys k ON k.kid = r.kid""",
)

#: Version 3: a tier's buckets are its own rows before its roll mark and the finer tiers'
#: rows (re-bucketed) after it (see ``core.layout``); ``tier_sources`` lists, per tier, the
#: physical (tier, start range) parts, and the views give every reader the complete tiers.
_REBUCKET = "((r.start - ts.off) // ts.width * ts.width + ts.off)"
_VIEWS_V3: tuple[str, ...] = (
    f"""CREATE OR REPLACE VIEW buckets AS
        SELECT s.metric, ts.tier, k.key, {_REBUCKET} AS start, r.count, r.sum, r.min, r.max, r.m2
        FROM bucket_rows r JOIN slots s ON s.slot = r.slot
        JOIN tier_sources ts ON ts.src = s.tier AND r.start >= ts.lo AND r.start < ts.hi
        JOIN keys k ON k.kid = r.kid
        UNION ALL
        SELECT s.metric, ts.tier, k.key, {_REBUCKET}, r.count, 0.0::DOUBLE, NULL::DOUBLE,
               NULL::DOUBLE, 0.0::DOUBLE
        FROM sketch_rows r JOIN slots s ON s.slot = r.slot
        JOIN tier_sources ts ON ts.src = s.tier AND r.start >= ts.lo AND r.start < ts.hi
        JOIN keys k ON k.kid = r.kid
        WHERE r.count IS NOT NULL""",
    f"""CREATE OR REPLACE VIEW sketches AS
        SELECT s.metric, ts.tier, k.key, {_REBUCKET} AS start, r.vals, r.hll
        FROM sketch_rows r JOIN slots s ON s.slot = r.slot
        JOIN tier_sources ts ON ts.src = s.tier AND r.start >= ts.lo AND r.start < ts.hi
        JOIN keys k ON k.kid = r.kid""",
    f"""CREATE OR REPLACE VIEW distributions AS
        SELECT r.metric, ts.tier, r.key, {_REBUCKET} AS start, r.category, r.count
        FROM distribution_rows r
        JOIN tier_sources ts ON ts.src = r.tier AND r.start >= ts.lo AND r.start < ts.hi""",
)


def identity_sources() -> str:
    """Every tier complete in its own rows (stores written before version 3)."""
    rows = ", ".join(
        f"('{t.name}', '{t.name}', {-(2**62)}, {2**62}, {t.width_ms}, {t.offset_ms})"
        for t in TIERS.values()
    )
    return f"INSERT INTO tier_sources VALUES {rows}"


MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v VARCHAR)",
        # Bucket tables are append-only: a checkpoint appends partials, readers merge rows
        # of the same bucket, and compaction folds them together (inserts are several
        # times faster than upserts in DuckDB, and the checkpoint is the hot path).
        """CREATE TABLE IF NOT EXISTS buckets (
            metric VARCHAR, tier VARCHAR, key VARCHAR, start BIGINT,
            count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE, m2 DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS sketches (
            metric VARCHAR, tier VARCHAR, key VARCHAR, start BIGINT, vals VARCHAR[], hll BLOB)""",
        """CREATE TABLE IF NOT EXISTS distributions (
            metric VARCHAR, tier VARCHAR, key VARCHAR, start BIGINT, category VARCHAR, count BIGINT)""",
        """CREATE TABLE IF NOT EXISTS positions (
            source VARCHAR, part VARCHAR, pos BIGINT, PRIMARY KEY (source, part))""",
        """CREATE TABLE IF NOT EXISTS cases (
            seq BIGINT PRIMARY KEY, case_id VARCHAR UNIQUE, rule VARCHAR, action VARCHAR,
            score DOUBLE, event_id VARCHAR, event_time BIGINT, created_ms BIGINT,
            status VARCHAR DEFAULT 'open', body VARCHAR)""",
        "CREATE TABLE IF NOT EXISTS sink_marks (sink VARCHAR PRIMARY KEY, seq BIGINT)",
        """CREATE TABLE IF NOT EXISTS throttles (
            rule VARCHAR, key VARCHAR, until_ms BIGINT, PRIMARY KEY (rule, key))""",
        """CREATE TABLE IF NOT EXISTS decisions (
            case_id VARCHAR, decision VARCHAR, note VARCHAR, analyst VARCHAR, at_ms BIGINT)""",
        "CREATE TABLE IF NOT EXISTS rule_hits (rule VARCHAR PRIMARY KEY, hits BIGINT)",
        # Values behind distinct rule features, kept only for their window (+ lateness).
        """CREATE TABLE IF NOT EXISTS feature_values (
            metric VARCHAR, tier VARCHAR, key VARCHAR, b BIGINT, c VARCHAR)""",
    ),
    # Version 2: bucket, sketch and feature-value rows keep a small integer slot for
    # (metric, tier) and an integer key id (dictionary ``keys``) instead of three strings per
    # row: appends are ~2x faster. A distinct-only metric keeps its count in its sketch row
    # instead of a second row in ``bucket_rows``. Views keep the version-1 shape for readers.
    2: (
        "CREATE TABLE slots (slot USMALLINT, metric VARCHAR, tier VARCHAR)",
        "CREATE TABLE keys (kid UINTEGER, key VARCHAR)",
        """CREATE TABLE bucket_rows (slot USMALLINT, kid UINTEGER, start BIGINT,
            count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE, m2 DOUBLE)""",
        """CREATE TABLE sketch_rows (slot USMALLINT, kid UINTEGER, start BIGINT,
            vals VARCHAR[], hll BLOB, count BIGINT)""",
        "CREATE TABLE value_rows (slot USMALLINT, kid UINTEGER, b BIGINT, c VARCHAR)",
        """INSERT INTO slots SELECT (row_number() OVER (ORDER BY metric, tier) - 1)::USMALLINT,
            metric, tier FROM (SELECT metric, tier FROM buckets UNION SELECT metric, tier
            FROM sketches UNION SELECT metric, tier FROM feature_values)""",
        """INSERT INTO keys SELECT (row_number() OVER (ORDER BY key) - 1)::UINTEGER, key
            FROM (SELECT key FROM buckets UNION SELECT key FROM sketches
            UNION SELECT key FROM feature_values)""",
        """INSERT INTO bucket_rows SELECT s.slot, k.kid, b.start, b.count, b.sum, b.min, b.max, b.m2
            FROM buckets b JOIN slots s USING (metric, tier) JOIN keys k USING (key)""",
        """INSERT INTO sketch_rows SELECT s.slot, k.kid, b.start, b.vals, b.hll, NULL
            FROM sketches b JOIN slots s USING (metric, tier) JOIN keys k USING (key)""",
        """INSERT INTO value_rows SELECT s.slot, k.kid, b.b, b.c
            FROM feature_values b JOIN slots s USING (metric, tier) JOIN keys k USING (key)""",
        "DROP TABLE buckets",
        "DROP TABLE sketches",
        "DROP TABLE feature_values",
        *_VIEWS,
    ),
    3: (
        """CREATE TABLE tier_sources (tier VARCHAR, src VARCHAR, lo BIGINT, hi BIGINT,
            width BIGINT, off BIGINT)""",
        identity_sources(),
        "DROP VIEW IF EXISTS buckets",
        "DROP VIEW IF EXISTS sketches",
        "ALTER TABLE distributions RENAME TO distribution_rows",
        *_VIEWS_V3,
    ),
}


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Create or upgrade the tables of the store ``con`` opened to :data:`SCHEMA_VERSION`."""
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
