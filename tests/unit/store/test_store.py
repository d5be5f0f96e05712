"""The DuckDB store: appended partials fold exactly, retention drops old buckets, versions are checked."""

from __future__ import annotations

import math
import random
from pathlib import Path

import duckdb
import polars as pl
import pytest

from riskstream.core.checkpoint import Checkpoint
from riskstream.core.stats import partials
from riskstream.errors import StoreError
from riskstream.query.range import query_range
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.sources.file import FileSource
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store
from riskstream.store.duckdb.schema import SCHEMA_VERSION

T0 = 1_767_571_200_000
SPEC = parse_spec(
    "name: s\nmetrics:\n  m: {dimension: [k], value: v, stats: [count, sum, min, max, var]}\n"
)


def _checkpoint(rows: list[tuple[str, int, float]]) -> Checkpoint:
    frame = pl.DataFrame(
        {"key": [r[0] for r in rows], "_t": [r[1] for r in rows], "v": [r[2] for r in rows]}
    )
    return Checkpoint(
        source="t",
        partials={("m", t): partials(frame, t) for t in SPEC.tiers},
        meta={"watermark": str(max(r[1] for r in rows))},
    )


@pytest.mark.parametrize("slice_rows", [1, 150, 10**6])
def test_appended_checkpoints_fold_without_changing_answers(
    tmp_path: Path, slice_rows: int
) -> None:
    rnd = random.Random(1)
    store = Store(tmp_path)
    store.slice_rows = slice_rows  # a slice per key, a few keys per slice, or one slice
    rows = [
        (rnd.choice("abcde"), T0 + rnd.randint(0, 3_600_000), rnd.randint(-500, 500) / 4)
        for _ in range(600)
    ]
    for i in range(0, 600, 100):
        store.write_checkpoint(_checkpoint(rows[i : i + 100]))
    before = store.select("SELECT count(*) FROM buckets")[0][0]
    answers = [query_range(SPEC, store, "m", k, T0, T0 + 3_600_001) for k in "abcde"]
    store.fold()
    after = store.select("SELECT count(*) FROM buckets")[0][0]
    assert after < before
    assert (
        store.select(
            "SELECT count(*) FROM (SELECT 1 FROM buckets GROUP BY metric, tier, key, start)"
        )[0][0]
        == after
    )
    for k, old in zip("abcde", answers, strict=True):
        new = query_range(SPEC, store, "m", k, T0, T0 + 3_600_001)
        vals = [v for key, _, v in rows if key == k]
        mean = math.fsum(vals) / len(vals)
        var = math.fsum((v - mean) ** 2 for v in vals) / len(vals)
        for got in (old, new):
            assert got["count"] == len(vals) and math.isclose(
                got["sum"], math.fsum(vals), abs_tol=1e-9
            )
            assert got["min"] == min(vals) and got["max"] == max(vals)
            assert math.isclose(got["var"], var, rel_tol=1e-9)


def test_folding_waits_until_the_tables_have_doubled(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rnd = random.Random(2)
    rows = [(rnd.choice("ab"), T0 + rnd.randint(0, 600_000), 1.0) for _ in range(400)]

    def physical() -> int:
        return int(store.select("SELECT count(*) FROM bucket_rows")[0][0])

    for i in range(0, 200, 50):
        store.write_checkpoint(_checkpoint(rows[i : i + 50]))
    assert not store.fold_when_grown(at_least=10**9)  # too small to bother
    before = physical()
    assert store.fold_when_grown(at_least=0)
    folded = physical()
    assert folded < before
    store.write_checkpoint(_checkpoint(rows[200:210]))
    assert not store.fold_when_grown(at_least=0)  # grown, but not doubled
    for i in range(210, 400, 50):
        store.write_checkpoint(_checkpoint(rows[i : i + 50]))
    assert physical() >= 2 * folded
    assert store.fold_when_grown(at_least=0)
    total = store.select("SELECT sum(count) FROM buckets WHERE tier = 'second'")[0][0]
    assert total == 400


def test_retention_drops_old_buckets_and_queries_say_the_resolution(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with events.open("w") as f:
        for i in range(4 * 3600):  # one event a second for four hours
            f.write(f'{{"k": "a", "v": 1, "event_time": {T0 + i * 1000}}}\n')
    spec = parse_spec(
        "name: r\ncheckpoint: {every: 10ms, compact_every: 1ms}\nbatch_size: 1000\n"
        "retention: {second: 30m, minute: 2h}\nmetrics:\n  m: {dimension: [k], value: v, stats: [count, sum]}\n"
    )
    runner = EmbeddedRunner(spec, FileSource(events), tmp_path / "data", lambda marks: [])
    runner.run(install_signals=False)
    store = Store(tmp_path / "data", read_only=True)
    oldest_second = store.select("SELECT min(start) FROM buckets WHERE tier = 'second'")[0][0]
    oldest_minute = store.select("SELECT min(start) FROM buckets WHERE tier = 'minute'")[0][0]
    wm = T0 + (4 * 3600 - 1) * 1000
    assert wm - 31 * 60_000 <= oldest_second <= wm - 29 * 60_000
    assert wm - 121 * 60_000 <= oldest_minute <= wm - 119 * 60_000
    whole = query_range(spec, store, "m", "a", T0, T0 + 4 * 3_600_000)
    assert whole["count"] == 4 * 3600 and whole["exact"]
    old = query_range(spec, store, "m", "a", T0 + 1_500, T0 + 3_600_000 + 90_500)
    assert old["resolution"] == "hour" and not old["exact"]
    assert old["count"] == (old["effective"]["to"] - old["effective"]["from"]) // 1000


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path)
    con = duckdb.connect(str(tmp_path / "riskstream.duckdb"))
    con.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(StoreError, match="newer than this riskstream"):
        Store(tmp_path)


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store in"):
        Store(tmp_path / "nothing", read_only=True)
