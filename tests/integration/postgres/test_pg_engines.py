"""Several engines, one PostgreSQL store, real Kafka: kills and a PostgreSQL restart stay exact.

Every expectation is brute force over the events this module produced itself (the Kafka
acceptance helpers: plain ``random`` + ``json``, keyed by card), or the case set of an
uninterrupted single-engine run over the same topic.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaException

from riskstream.query.range import query_range
from riskstream.spec.load import load_spec
from riskstream.store.postgres import PgStore
from tests.conftest import RISKSTREAM, run_cli
from tests.integration.kafka.helpers import (
    HOUR,
    PARTITIONS,
    base_time,
    brute,
    cases_in_file,
    create_topics,
    expected_cases,
    make_events,
    produce,
    start_engine,
    stop_engine,
    wait_assigned,
    write_spec,
)
from tests.kafka_broker import KafkaBroker, unique_topic
from tests.postgres_cluster import PostgresCluster, cluster_or_fail, unique_schema

pytestmark = pytest.mark.kafka

N_EVENTS = 40_000


def _pg_spec(path: Path, schema: str, **kw: Any) -> Path:
    spec = write_spec(path, lateness="2h", **kw)
    spec.write_text(spec.read_text() + f"store: {{kind: postgres, schema: {schema}}}\n")
    return spec


def _consumed(dsn: str, schema: str) -> int:
    """Events the store holds positions for (a fresh topic: offsets start at 0)."""
    try:
        with psycopg.connect(dsn, connect_timeout=3) as con:
            row = con.execute(f"SELECT coalesce(sum(pos), 0) FROM {schema}.positions").fetchone()  # type: ignore[arg-type]
    except psycopg.Error:
        return -1
    return int(row[0]) if row else 0


def _wait_consumed(dsn: str, schema: str, total: int, timeout: float, *procs: Any) -> None:
    deadline = time.monotonic() + timeout
    while (done := _consumed(dsn, schema)) < total:
        for p in procs:
            assert p.poll() is None, f"an engine exited {p.returncode} at {done} of {total}"
        assert time.monotonic() < deadline, f"the store holds {done} of {total} events"
        time.sleep(0.3)


def _check_store(store: PgStore, spec: Path, events: list[dict[str, Any]], t0: int) -> None:
    """Every card's hour buckets and a few stitched queries equal brute force."""
    lo, hi = t0 - 60_000, t0 + HOUR + 60_000
    rows = store.select(
        "SELECT key, sum(count), sum(sum) FROM buckets WHERE metric = 'card' AND tier = 'hour' "
        "GROUP BY key"
    )
    totals = {str(k): (int(c), float(s)) for k, c, s in rows}
    cards = sorted({str(e["card"]) for e in events})
    assert sorted(totals) == cards
    for card in cards:
        want = brute(events, card, lo, hi)
        assert totals[card][0] == want["count"], card
        assert math.isclose(totals[card][1], want["sum"], rel_tol=1e-9, abs_tol=1e-6), card
    full = load_spec(spec)
    rnd = random.Random(11)
    for card in rnd.sample(cards, 15):
        a = rnd.randint(lo, hi)
        b = rnd.randint(a + 1, hi + 1)
        got = query_range(full, store, "card", card, a, b)
        eff = got["effective"]
        want = brute(events, card, eff["from"], eff["to"])
        assert got["count"] == want["count"], (card, eff)
        assert math.isclose(got.get("sum") or 0.0, want["sum"], rel_tol=1e-9, abs_tol=1e-6)


