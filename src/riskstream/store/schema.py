"""The store's tables and their versioned migrations."""

from __future__ import annotations

from typing import Final

#: Bump when the schema changes, and append the statements that migrate to it.
SCHEMA_VERSION: Final[int] = 1

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
}
