"""The PostgreSQL store on a real server: exact merges with concurrent writers, the
checkpoint transaction, positions fence, retries, and the same answers as DuckDB."""

from __future__ import annotations

import math
import random
import threading
from pathlib import Path

import polars as pl
import psycopg
import pytest

from riskstream.core.checkpoint import Checkpoint
from riskstream.core.stats import partials
from riskstream.errors import StoreError
from riskstream.query.range import query_range
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.sources.file import FileSource
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store
from riskstream.store.postgres import PgStore
from riskstream.store.postgres.dsn import endpoint, redact
from riskstream.store.postgres.write import Fenced
from tests.postgres_cluster import PostgresCluster

T0 = 1_767_571_200_000
SPEC = parse_spec(
    "name: s\nmetrics:\n  m: {dimension: [k], value: v, stats: [count, sum, min, max, var]}\n"
)


def _checkpoint(rows: list[tuple[str, int, float]], **kw: object) -> Checkpoint:
    frame = pl.DataFrame(
        {"key": [r[0] for r in rows], "_t": [r[1] for r in rows], "v": [r[2] for r in rows]}
    )
    return Checkpoint(
        source="t",
        partials={("m", t): partials(frame, t) for t in SPEC.tiers},
        meta={"watermark": str(max(r[1] for r in rows))},
        **kw,  # type: ignore[arg-type]
    )


def _brute(rows: list[tuple[str, int, float]], key: str) -> dict[str, float]:
    vals = [v for k, _, v in rows if k == key]
    mean = math.fsum(vals) / len(vals)
    return {
        "count": len(vals),
        "sum": math.fsum(vals),
        "min": min(vals),
        "max": max(vals),
        "var": math.fsum((v - mean) ** 2 for v in vals) / len(vals),
    }


def _assert_stats(got: dict[str, object], want: dict[str, float]) -> None:
    assert got["count"] == want["count"]
    assert math.isclose(got["sum"], want["sum"], abs_tol=1e-6)  # type: ignore[arg-type]
    assert got["min"] == want["min"] and got["max"] == want["max"]
    assert math.isclose(got["var"], want["var"], rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]