def _wait_members(bootstrap: str, group: str, timeout: float) -> None:
    """Until both engines hold partitions (tolerating the coordinator still settling)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_assigned(bootstrap, group, members=2, partitions=PARTITIONS, timeout=timeout)
            return
        except KafkaException:
            assert time.monotonic() < deadline, "the group never settled"
            time.sleep(1.0)


def _store_cases(store: PgStore) -> list[tuple[str, str]]:
    return [(str(r), str(e)) for r, e in store.select("SELECT rule, event_id FROM cases")]


def test_two_engines_one_killed_twice_stay_exact(
    kafka_broker: KafkaBroker,
    pg_cluster: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two ``riskstream run`` in one group on a 4-partition topic, one PostgreSQL store.

    B is SIGKILLed twice mid-run and restarted each time; A takes B's partitions over
    (from the store's positions) and gives them back. Aggregates equal brute force, the
    case set equals an uninterrupted single-engine run's, and no case id repeats.
    """
    monkeypatch.setenv("RISKSTREAM_PG_DSN", pg_cluster.dsn)
    bootstrap = kafka_broker.bootstrap
    topic = unique_topic("pg-shared")
    create_topics(bootstrap, (topic, PARTITIONS))
    t0 = base_time()
    events = make_events(N_EVENTS, seed=21, t0=t0)
    produce(bootstrap, topic, events[: N_EVENTS // 4])
    schema, group = unique_schema("two"), unique_topic("pg-two")
    specs = {
        n: _pg_spec(
            tmp_path / f"{n}.yaml",
            schema,
            brokers=bootstrap,
            topic=topic,
            group=group,
            cases_file=tmp_path / f"{n}-cases.jsonl",
        )
        for n in ("a", "b")
    }
    a = start_engine(specs["a"], tmp_path / "a")
    b = start_engine(specs["b"], tmp_path / "b")
    kills = []
    for i, chunk in enumerate((events[N_EVENTS // 4 : N_EVENTS // 2], events[N_EVENTS // 2 :])):
        # B owns partitions and the store has moved on: kill B in the middle of a stream.
        _wait_members(bootstrap, group, 180)
        feeder = threading.Thread(
            target=produce, args=(bootstrap, topic, chunk), kwargs={"rate": 3_000.0}
        )
        feeder.start()
        _wait_consumed(pg_cluster.dsn, schema, N_EVENTS // 8 + i * N_EVENTS // 4, 180, a, b)
        b.send_signal(signal.SIGKILL)
        b.wait()
        kills.append(_consumed(pg_cluster.dsn, schema))
        b = start_engine(specs["b"], tmp_path / "b")
        feeder.join()
    _wait_members(bootstrap, group, 180)  # the restarted B is up (SIGTERM is then clean)
    _wait_consumed(pg_cluster.dsn, schema, N_EVENTS, 300, a, b)
    assert stop_engine(b) == 0, (tmp_path / "b.log").read_text()[-3000:]
    assert stop_engine(a) == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert any(0 < k < N_EVENTS for k in kills), kills  # killed mid-run

    # The reference: one uninterrupted engine over the same topic (its own group, DuckDB).
    single = write_spec(
        tmp_path / "single.yaml",
        brokers=bootstrap,
        topic=topic,
        group=unique_topic("single"),
        cases_file=tmp_path / "single-cases.jsonl",
        lateness="2h",
    )
    run_cli("run", "-c", str(single), "--data-dir", str(tmp_path / "single"), "--until-end", "-q")
    reference = {(c["rule"], c["event_id"]) for c in cases_in_file(tmp_path / "single-cases.jsonl")}
    assert reference == expected_cases(events)

    store = PgStore(pg_cluster.dsn, schema, pipeline="kpay")
    in_store = _store_cases(store)
    assert len(in_store) == len(set(in_store)) and set(in_store) == reference
    ids = [str(r[0]) for r in store.select("SELECT case_id FROM cases")]
    assert len(ids) == len(set(ids))
    delivered = [
        (c["rule"], c["event_id"])
        for n in ("a", "b")
        for c in cases_in_file(tmp_path / f"{n}-cases.jsonl")
    ]
    assert len(delivered) == len(set(delivered)), "a case was delivered twice"
    assert set(delivered) == reference
    _check_store(store, specs["a"], events, t0)
    for n in ("a", "b"):
        assert not (tmp_path / n / "quarantine.jsonl").read_text()


def test_postgres_restart_under_a_running_engine(
    kafka_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL stops (fast shutdown) while the engine streams, then starts again: the
    engine waits (and says so), then goes on; nothing is lost or counted twice."""
    pg = cluster_or_fail(tmp_path / "pg")
    try:
        monkeypatch.setenv("RISKSTREAM_PG_DSN", pg.dsn)
        bootstrap = kafka_broker.bootstrap
        topic = unique_topic("pg-restart")
        create_topics(bootstrap, (topic, PARTITIONS))
        t0 = base_time()
        events = make_events(20_000, seed=23, t0=t0)
        schema = unique_schema("restart")
        spec = _pg_spec(
            tmp_path / "spec.yaml",
            schema,
            brokers=bootstrap,
            topic=topic,
            group=unique_topic("pg-restart"),
            cases_file=tmp_path / "cases.jsonl",
        )
        produce(bootstrap, topic, events[:10_000])
        # Not quiet (-q silences the log): the waiting lines are checked below.
        proc = subprocess.Popen(
            [*RISKSTREAM, "run", "-c", str(spec), "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "engine.log").open("ab"),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )
        _wait_consumed(pg.dsn, schema, 10_000, 120, proc)
        pg.stop()
        produce(bootstrap, topic, events[10_000:15_000])
        time.sleep(4.0)
        assert proc.poll() is None, "the engine must wait for PostgreSQL, not exit"
        pg.start()
        produce(bootstrap, topic, events[15_000:])
        _wait_consumed(pg.dsn, schema, len(events), 180, proc)
        assert stop_engine(proc) == 0, (tmp_path / "engine.log").read_text()[-3000:]
        log = (tmp_path / "engine.log").read_text()
        assert f"waiting for PostgreSQL at 127.0.0.1:{pg.port}" in log
        want = expected_cases(events)
        got = [(c["rule"], c["event_id"]) for c in cases_in_file(tmp_path / "cases.jsonl")]
        assert len(got) == len(set(got)) and set(got) == want
        store = PgStore(pg.dsn, schema, pipeline="kpay")
        assert sorted(_store_cases(store)) == sorted(want)
        _check_store(store, spec, events, t0)
        store.close()
    finally:
        pg.destroy()
