"""PostgreSQL store benchmarks (issue 13), small by default; run by hand:

    .venv/bin/python bench/postgres.py [--events 20000] [--runs 1] [--skip-kafka] [--work DIR]

* ``file``: ``riskstream run`` file -> DuckDB store and file -> PostgreSQL store, the same
  events and spec (``bench/specs/bench.yaml``), in the same invocation (a fresh process, data
  dir and schema each run; events/s = events / wall time, start-up included).
* ``engines``: a real Kafka broker (``tools/kafka.py``), the events in a 4-partition topic
  keyed by card; one engine vs two engines in one consumer group (``--until-end``), both on
  the PostgreSQL store; wall time from start to the last engine's exit.
* ``query``: stitched ``query_range`` over random 90-day ranges on the PostgreSQL store, in
  process, on a store holding 120 days of hour buckets (plus the day/week tiers and edge
  minute/second buckets) for 200 keys; p50/p99 of ``--queries`` queries.

A throw-away PostgreSQL cluster (``tools/postgres.py``) is started in the work dir and
destroyed at the end. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = ROOT / "bench" / "specs" / "bench.yaml"
CLI = [sys.executable, "-m", "riskstream.cli"]


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _run(args: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"riskstream {' '.join(args[:2])} failed: {proc.stderr[-2000:]}")
    return time.monotonic() - started


def _pg_spec(work: Path, schema: str, source: str | None = None) -> Path:
    text = SPEC.read_text().split("\nsinks:")[0]
    text += f"\nstore: {{kind: postgres, schema: {schema}}}\n"
    if source:
        text = text.replace(
            "source: {kind: generator, events: 1000000, seed: 7}", f"source: {source}"
        )
    path = work / f"{schema}.yaml"
    path.write_text(text)
    return path


def bench_file(work: Path, events: Path, n: int, runs: int, dsn: str) -> dict[str, Any]:
    duck, pg = [], []
    for i in range(runs):
        d = _run(
            [
                "run",
                "-c",
                str(SPEC),
                "--source",
                f"file:{events}",
                "--until-end",
                "-q",
                "--data-dir",
                str(work / f"duck-{i}"),
            ]
        )
        duck.append(d)
        log(f"file -> DuckDB run {i + 1}: {d:.1f}s ({n / d:,.0f} events/s)")
        spec = _pg_spec(work, f"file_{i}_{time.time_ns() % 10**6}")
        p = _run(
            [
                "run",
                "-c",
                str(spec),
                "--source",
                f"file:{events}",
                "--until-end",
                "-q",
                "--data-dir",
                str(work / f"pg-{i}"),
            ],
            {"RISKSTREAM_PG_DSN": dsn},
        )
        pg.append(p)
        log(f"file -> PostgreSQL run {i + 1}: {p:.1f}s ({n / p:,.0f} events/s)")
    return {"duck_eps": n / statistics.median(duck), "pg_eps": n / statistics.median(pg)}


def bench_engines(work: Path, events: Path, n: int, dsn: str) -> dict[str, Any]:
    import orjson
    from confluent_kafka import Producer
    from tests.integration.kafka.helpers import create_topics
    from tools.kafka import KafkaBroker

    broker = KafkaBroker(work / "kafka")
    broker.start()
    try:
        create_topics(broker.bootstrap, ("pg-bench", 4))
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        with events.open("rb") as f:
            for line in f:
                key = orjson.loads(line)["card_id"].encode()
                while True:
                    try:
                        producer.produce("pg-bench", key=key, value=line.rstrip(b"\n"))
                        break
                    except BufferError:
                        producer.poll(0.05)
        producer.flush(60)
        out: dict[str, Any] = {}
        for engines in (1, 2):
            group = f"pg-bench-{engines}-{time.time_ns()}"
            spec = _pg_spec(work, f"engines_{engines}_{time.time_ns() % 10**6}")
            uri = f"kafka://{broker.bootstrap}/pg-bench?group={group}"
            env = {**os.environ, "RISKSTREAM_PG_DSN": dsn}
            started = time.monotonic()
            procs = [
                subprocess.Popen(
                    [
                        *CLI,
                        "run",
                        "-c",
                        str(spec),
                        "--source",
                        uri,
                        "--until-end",
                        "-q",
                        "--data-dir",
                        str(work / f"eng-{engines}-{i}"),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for i in range(engines)
            ]
            for p in procs:
                _, err = p.communicate(timeout=1800)
                if p.returncode != 0:
                    raise RuntimeError(f"engine failed: {err.decode()[-2000:]}")
            wall = time.monotonic() - started
            out[f"eps_{engines}"] = n / wall
            log(f"Kafka -> PostgreSQL, {engines} engine(s): {wall:.1f}s ({n / wall:,.0f} events/s)")
        return out
    finally:
        broker.stop()


def bench_query(dsn: str, queries: int) -> dict[str, Any]:
    import polars as pl

    from riskstream.core.checkpoint import Checkpoint
    from riskstream.core.stats import partials
    from riskstream.query.range import query_range
    from riskstream.spec.load import parse_spec
    from riskstream.store.postgres import PgStore

    schema = f"query_{time.time_ns() % 10**6}"
    spec = parse_spec(
        "name: q\nretention: {second: 1000d, minute: 1000d, hour: 1000d}\n"
        "metrics:\n  card: {dimension: [k], value: v, stats: [count, sum, min, max, var]}\n"
    )
    store = PgStore(dsn, schema, pipeline="q", engine="bench")
    rnd = random.Random(3)
    day = 86_400_000
    t_end = 1_767_571_200_000
    t_start = t_end - 120 * day
    keys = [f"card-{i:04d}" for i in range(200)]
    # One event per key per hour over 120 days, written as a day's checkpoint at a time.
    for d in range(120):
        rows = [
            (k, t_start + d * day + h * 3_600_000 + rnd.randint(0, 3_599_999), rnd.random() * 100)
            for k in keys
            for h in range(24)
        ]
        frame = pl.DataFrame(
            {"key": [r[0] for r in rows], "_t": [r[1] for r in rows], "v": [r[2] for r in rows]}
        )
        store.write_checkpoint(
            Checkpoint(
                source="q",
                partials={("card", t): partials(frame, t) for t in spec.tiers},
                meta={"watermark": str(max(r[1] for r in rows))},
            )
        )

    def measure() -> dict[str, float]:
        times = []
        for _ in range(queries):
            key = rnd.choice(keys)
            frm = rnd.randint(t_start, t_end - 90 * day)
            to = frm + 90 * day + rnd.randint(0, 3_600_000)
            t = time.perf_counter()
            query_range(spec, store, "card", key, frm, to)
            times.append(time.perf_counter() - t)
        times.sort()
        return {
            "p50_ms": 1000 * times[len(times) // 2],
            "p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))],
            "rows": int(store.select("SELECT count(*) FROM buckets")[0][0]),
        }

    appended = measure()  # a row per checkpoint in each coarse bucket (day, week)
    store.fold()  # what the engine's compaction does once the table has doubled
    folded = measure()
    store.close()
    return {**folded, "appended": appended}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    from tools.postgres import PostgresCluster

    work = args.work or Path(tempfile.mkdtemp(prefix="rs-pg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.jsonl"
    subprocess.run(
        [*CLI, "generate", "--events", str(args.events), "--seed", "7", "--out", str(events)],
        check=True,
        capture_output=True,
    )
    pg = PostgresCluster(work / "pg").start()
    try:
        res = {"file": bench_file(work, events, args.events, args.runs, pg.dsn)}
        if not args.skip_kafka:
            res["engines"] = bench_engines(work, events, args.events, pg.dsn)
        res["query"] = bench_query(pg.dsn, args.queries)
    finally:
        pg.destroy()
    f, q = res["file"], res["query"]
    print(f"| measurement ({args.events:,} events, bench spec) | figure |")
    print("| --- | --- |")
    print(f"| file -> DuckDB store | {f['duck_eps']:,.0f} events/s |")
    print(
        f"| file -> PostgreSQL store | {f['pg_eps']:,.0f} events/s "
        f"({f['duck_eps'] / f['pg_eps']:.2f}x slower) |"
    )
    if "engines" in res:
        e = res["engines"]
        print(f"| Kafka -> PostgreSQL, 1 engine | {e['eps_1']:,.0f} events/s |")
        print(
            f"| Kafka -> PostgreSQL, 2 engines, one group | {e['eps_2']:,.0f} events/s "
            f"({e['eps_2'] / e['eps_1']:.2f}x) |"
        )
    a = q["appended"]
    print(
        f"| stitched 90-day query on PostgreSQL, appended ({a['rows']:,} bucket rows) | "
        f"p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms |"
    )
    print(
        f"| stitched 90-day query on PostgreSQL, folded ({q['rows']:,} bucket rows) | "
        f"p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
