"""Kafka acceptance: consumer-group streaming, SIGKILL, broker restart, a second engine, replay.

Every expectation is brute force over the events this module produced itself (plain
``random`` + ``json``, keyed by card, timestamped with the event time).
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from riskstream.core.case import case_id_for
from riskstream.query.range import query_range
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store
from tests.conftest import run_cli
from tests.integration.kafka.helpers import (
    HOUR,
    PARTITIONS,
    base_time,
    brute,
    cases_in_file,
    committed,
    create_topics,
    end_offsets,
    event_ms,
    expected_cases,
    make_events,
    produce,
    read_topic,
    same_stats,
    start_engine,
    stop_engine,
    wait_assigned,
    wait_committed,
    write_spec,
)
from tests.kafka_broker import KafkaBroker, broker_or_fail, unique_topic

pytestmark = pytest.mark.kafka

N_EVENTS = 200_000


@pytest.fixture(scope="module")
def dataset(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """200,000 events over one hour in a 4-partition topic."""
    tmp = tmp_path_factory.mktemp("kafka-stream")
    topic = unique_topic("payments")
    create_topics(kafka_broker.bootstrap, (topic, PARTITIONS))
    t0 = base_time()
    events = make_events(N_EVENTS, seed=42, t0=t0)
    produce(kafka_broker.bootstrap, topic, events)
    return {
        "tmp": tmp,
        "topic": topic,
        "events": events,
        "t0": t0,
        "bootstrap": kafka_broker.bootstrap,
    }


@pytest.fixture(scope="module")
def streamed(dataset: dict[str, Any]) -> dict[str, Any]:
    """``riskstream run --until-end`` over the whole topic (consumer group ``stream``)."""
    tmp, bootstrap = dataset["tmp"], dataset["bootstrap"]
    cases_topic = unique_topic("cases")
    create_topics(bootstrap, (cases_topic, 3))
    group = unique_topic("stream")
    spec = write_spec(
        tmp / "stream.yaml",
        brokers=bootstrap,
        topic=dataset["topic"],
        group=group,
        cases_file=tmp / "stream-cases.jsonl",
        cases_topic=cases_topic,
    )
    started = time.monotonic()
    run_cli(
        "run",
        "-c",
        str(spec),
        "--data-dir",
        str(tmp / "stream"),
        "--until-end",
        "-q",
        "--summary-json",
        str(tmp / "stream-summary.json"),
    )
    elapsed = time.monotonic() - started
    return {
        **dataset,
        "spec": spec,
        "group": group,
        "cases_topic": cases_topic,
        "data": tmp / "stream",
        "elapsed": elapsed,
    }


def _random_queries(
    events: list[dict[str, Any]],
    stores: list[Store],
    spec_path: Path,
    n: int,
    seed: int,
    lo: int,
    hi: int,
) -> int:
    """``n`` random stitched range queries in [lo, hi) on every store, each equal to brute force."""
    spec = load_spec(spec_path)
    rnd = random.Random(seed)
    cards = sorted({str(e["card"]) for e in events[:: max(1, len(events) // 300)]})
    for _ in range(n):
        card = rnd.choice(cards)
        length = int(10 ** rnd.uniform(3, math.log10(hi - lo)))
        frm = rnd.randint(lo, max(lo, hi - length)) // 1000 * 1000
        to = min(hi, frm + max(1000, length // 1000 * 1000))
        for store in stores:
            got = query_range(spec, store, "card", card, frm, to)
            eff = got["effective"]
            want = brute(events, card, eff["from"], eff["to"])
            assert same_stats(got, want), (card, frm, to, got, want)
    return n


def test_streaming_until_end_equals_brute_force(streamed: dict[str, Any]) -> None:
    events = streamed["events"]
    summary = json.loads((streamed["tmp"] / "stream-summary.json").read_text())
    assert summary["events"] == N_EVENTS
    assert summary["quarantined"] == 0
    assert summary["lag"] and all(v == 0 for v in summary["lag"].values()), summary["lag"]
    want = expected_cases(events)
    assert len(want) > 500
    got = {
        (c["rule"], c["event_id"]) for c in cases_in_file(streamed["tmp"] / "stream-cases.jsonl")
    }
    assert got == want
    on_topic = read_topic(streamed["bootstrap"], streamed["cases_topic"])
    keys = [k.decode() for k, _, _ in on_topic]
    assert len(keys) == len(set(keys)) == len(want)
    assert set(keys) == {case_id_for("kpay", rule, eid) for rule, eid in want}
    # Offsets were committed after the checkpoints: lag tools see the group at the end.
    assert committed(streamed["bootstrap"], streamed["group"], streamed["topic"]) == end_offsets(
        streamed["bootstrap"], streamed["topic"]
    )
    store = Store(streamed["data"], read_only=True)
    t0 = streamed["t0"]
    assert (
        _random_queries(
            events, [store], streamed["spec"], 60, seed=1, lo=t0 - 10_000, hi=t0 + HOUR + 10_000
        )
        == 60
    )
    print(f"streamed {N_EVENTS} events in {streamed['elapsed']:.1f}s (with start-up)")


def test_replay_time_range_into_fresh_dir_equals_streaming(streamed: dict[str, Any]) -> None:
    tmp, events, t0 = streamed["tmp"], streamed["events"], streamed["t0"]
    frm, to = t0 + 17 * 60_000 + 13_000, t0 + 41 * 60_000
    spec = write_spec(
        tmp / "replay.yaml",
        brokers=streamed["bootstrap"],
        topic=streamed["topic"],
        group=streamed["group"],
        cases_file=tmp / "replay-cases.jsonl",
    )
    before = committed(streamed["bootstrap"], streamed["group"], streamed["topic"])
    started = time.monotonic()
    run_cli(
        "run",
        "-c",
        str(spec),
        "--data-dir",
        str(tmp / "replay"),
        "--from",
        str(frm),
        "--to",
        str(to),
        "-q",
        "--summary-json",
        str(tmp / "replay-summary.json"),
    )
    print(f"replay took {time.monotonic() - started:.1f}s")
    summary = json.loads((tmp / "replay-summary.json").read_text())
    inside = [e for e in events if frm <= event_ms(e) < to]
    assert summary["events"] == len(inside)  # events outside [from, to) are skipped, not counted
    assert summary["quarantined"] == 0
    # The replay had no group: the live group's offsets did not move.
    assert committed(streamed["bootstrap"], streamed["group"], streamed["topic"]) == before
    replay, stream = Store(tmp / "replay", read_only=True), Store(streamed["data"], read_only=True)
    _random_queries(events, [replay, stream], spec, 20, seed=2, lo=frm, hi=to)
    full = load_spec(spec)
    for card in sorted({str(e["card"]) for e in inside})[:10]:
        a = query_range(full, replay, "card", card, frm, to)
        b = query_range(full, stream, "card", card, frm, to)
        assert same_stats(a, {k: b[k] for k in ("count", "sum", "min", "max")})
        assert query_range(full, replay, "card", card, t0 - HOUR, frm)["count"] == 0


def test_sigkill_at_random_moments_stays_exact(dataset: dict[str, Any]) -> None:
    tmp, bootstrap, events = dataset["tmp"], dataset["bootstrap"], dataset["events"]
    cases_topic = unique_topic("killed-cases")
    create_topics(bootstrap, (cases_topic, 3))
    group = unique_topic("killed")
    spec = write_spec(
        tmp / "killed.yaml",
        brokers=bootstrap,
        topic=dataset["topic"],
        group=group,
        cases_file=tmp / "killed-cases.jsonl",
        cases_topic=cases_topic,
    )
    rnd = random.Random(7)
    kills: list[int] = []  # committed events at each kill
    while True:
        proc = start_engine(spec, tmp / "killed", "--until-end")
        if len(kills) < 3:
            # Kill at a random moment after this start has committed something of its own (a
            # fixed sleep raced the engine's start-up on a loaded machine; after a kill the group
            # also needs ~6 s, the session timeout, to drop the killed member).
            before = kills[-1] if kills else 0
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline:
                if sum(committed(bootstrap, group, dataset["topic"]).values()) > before:
                    break
                time.sleep(0.5)
            time.sleep(rnd.uniform(0.2, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills.append(sum(committed(bootstrap, group, dataset["topic"]).values()))
                continue
        assert proc.wait(240) == 0, (tmp / "killed.log").read_text()[-3000:]
        break
    assert len(kills) >= 2, kills
    assert any(0 < k < N_EVENTS for k in kills), kills  # killed mid-run, after some checkpoints
    want = expected_cases(events)
    got = [(c["rule"], c["event_id"]) for c in cases_in_file(tmp / "killed-cases.jsonl")]
    assert len(got) == len(set(got)) and set(got) == want
    keys = [k for k, _, _ in read_topic(bootstrap, cases_topic)]
    assert len(keys) == len(set(keys)), "a case was written twice to the cases topic"
    assert {k.decode() for k in keys} == {case_id_for("kpay", r, e) for r, e in want}
    store = Store(tmp / "killed", read_only=True)
    t0 = dataset["t0"]
    _random_queries(events, [store], spec, 25, seed=3, lo=t0 - 10_000, hi=t0 + HOUR + 10_000)
    rows = store.select("SELECT sum(count) FROM buckets WHERE metric = 'card' AND tier = 'hour'")
    assert int(rows[0][0]) == N_EVENTS


def test_broker_restart_engine_waits_and_stays_exact(tmp_path: Path) -> None:
    broker = broker_or_fail(tmp_path / "broker", partitions=PARTITIONS)
    try:
        bootstrap = broker.bootstrap
        topic, cases_topic, group = "payments", "cases", "restart"
        create_topics(bootstrap, (topic, PARTITIONS), (cases_topic, 2))
        t0 = base_time()
        events = make_events(40_000, seed=5, t0=t0)
        first, second = events[:20_000], events[20_000:]
        produce(bootstrap, topic, first)
        spec = write_spec(
            tmp_path / "spec.yaml",
            brokers=bootstrap,
            topic=topic,
            group=group,
            cases_file=tmp_path / "cases.jsonl",
            cases_topic=cases_topic,
        )
        proc = start_engine(spec, tmp_path / "data")
        wait_committed(bootstrap, group, topic, len(first), 60, proc)
        broker.kill()  # SIGKILL: the broker crashes under the running engine
        time.sleep(3.0)
        assert proc.poll() is None, "the engine must wait for the broker, not exit"
        broker.start()
        produce(bootstrap, topic, second)
        wait_committed(bootstrap, group, topic, len(events), 120, proc)
        assert stop_engine(proc) == 0, (tmp_path / "data.log").read_text()[-3000:]
        want = expected_cases(events)
        got = [(c["rule"], c["event_id"]) for c in cases_in_file(tmp_path / "cases.jsonl")]
        assert len(got) == len(set(got)) and set(got) == want
        keys = [k for k, _, _ in read_topic(bootstrap, cases_topic)]
        assert len(keys) == len(set(keys)) and len(keys) == len(want)
        store = Store(tmp_path / "data", read_only=True)
        _random_queries(events, [store], spec, 20, seed=4, lo=t0 - 10_000, hi=t0 + HOUR + 10_000)
    finally:
        broker.stop()


def test_second_engine_takes_partitions_over_without_double_counting(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Two engines, one group, one data dir each: every event is counted by exactly one store.

    A runs alone, B joins while events stream in (A checkpoints and commits before giving
    partitions up; B starts at those offsets), then B leaves and A takes its partitions back
    (starting at B's committed offsets, past A's own older stored positions).

    Events stream at up to 6 minutes of event time per second here, so a partition delayed
    by 2 s (a rebalance, a busy 2-core machine) would be 12 minutes behind the others; each
    engine judges lateness against its own watermark, hence ``max_lateness: 2h``: this test
    is about ownership, not lateness.
    """
    bootstrap = kafka_broker.bootstrap
    topic, cases_topic, group = (
        unique_topic("shared"),
        unique_topic("shared-cases"),
        unique_topic("shared"),
    )
    create_topics(bootstrap, (topic, PARTITIONS), (cases_topic, 3))
    t0 = base_time()
    events = make_events(50_000, seed=9, t0=t0)
    phase1, phase2, phase3 = events[:10_000], events[10_000:40_000], events[40_000:]
    specs = {
        name: write_spec(
            tmp_path / f"{name}.yaml",
            brokers=bootstrap,
            topic=topic,
            group=group,
            cases_file=tmp_path / f"{name}-cases.jsonl",
            cases_topic=cases_topic,
            every_event_rule=True,
            lateness="2h",
        )
        for name in ("a", "b")
    }
    produce(bootstrap, topic, phase1)
    a = start_engine(specs["a"], tmp_path / "a")
    wait_committed(bootstrap, group, topic, len(phase1), 60, a)
    # B joins while events stream in (A has pending state when it gives partitions up) ...
    feeder = threading.Thread(
        target=produce, args=(bootstrap, topic, phase2[:10_000]), kwargs={"rate": 2_000.0}
    )
    feeder.start()
    b = start_engine(specs["b"], tmp_path / "b")
    wait_assigned(bootstrap, group, members=2, partitions=PARTITIONS, timeout=90)
    feeder.join()
    # ... and both engines get their share of what follows.
    produce(bootstrap, topic, phase2[10_000:], rate=5_000.0)
    wait_committed(bootstrap, group, topic, len(phase1) + len(phase2), 90, b)
    assert stop_engine(b) == 0, (tmp_path / "b.log").read_text()[-3000:]
    wait_assigned(bootstrap, group, members=1, partitions=PARTITIONS)
    produce(bootstrap, topic, phase3, rate=5_000.0)
    wait_committed(bootstrap, group, topic, len(events), 90, a)
    assert stop_engine(a) == 0, (tmp_path / "a.log").read_text()[-3000:]

    # Event level: the "every" rule raised one case per event, in whichever engine counted it.
    seen = {
        name: {
            c["event_id"]
            for c in cases_in_file(tmp_path / f"{name}-cases.jsonl")
            if c["rule"] == "every"
        }
        for name in ("a", "b")
    }
    assert seen["a"] and seen["b"], "both engines must have owned partitions"
    assert not seen["a"] & seen["b"], "an event was counted by both engines"
    assert seen["a"] | seen["b"] == {str(e["event_id"]) for e in events}
    for name in ("a", "b"):
        assert not (tmp_path / name / "quarantine.jsonl").read_text()
    # Aggregates: per card, the two stores add up to brute force (every card, from the
    # hour buckets; a few through stitched range queries).
    stores = [Store(tmp_path / n, read_only=True) for n in ("a", "b")]
    sql = "SELECT key, sum(count), sum(sum) FROM buckets WHERE metric = 'card' AND tier = 'hour' GROUP BY key"
    totals: dict[str, list[float]] = {}
    for store in stores:
        for key, count, total in store.select(sql):
            got = totals.setdefault(str(key), [0, 0.0])
            got[0] += int(count)
            got[1] += float(total)
    lo, hi = t0 - 60_000, t0 + HOUR + 60_000
    cards = sorted({str(e["card"]) for e in events})
    assert sorted(totals) == cards
    for card in cards:
        want = brute(events, card, lo, hi)
        assert totals[card][0] == want["count"], card
        assert math.isclose(totals[card][1], want["sum"], rel_tol=1e-9, abs_tol=1e-6), card
    spec = load_spec(specs["a"])
    for card in random.Random(5).sample(cards, 10):
        parts = [query_range(spec, s, "card", card, lo, hi) for s in stores]
        assert sum(p["count"] for p in parts) == brute(events, card, lo, hi)["count"]
    keys = [k for k, _, _ in read_topic(bootstrap, cases_topic)]
    assert len(keys) == len(set(keys)), "a case was written twice to the shared cases topic"
