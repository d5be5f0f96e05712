"""Micro-benchmark: batch decoding with and without the hostile-input guard (depth, repeated keys).

Decodes the synthetic stream with the benchmark spec's decoder in batches, alternating rounds
with the guard on (as shipped) and off (``guard.check`` replaced by a no-op), so both see the
same load on a shared machine. Prints events/s (best and median over ``--repeat`` rounds) and
the guard's own cost per batch.

    .venv/bin/python bench/decode_guard.py                      # 100k events, batches of 20k
    .venv/bin/python bench/decode_guard.py --events 400000 --repeat 7
    .venv/bin/python bench/decode_guard.py --pipeline          # the whole engine step per batch
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from riskstream.core.events import RawBatch
from riskstream.engine import guard
from riskstream.engine.pipeline import Pipeline
from riskstream.spec.load import load_spec
from riskstream.synthetic.generator import generate_lines

SPEC = Path(__file__).parent / "specs" / "bench.yaml"


def main() -> None:
    """Run the rounds and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="time Pipeline.process (decode, metrics, features, rules) instead of decode alone",
    )
    args = ap.parse_args()
    lines = [line for chunk in generate_lines(args.events, args.seed) for line in chunk]
    batches = [
        RawBatch(lines[i : i + args.batch], [f"b@{j}" for j in range(i, i + args.batch)])
        for i in range(0, len(lines), args.batch)
    ]
    pipeline = Pipeline(load_spec(SPEC))
    decoder = pipeline.decoder
    real = guard.check

    def off(lines: object, max_depth: int) -> dict[int, tuple[str, str]]:
        return {}

    def one_round(check: object) -> float:
        guard.check = check  # type: ignore[assignment]
        fresh = Pipeline(load_spec(SPEC)) if args.pipeline else None
        t0 = time.perf_counter()
        for b in batches:
            if fresh is not None:
                assert not fresh.process(b).quarantined
            else:
                assert not decoder.decode(b, 0, None).quarantined
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"guard on": [], "guard off": []}
    guard_only: list[float] = []
    try:
        for _ in range(args.repeat):
            times["guard on"].append(one_round(real))
            times["guard off"].append(one_round(off))
            t0 = time.perf_counter()
            for b in batches:
                real(b.lines, decoder.max_depth)
            guard_only.append(time.perf_counter() - t0)
    finally:
        guard.check = real
    n = len(lines)
    for name, ts in times.items():
        print(
            f"{name:9}: best {n / min(ts):>10,.0f} events/s  "
            f"median {n / statistics.median(ts):>10,.0f} events/s"
        )
    per_batch = min(guard_only) / len(batches) * 1000
    print(
        f"guard alone: {n / min(guard_only):,.0f} events/s "
        f"({per_batch:.1f} ms per batch of {args.batch})"
    )


if __name__ == "__main__":
    main()
