#!/usr/bin/env python3
"""Spark runner benchmark: events/s with 1 and 2 executor cores, micro-batch latency p50/p99,
and the embedded engine on the same topic in the same run.

    .venv/bin/python bench/spark.py                  # 20k events, batches of 5k (a few minutes)
    .venv/bin/python bench/spark.py --events 100000 --batch 20000

A real Kafka broker (tools/kafka.py) in a temporary dir; the bench spec (bench/specs/bench.yaml)
over a 4-partition topic keyed at random; each engine in its own process with a fresh DuckDB
store, ``--until-end``. Spark's figures include its session start (reported apart: the time to
the first batch is not throughput). Needs ``pip install -e '.[spark]'``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.kafka import KafkaBroker  # noqa: E402

SPEC = ROOT / "bench" / "specs" / "bench.yaml"
PY = sys.executable


def produce(bootstrap: str, topic: str, path: Path) -> int:
    """Every event to a random one of 4 partitions, timestamps 1 ms apart in file order."""
    from confluent_kafka import Producer

    rnd = random.Random(5)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    lines = [x for x in path.read_bytes().splitlines() if x.strip()]
    base = int(time.time() * 1000) - len(lines)
    for i, line in enumerate(lines):
        while True:
            try:
                p.produce(topic, value=line, partition=rnd.randrange(4), timestamp=base + i)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    return len(lines)


def run(cmd: list[str], cwd: Path) -> tuple[float, dict[str, object]]:
    out = cwd / "summary.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--summary-json", str(out), "-q"], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=5_000, help="events per micro-batch")
    ap.add_argument("--cores", default="1,2", help="executor cores to try (local[N])")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="riskstream-spark-bench-") as tmp:
        work = Path(tmp)
        events = work / "events.jsonl"
        subprocess.run(
            [
                PY,
                "-m",
                "riskstream.cli",
                "generate",
                "--events",
                str(args.events),
                "--out",
                str(events),
            ],
            check=True,
            capture_output=True,
        )
        spec = work / "bench.yaml"
        text = re.sub(r"(?m)^batch_size: .*$", f"batch_size: {args.batch}", SPEC.read_text())
        spec.write_text(text)
        with KafkaBroker(work / "kafka") as broker:
            broker.create_topic("bench", partitions=4)
            n = produce(broker.bootstrap, "bench", events)
            src = f"kafka://{broker.bootstrap}/bench"
            rows = []
            d = work / "embedded"
            d.mkdir()
            wall, s = run(
                [
                    PY,
                    "-m",
                    "riskstream.cli",
                    "run",
                    "-c",
                    str(spec),
                    "--source",
                    src,
                    "--data-dir",
                    str(d),
                    "--until-end",
                ],
                d,
            )
            rows.append(("embedded", n / wall, s.get("events_per_s"), "-", "-", s.get("cases")))
            for cores in args.cores.split(","):
                d = work / f"spark{cores}"
                d.mkdir()
                cmd = [
                    PY,
                    "-m",
                    "riskstream.cli",
                    "run",
                    "-c",
                    str(spec),
                    "--engine",
                    "spark",
                    "--master",
                    f"local[{cores}]",
                    "--source",
                    src,
                    "--data-dir",
                    str(d),
                    "--until-end",
                ]
                wall, s = run(cmd, d)
                sp = s["spark"]
                assert isinstance(sp, dict)
                rows.append(
                    (
                        f"spark local[{cores}]",
                        n / wall,
                        s.get("events_per_s"),
                        sp["batch_p50_s"],
                        sp["batch_p99_s"],
                        s.get("cases"),
                    )
                )
    print(f"{n} events, 4 partitions keyed at random, micro-batches of {args.batch}\n")
    print(
        "| engine | events/s (wall, with start-up) | events/s (processing) | batch p50 s | batch p99 s | cases |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, wall_rate, rate, p50, p99, cases in rows:
        print(f"| {name} | {wall_rate:,.0f} | {rate} | {p50} | {p99} | {cases} |")


if __name__ == "__main__":
    main()
