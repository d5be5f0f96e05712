"""The contract of the ``Store`` protocol (``riskstream.store.protocol``), run against every backend.

This suite is the definition of the protocol: a new backend is done when it passes. Every
answer is compared with an independent brute-force computation over the rows written.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

import polars as pl
import pytest

from riskstream.core import sketch
from riskstream.core.case import Case, CaseQuery, Decision
from riskstream.core.checkpoint import Checkpoint
from riskstream.core.lab import LABEL_SCHEMA, RuleVersion
from riskstream.core.stats import Partial, merge_rows, partials
from riskstream.core.tiers import NEVER, available_from, bucket_start
from riskstream.errors import StoreError
from riskstream.query.stitch import plan_range
from riskstream.store.protocol import Store

T0 = 1_767_571_200_000  # Monday 2026-01-05 00:00 UTC
LADDER = ["second", "minute", "hour", "day", "week"]
Row = tuple[str, int, float]


def _rows(seed: int, n: int, span_ms: int, keys: str = "abc") -> list[Row]:
    rnd = random.Random(seed)
    return [
        (rnd.choice(keys), T0 + rnd.randrange(0, span_ms, 1000), rnd.randint(-400, 400) / 8)
        for _ in range(n)
    ]


def _frame(rows: Sequence[Row]) -> pl.DataFrame:
    return pl.DataFrame(
        {"key": [r[0] for r in rows], "_t": [r[1] for r in rows], "v": [r[2] for r in rows]},
        schema={"key": pl.String, "_t": pl.Int64, "v": pl.Float64},
    )


def _checkpoint(rows: Sequence[Row], tiers: Sequence[str], **kw: object) -> Checkpoint:
    frame = _frame(rows)
    cp = Checkpoint(source="src", partials={("m", t): partials(frame, t) for t in tiers})
    for name, value in kw.items():
        setattr(cp, name, value)
    return cp


def _brute(rows: Sequence[Row], tier: str) -> dict[tuple[str, int], Partial]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for k, t, v in rows:
        groups[(k, bucket_start(t, tier))].append(v)
    return {g: Partial.of(vs) for g, vs in groups.items()}


def _read(
    store: Store, tier: str, key: str | None, lo: int, hi: int
) -> dict[tuple[str, int], Partial]:
    frame = store.buckets("m", tier, key, lo, hi)
    if not frame.height:
        return {}
    out = {}
    for row in merge_rows(frame, ["key", "start"]).iter_rows(named=True):
        out[(row["key"], row["start"])] = Partial(
            row["count"], row["sum"], row["min"], row["max"], row["m2"]
        )
    return out


def _same(got: dict[tuple[str, int], Partial], want: dict[tuple[str, int], Partial]) -> None:
    assert set(got) == set(want)
    for g, w in want.items():
        p = got[g]
        assert (p.count, p.min, p.max) == (w.count, w.min, w.max), g
        assert math.isclose(p.sum, w.sum, rel_tol=1e-12, abs_tol=1e-9), g
        assert math.isclose(p.m2, w.m2, rel_tol=1e-9, abs_tol=1e-6), g


# ---- run state ----------------------------------------------------------------------------------


def test_an_empty_store_has_no_state(store: Store) -> None:
    assert "schema_version" in store.meta()
    assert "watermark" not in store.meta()
    assert store.positions("src") == {}
    assert store.sink_marks() == {}
    assert store.throttles() == {}
    assert store.rule_hits() == {}
    assert store.cases_after(0) == []
    assert store.find_cases(CaseQuery(), 10, 0) == (0, [])
    store.ping()


def test_run_state_round_trips_and_rule_hits_add_up(store: Store) -> None:
    store.write_checkpoint(
        Checkpoint(
            source="src",
            positions={"p/0": 10, "p/1": 7},
            throttles=[("r", "k1", 100), ("r", "k2", 200), ("r", "k1", 300)],
            rule_hits={"r": 2, "s": 1},
            sink_marks={"file:x": 4},
            meta={"watermark": "123", "next_case_seq": "5"},
        )
    )
    store.write_checkpoint(
        Checkpoint(
            source="src",
            positions={"p/0": 12},
            rule_hits={"r": 3},
            throttles=[("r", "k2", 250)],
            sink_marks={"file:x": 6, "webhook:y": 1},
        )
    )
    store.write_checkpoint(Checkpoint(source="other", positions={"p/0": 99}))
    assert store.positions("src") == {"p/0": 12, "p/1": 7}
    assert store.positions("other") == {"p/0": 99}
    assert store.throttles() == {("r", "k1"): 300, ("r", "k2"): 250}
    assert store.rule_hits() == {"r": 5, "s": 1}
    assert store.sink_marks() == {"file:x": 6, "webhook:y": 1}
    meta = store.meta()
    assert (meta["watermark"], meta["next_case_seq"]) == ("123", "5")


def test_a_failed_checkpoint_writes_nothing(store: Store) -> None:
    store.write_checkpoint(Checkpoint(source="src", positions={"p/0": 1}, meta={"watermark": "1"}))
    bad = _checkpoint(_rows(1, 20, 60_000), ["second"], positions={"p/0": 2}, rule_hits={"r": 1})
    bad.meta = {"watermark": "2", "oops": object()}  # type: ignore[dict-item]
    with pytest.raises((StoreError, TypeError, ValueError)):
        store.write_checkpoint(bad)
    assert store.positions("src") == {"p/0": 1}
    assert store.meta()["watermark"] == "1"
    assert store.rule_hits() == {}
    assert not store.buckets("m", "second", None, NEVER, 2**62).height


# ---- buckets ------------------------------------------------------------------------------------


def test_buckets_of_every_tier_equal_brute_force(store: Store) -> None:
    rows = _rows(2, 900, 3 * 86_400_000)
    for i in range(0, len(rows), 300):  # several checkpoints: rows of a bucket add up
        store.write_checkpoint(_checkpoint(rows[i : i + 300], LADDER))
    for tier in LADDER:
        want = _brute(rows, tier)
        _same(_read(store, tier, None, NEVER, 2**62), want)
        lo, hi = T0 + 3_600_000, T0 + 50 * 3_600_000
        _same(
            _read(store, tier, "b", lo, hi),
            {g: p for g, p in want.items() if g[0] == "b" and lo <= g[1] < hi},
        )
    assert not store.buckets("m", "hour", "nobody", NEVER, 2**62).height
    assert not store.buckets("other", "hour", None, NEVER, 2**62).height


def test_coarse_tiers_read_the_same_before_and_after_roll_up(store: Store) -> None:
    """Lazy roll-up: only the finest tier is written; coarse tiers are complete anyway."""
    marks = store.configure_tiers(LADDER)
    assert set(marks) == set(LADDER[1:])
    rows = _rows(3, 800, 2 * 86_400_000)
    first, late = rows[:600], rows[600:]
    store.write_checkpoint(_checkpoint(first, ["second"], meta={"watermark": str(T0)}))
    for tier in LADDER:
        _same(_read(store, tier, None, NEVER, 2**62), _brute(first, tier))
    watermark = max(t for _, t, _ in first)
    rolled = store.roll_up(watermark, LADDER)
    assert rolled == store.roll_marks()
    assert rolled["hour"] == bucket_start(watermark, "hour")
    # Late rows: the finest tier, plus a delta for each coarse tier already rolled past them.
    cp = _checkpoint(late, ["second"])
    for tier in LADDER[1:]:
        early = [r for r in late if bucket_start(r[1], tier) < rolled[tier]]
        if early:
            cp.partials[("m", tier)] = partials(_frame(early), tier)
    store.write_checkpoint(cp)
    for tier in LADDER:
        _same(_read(store, tier, None, NEVER, 2**62), _brute(rows, tier))
    assert store.fold_when_grown(at_least=0)
    for tier in LADDER:
        _same(_read(store, tier, None, NEVER, 2**62), _brute(rows, tier))


def test_key_rows_cover_a_plan_exactly(store: Store) -> None:
    rows = _rows(4, 700, 2 * 86_400_000, keys="ab")
    store.write_checkpoint(_checkpoint(rows, LADDER, meta={"watermark": str(T0 + 2 * 86_400_000)}))
    avail = available_from(None, LADDER, {})
    rnd = random.Random(5)
    for _ in range(25):
        frm = T0 + rnd.randrange(0, 2 * 86_400_000, 1000)
        to = frm + rnd.randrange(1000, 2 * 86_400_000, 1000)
        key = rnd.choice("ab")
        plan = plan_range(frm, to, LADDER, avail)
        segments = [(s.tier, s.start, s.end) for s in plan.segments]
        seen: list[dict[str, str]] = []

        def plan_for(
            meta: Mapping[str, str],
            segments: list[tuple[str, int, int]] = segments,
            seen: list[dict[str, str]] = seen,
        ) -> list[tuple[str, int, int]]:
            seen.append(dict(meta))
            return segments

        found = store.key_rows(LADDER, "m", key, plan_for, ["count", "sum"])
        assert seen and seen[0]["watermark"] == str(T0 + 2 * 86_400_000)
        assert found.meta == seen[0]
        want = [v for k, t, v in rows if k == key and frm <= t < to]
        assert int(found.numeric["count"].sum()) == len(want)
        assert math.isclose(float(found.numeric["sum"].sum()), math.fsum(want), abs_tol=1e-9)


def _whole_minutes(meta: Mapping[str, str]) -> list[tuple[str, int, int]]:
    return [("minute", T0, T0 + 600_000)]


def test_distinct_and_distribution_rows_round_trip(store: Store) -> None:
    rnd = random.Random(6)
    values = [
        (rnd.choice("xy"), T0 + rnd.randrange(0, 600_000, 1000), f"c{rnd.randint(0, 90)}")
        for _ in range(400)
    ]
    frame = pl.DataFrame(
        {
            "key": [k for k, _, _ in values],
            "_t": [t for _, t, _ in values],
            "c": [c for _, _, c in values],
        }
    )
    minute = frame.with_columns(((pl.col("_t") // 60_000) * 60_000).alias("start"))
    sets = minute.group_by("key", "start").agg(pl.col("c").unique().alias("vals"))
    dist = minute.group_by("key", "start", pl.col("c").alias("category")).agg(
        pl.len().cast(pl.Int64).alias("count")
    )
    store.write_checkpoint(
        Checkpoint(
            source="src",
            partials={
                ("m", "minute"): minute.group_by("key", "start").agg(
                    pl.len().cast(pl.Int64).alias("count"),
                    pl.lit(0.0).alias("sum"),
                    pl.lit(None, pl.Float64).alias("min"),
                    pl.lit(None, pl.Float64).alias("max"),
                    pl.lit(0.0).alias("m2"),
                )
            },
            sketches={("m", "minute"): sketch.finish_values(sets)},
            distributions={("m", "minute"): dist},
        )
    )
    for key in "xy":
        mine = [(t, c) for k, t, c in values if k == key]
        found = store.key_rows(
            LADDER, "m", key, _whole_minutes, ["count", "distinct", "distribution"]
        )
        got = sketch.count_distinct([v for v, _ in found.sketches], [b for _, b in found.sketches])
        assert got == len({c for _, c in mine})
        total = found.distribution.group_by("category").agg(pl.col("count").sum())
        counts = dict(zip(total["category"], total["count"], strict=True))
        want: dict[str, int] = defaultdict(int)
        for _, c in mine:
            want[c] += 1
        assert counts == want
        assert int(found.numeric["count"].sum()) == len(mine)


def test_feature_values_are_read_from_a_horizon_on(store: Store) -> None:
    rows = pl.DataFrame(
        {
            "key": ["a", "a", "b", "b"],
            "b": [T0, T0 + 1000, T0, T0 + 2000],
            "c": ["1", "2", "3", "4"],
        }
    )
    store.write_checkpoint(Checkpoint(source="src", feature_values={("m", "second"): rows}))
    got = store.feature_values("m", "second", T0 + 1000).sort("key", "b")
    assert got.select("key", "b", "c").rows() == [("a", T0 + 1000, "2"), ("b", T0 + 2000, "4")]
    assert not store.feature_values("m", "minute", NEVER).height
    store.compact_before({t: NEVER for t in LADDER}, {("m", "second"): T0 + 1500})
    assert store.feature_values("m", "second", NEVER).select("c").to_series().to_list() == ["4"]


def test_compaction_drops_only_what_retention_lets_go(store: Store) -> None:
    rows = _rows(7, 500, 2 * 86_400_000)
    store.write_checkpoint(_checkpoint(rows, LADDER))
    cutoff = {t: NEVER for t in LADDER} | {"second": T0 + 86_400_000}
    dropped = store.compact_before(cutoff)
    assert dropped >= 1
    want = _brute([r for r in rows if r[1] >= T0 + 86_400_000], "second")
    _same(_read(store, "second", None, NEVER, 2**62), want)
    _same(_read(store, "hour", None, NEVER, 2**62), _brute(rows, "hour"))


# ---- cases and decisions ------------------------------------------------------------------------


def _case(i: int, rule: str, action: str, t: int) -> Case:
    return Case(
        case_id=f"c{i}",
        pipeline="p",
        rule=rule,
        action=action,
        score=float(i),
        event_id=f"e{i}",
        event_time=t,
        features={"f": i},
        event={"event_id": f"e{i}", "n": i},
        seq=i,
    )


def test_cases_queue_filters_pages_and_decisions(store: Store) -> None:
    rnd = random.Random(8)
    cases = [
        _case(
            i,
            rnd.choice(["r1", "r2"]),
            rnd.choice(["review", "block"]),
            T0 + rnd.randrange(0, 10_000, 100),
        )
        for i in range(1, 41)
    ]
    store.write_checkpoint(Checkpoint(source="src", cases=cases[:25]))
    store.write_checkpoint(Checkpoint(source="src", cases=cases[20:]))  # 20..24 again: stored once
    assert [c.case_id for c in store.cases_after(0)] == [c.case_id for c in cases]
    assert store.cases_after(10, limit=3) == cases[10:13]
    assert store.cases_after(40) == []

    one = store.get_case("c7")
    assert one is not None and one.status == "open" and one.rule == cases[6].rule
    assert one.body.encode() == cases[6].body() and one.seq == 7
    assert store.get_case("nope") is None

    assert store.record_decision("c7", Decision(decision="note", note="hm", analyst="ann", at_ms=5))
    assert store.record_decision(
        "c7", Decision(decision="confirmed_fraud", note=None, analyst="bob", at_ms=9)
    )
    assert not store.record_decision(
        "nope", Decision(decision="note", note=None, analyst="x", at_ms=1)
    )
    assert [(d.decision, d.analyst, d.at_ms, d.note) for d in store.decisions("c7")] == [
        ("note", "ann", 5, "hm"),
        ("confirmed_fraud", "bob", 9, None),
    ]
    assert store.decisions("c8") == []
    stored = store.get_case("c7")
    assert stored is not None and stored.status == "confirmed_fraud"

    status = {c.case_id: "open" for c in cases} | {"c7": "confirmed_fraud"}
    for query in (
        CaseQuery(),
        CaseQuery(rule="r1"),
        CaseQuery(action="block", rule="r2"),
        CaseQuery(status="confirmed_fraud"),
        CaseQuery(status="open", event_time_from=T0 + 2000, event_time_to=T0 + 7000),
    ):
        want = [
            c
            for c in cases
            if (query.rule is None or c.rule == query.rule)
            and (query.action is None or c.action == query.action)
            and (query.status is None or status[c.case_id] == query.status)
            and (query.event_time_from is None or c.event_time >= query.event_time_from)
            and (query.event_time_to is None or c.event_time < query.event_time_to)
        ]
        want.sort(key=lambda c: (-c.event_time, -c.seq))
        total, page = store.find_cases(query, 5, 2)
        assert total == len(want)
        assert [c.case_id for c in page] == [c.case_id for c in want[2:7]]


# ---- the rule lab: labels and rule versions -----------------------------------------------


def test_labels_are_the_latest_of_imports_and_decisions(store: Store) -> None:
    """Imported labels and analysts' decisions merge by time, the latest per event wins."""
    rnd = random.Random(11)
    cases = [_case(i, "r1", "review", T0 + i * 1000) for i in range(1, 21)]
    store.write_checkpoint(Checkpoint(source="src", cases=cases))
    assert store.labels().is_empty() and store.labels().schema == LABEL_SCHEMA
    latest: dict[str, tuple[int, int]] = {}  # event_id -> (at_ms, label): the brute force
    for batch in range(4):
        at = 1000 * (batch + 1)
        ids = rnd.sample([f"e{i}" for i in range(1, 31)], 12)  # e21.. are not cases
        labels = [rnd.randint(0, 1) for _ in ids]
        frame = pl.DataFrame({"event_id": ids, "label": labels}, schema=LABEL_SCHEMA)
        assert store.add_labels(frame, f"file:{batch}", at) == len(ids)
        for eid, label in zip(ids, labels, strict=True):
            latest[eid] = (at, label)
    assert store.add_labels(pl.DataFrame(schema=LABEL_SCHEMA), "empty", 1) == 0
    for i in rnd.sample(range(1, 21), 8):
        at = rnd.choice([500, 2500, 4500])
        decision = rnd.choice(["confirmed_fraud", "false_positive", "note"])
        assert store.record_decision(
            f"c{i}", Decision(decision=decision, note=None, analyst="a", at_ms=at)
        )
        if decision != "note" and at > latest.get(f"e{i}", (-1, 0))[0]:
            latest[f"e{i}"] = (at, int(decision == "confirmed_fraud"))
    got = store.labels()
    assert got.schema == LABEL_SCHEMA
    assert dict(got.iter_rows()) == {eid: label for eid, (_, label) in latest.items()}