def _same(got: object, want: object, where: object) -> None:
    """Equal, floats to 1e-9 relative (sums are added in a different order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _same(got[k], want[k], where)
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), where
    else:
        assert got == want, where


def _store(pg: PostgresCluster, schema: str, **kw: object) -> PgStore:
    return PgStore(pg.dsn, schema, pipeline="s", **kw)  # type: ignore[arg-type]


def test_appended_checkpoints_fold_into_one_row_per_bucket_exactly(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    rnd = random.Random(1)
    store = _store(pg_cluster, pg_schema, engine="e1")
    rows = [
        (rnd.choice("ab"), T0 + rnd.randint(0, 3_600_000), rnd.randint(-500, 500) / 4)
        for _ in range(600)
    ]
    for i in range(0, 600, 100):
        store.write_checkpoint(_checkpoint(rows[i : i + 100]))
    dup_sql = (
        "SELECT count(*) FROM (SELECT 1 FROM buckets GROUP BY metric, tier, key, start "
        "HAVING count(*) > 1) d"
    )
    before = store.select("SELECT count(*) FROM buckets")[0][0]
    assert store.select(dup_sql)[0][0] > 0  # appended: coarse buckets have a row per checkpoint
    answers = [query_range(SPEC, store, "m", k, T0, T0 + 3_600_001) for k in "ab"]
    assert not store.fold_when_grown(at_least=10**9)
    assert store.fold_when_grown(at_least=0)
    assert store.select(dup_sql)[0][0] == 0
    assert store.select("SELECT count(*) FROM buckets")[0][0] < before
    assert not store.fold_when_grown(at_least=0)  # not doubled since
    for k, old in zip("ab", answers, strict=True):
        want = _brute(rows, k)
        _assert_stats(old, want)
        _assert_stats(query_range(SPEC, store, "m", k, T0, T0 + 3_600_001), want)
    assert store.meta()["watermark"] == str(max(t for _, t, _ in rows))


def test_concurrent_writers_never_lose_an_update(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    """Four writers add to the same buckets at once while folds run: stats equal brute force."""
    rnd = random.Random(2)
    rows = [
        (rnd.choice("abc"), T0 + rnd.randint(0, 120_000), rnd.randint(0, 900) / 8)
        for _ in range(4000)
    ]
    _store(pg_cluster, pg_schema).close()  # migrate once, up front
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = _store(pg_cluster, pg_schema, engine=f"w{n}")
        try:
            mine = rows[n::4]
            for i in range(0, len(mine), 50):
                store.write_checkpoint(_checkpoint(mine[i : i + 50]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    def folder() -> None:
        store = _store(pg_cluster, pg_schema, engine="folder")
        try:
            while any(t.is_alive() for t in threads):
                store.fold()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    folding = threading.Thread(target=folder)
    folding.start()  # folds run while the writers append
    for t in threads:
        t.join()
    folding.join()
    assert not errors
    store = _store(pg_cluster, pg_schema)
    for k in "abc":
        _assert_stats(query_range(SPEC, store, "m", k, T0, T0 + 200_000), _brute(rows, k))
    total = store.select("SELECT sum(count) FROM buckets WHERE tier = 'minute'")[0][0]
    assert total == len(rows)


def test_a_failed_transaction_leaves_the_last_checkpoint_intact(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    store = _store(pg_cluster, pg_schema, engine="e1")
    good = [("a", T0 + 1000, 2.0), ("a", T0 + 2000, 4.0)]
    store.write_checkpoint(_checkpoint(good, positions={"p0": 10}))
    bad = _checkpoint([("a", T0 + 3000, 8.0)], positions={"p0": 20})
    # A NOT NULL violation inside the transaction (as a constraint or a full disk would fail).
    bad.partials[("m", "second")] = bad.partials[("m", "second")].with_columns(
        pl.lit(None, pl.Int64).alias("count")
    )
    with pytest.raises(StoreError, match="checkpoint failed"):
        store.write_checkpoint(bad)
    _assert_stats(query_range(SPEC, store, "m", "a", T0, T0 + 10_000), _brute(good, "a"))
    assert store.positions("t") == {"p0": 10}
    assert int(store.meta()["watermark"]) == T0 + 2000


def test_a_retried_checkpoint_is_applied_once(pg_cluster: PostgresCluster, pg_schema: str) -> None:
    """The connection drops right after COMMIT: the retry finds its token and does nothing."""
    store = _store(pg_cluster, pg_schema, engine="e1")
    rows = [("a", T0 + 1000, 2.0), ("a", T0 + 1500, 3.0)]
    cp = _checkpoint(rows, positions={"p0": 5})
    calls = {"n": 0}
    real = store.db.connection

    from contextlib import contextmanager

    @contextmanager
    def flaky():  # type: ignore[no-untyped-def]
        with real() as con:
            yield con
            calls["n"] += 1
            if calls["n"] == 1:  # the work committed; the answer is lost
                raise psycopg.OperationalError("server closed the connection unexpectedly")

    store.db.connection = flaky  # type: ignore[method-assign]
    store.write_checkpoint(cp)
    assert calls["n"] == 2
    _assert_stats(query_range(SPEC, store, "m", "a", T0, T0 + 10_000), _brute(rows, "a"))


def test_positions_are_fenced_against_a_stale_writer(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    a = _store(pg_cluster, pg_schema, engine="a")
    b = _store(pg_cluster, pg_schema, engine="b")
    a.write_checkpoint(Checkpoint(source="t", positions={"p0": 100, "p1": 50}))
    assert b.positions("t") == {"p0": 100, "p1": 50}
    b.write_checkpoint(Checkpoint(source="t", positions={"p0": 200}))
    # ``a`` still holds p0 at 100 from before the hand-over: unchanged, so not written.
    a.write_checkpoint(Checkpoint(source="t", positions={"p0": 100, "p1": 60}))
    assert a.positions("t") == {"p0": 200, "p1": 60}
    # A zombie that processed p0 from 100 on, after ``b`` moved it, is refused whole.
    zombie = _store(pg_cluster, pg_schema, engine="z")
    zombie._known[("t", "p0")] = 100
    with pytest.raises(Fenced, match="moved to another engine"):
        zombie.write_checkpoint(_checkpoint([("a", T0, 1.0)], positions={"p0": 150}))
    assert b.positions("t")["p0"] == 200
    assert b.select("SELECT count(*) FROM buckets")[0][0] == 0


def test_cases_numbering_and_marks_are_per_engine(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    from riskstream.core.case import Case

    def case(cid: str, seq: int) -> Case:
        return Case(
            case_id=cid,
            pipeline="s",
            rule="r",
            action="review",
            score=1.0,
            event_id=cid,
            event_time=T0,
            features={},
            event={},
            seq=seq,
        )

    a = _store(pg_cluster, pg_schema, engine="a")
    b = _store(pg_cluster, pg_schema, engine="b")
    a.write_checkpoint(
        Checkpoint(
            source="t",
            cases=[case("x1", 1), case("x2", 2)],
            meta={"next_case_seq": "3"},
            sink_marks={"file:c": 1},
        )
    )
    b.write_checkpoint(
        Checkpoint(source="t", cases=[case("y1", 1), case("x2", 2)], meta={"next_case_seq": "3"})
    )
    assert [c.case_id for c in a.cases_after(1)] == ["x2"]
    assert [c.case_id for c in b.cases_after(0)] == ["y1"]  # x2 was a's already
    assert a.sink_marks() == {"file:c": 1} and b.sink_marks() == {}
    reader = _store(pg_cluster, pg_schema)
    assert sorted(c.case_id for c in reader.cases_after(0)) == ["x1", "x2", "y1"]
    assert a.meta()["next_case_seq"] == "3"


def test_pg_and_duckdb_answer_the_same_for_a_whole_run(
    pg_cluster: PostgresCluster, pg_schema: str, tmp_path: Path
) -> None:
    from riskstream.synthetic.generator import write_jsonl

    events = tmp_path / "events.jsonl"
    write_jsonl(events, 6000, 11)
    spec_text = (Path(__file__).parents[3] / "examples" / "card-velocity.yaml").read_text()
    base = spec_text.split("\nsinks:")[0] + "\ncheckpoint: {every: 50ms}\nbatch_size: 1000\n"
    spec = parse_spec(base)
    pg_spec = parse_spec(base + f"store: {{kind: postgres, schema: {pg_schema}}}\n")
    duck_dir, pg_dir = tmp_path / "duck", tmp_path / "pg"
    EmbeddedRunner(spec, FileSource(events), duck_dir, lambda m: []).run(install_signals=False)
    EmbeddedRunner(pg_spec, FileSource(events), pg_dir, lambda m: [], store_dsn=pg_cluster.dsn).run(
        install_signals=False
    )
    duck = Store(duck_dir, read_only=True)
    pg = _store(pg_cluster, pg_schema)
    lines = pl.read_ndjson(events)
    keys = {
        "card": lines["card_id"].unique().head(15).to_list(),
        "card_merchants": lines["card_id"].unique().head(5).to_list(),
        "merchant_cards": lines["merchant_id"].unique().head(5).to_list(),
        "card_currency": lines["card_id"].unique().head(5).to_list(),
        "merchant_country": [
            f"{m}|{c}"
            for m, c in lines.select("merchant_id", "ip_country").unique().head(5).iter_rows()
        ],
    }
    lo, hi = int(lines["event_time"].min()), int(lines["event_time"].max()) + 1
    spans = [(lo, hi), (lo + 1_500, hi - 7_250), (lo - 86_400_000, hi + 86_400_000)]
    for metric, ks in keys.items():
        for key in ks:
            for a, b in spans:
                want = query_range(spec, duck, metric, key, a, b)
                got = query_range(spec, pg, metric, key, a, b)
                _same(got, want, (metric, key, a, b))
    for key in keys["card"][:5]:
        amounts = lines.filter(pl.col("card_id") == key)["amount"].to_list()
        got = query_range(spec, pg, "card", key, lo, hi)
        assert got["count"] == len(amounts)
        assert math.isclose(got["sum"], math.fsum(amounts), abs_tol=1e-6)
    assert (
        duck.select("SELECT count(*) FROM cases")[0][0]
        == pg.select("SELECT count(*) FROM cases")[0][0]
    )


def test_server_down_at_start_is_one_line_naming_host_and_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://u:s3cret@127.0.0.1:{port}/db"
    with pytest.raises(StoreError) as err:
        PgStore(dsn, "x")
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "s3cret" not in text and "\n" not in text


def test_dsn_passwords_are_redacted() -> None:
    assert redact("postgresql://bob:pw@h:5/db") == "postgresql://bob:***@h:5/db"
    assert redact("host=h password='p w' user=u") == "host=h password=*** user=u"
    assert redact("host=h password=pw") == "host=h password=***"
    assert endpoint("postgresql://bob:pw@db.example:6543/x") == "db.example:6543"
    assert endpoint("host=h") == "h:5432"


def test_retention_drops_old_buckets_per_tier(pg_cluster: PostgresCluster, pg_schema: str) -> None:
    store = _store(pg_cluster, pg_schema, engine="e1")
    rows = [("a", T0 + i * 60_000, 1.0) for i in range(180)]  # one a minute for three hours
    store.write_checkpoint(_checkpoint(rows))
    cut = T0 + 120 * 60_000
    dropped = store.compact_before({"second": cut, "minute": T0 + 60 * 60_000, "hour": T0})
    left = dict(store.select("SELECT tier, min(start) FROM buckets GROUP BY tier ORDER BY tier"))
    assert left["second"] == cut and left["minute"] == T0 + 60 * 60_000 and left["hour"] == T0
    assert dropped == 120 + 60
    assert store.select("SELECT sum(count) FROM buckets WHERE tier = 'hour'")[0][0] == 180


def test_coarse_tiers_are_derived_from_the_finest_whatever_the_marks(
    pg_cluster: PostgresCluster, pg_schema: str
) -> None:
    """The engine writes the finest tier (plus late deltas for the marks it knows); the store
    completes every coarse tier from the finest partials, so marks moved by another engine
    never hide a late row."""
    from riskstream.core import layout

    ladder = list(SPEC.tiers)
    a = _store(pg_cluster, pg_schema, engine="a")
    b = _store(pg_cluster, pg_schema, engine="b")
    assert a.configure_tiers(ladder) == {t: layout.NEVER for t in ladder[1:]}
    b.configure_tiers(ladder)
    rnd = random.Random(9)
    rows = [
        (rnd.choice("ab"), T0 + rnd.randint(0, 3 * 3_600_000), rnd.random()) for _ in range(500)
    ]
    early, late = rows[:400], rows[400:]
    a.write_checkpoint(_checkpoint(early))  # every tier given: coarse frames are re-derived
    marks = a.roll_up(T0 + 4 * 3_600_000, ladder)  # a moves the marks; b does not know
    assert marks["hour"] == T0 + 4 * 3_600_000 and a.roll_marks() == marks
    cp = _checkpoint(late)
    cp.partials = {s: f for s, f in cp.partials.items() if s[1] == "second"}  # b's view: no deltas
    b.write_checkpoint(cp)
    for tier in ladder:
        total = a.select("SELECT sum(count) FROM buckets WHERE tier = ?", [tier])[0][0]
        assert total == len(rows), tier
    for k in "ab":
        got = query_range(SPEC, a, "m", k, T0 - 7 * 86_400_000, T0 + 8 * 86_400_000)
        _assert_stats(got, _brute(rows, k))