def test_case_hits_are_the_cases_in_a_range(store: Store) -> None:
    cases = [_case(i, f"r{i % 3}", "review", T0 + i * 1000) for i in range(1, 31)]
    store.write_checkpoint(Checkpoint(source="src", cases=cases))
    for lo, hi in ((None, None), (T0 + 5000, None), (None, T0 + 9000), (T0 + 3000, T0 + 3000)):
        want = {
            (c.rule, c.event_id)
            for c in cases
            if (lo is None or c.event_time >= lo) and (hi is None or c.event_time < hi)
        }
        got = store.case_hits(lo, hi)
        assert got.columns == ["rule", "event_id"]
        assert set(got.iter_rows()) == want and got.height == len(want)


def test_rule_versions_number_per_rule_and_one_is_live(store: Store) -> None:
    assert store.rule_versions("r") == []
    body = {"when": "amount > 1", "action": "review", "score": 50.0}
    v1 = store.add_rule_version("r", body, author="spec file", status="live", at_ms=10)
    store.set_rule_status("r", v1, "live")
    v2 = store.add_rule_version(
        "r",
        {**body, "when": "amount > 2"},
        author="ann",
        status="proposed",
        at_ms=20,
        summary={"hits": 3, "precision": None},
        diff="-amount > 1\n+amount > 2",
        note="tighter",
    )
    other = store.add_rule_version("q", body, author="bob", status="proposed", at_ms=30)
    assert (v1, v2, other) == (1, 2, 1)
    got = store.rule_versions("r")
    assert [(v.version, v.status) for v in got] == [(2, "proposed"), (1, "live")]
    assert got[0] == RuleVersion(
        rule="r",
        version=2,
        status="proposed",
        body={**body, "when": "amount > 2"},
        author="ann",
        at_ms=20,
        summary={"hits": 3, "precision": None},
        diff="-amount > 1\n+amount > 2",
        note="tighter",
    )
    store.set_rule_status("r", 2, "live", approved_by="bob", approved_ms=25)
    got = store.rule_versions("r")
    assert [(v.version, v.status, v.approved_by, v.approved_ms) for v in got] == [
        (2, "live", "bob", 25),
        (1, "superseded", None, None),
    ]
    assert [v.status for v in store.rule_versions("q")] == ["proposed"]
    assert list(got[1].as_dict()) == [
        "rule",
        "version",
        "status",
        "body",
        "author",
        "at_ms",
        "approved_by",
        "approved_ms",
        "summary",
        "diff",
        "note",
    ]
