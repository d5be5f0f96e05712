"""The engine thread alone: ``Pipeline.process`` over the first N lines of a file, in batches.

No source, store or writer: what one engine step costs per event, for before/after runs of
two source trees in one session (alternate them; the machine is shared):

    PYTHONPATH=/tmp/before/src .venv/bin/python bench/engine_step.py ev.jsonl --events 200000
    .venv/bin/python bench/engine_step.py ev.jsonl --events 200000 --tails

``--tails`` also prints each feature group's tail (rows, MiB) at the end: the engine's own
memory for the spec, without the store. ``--index`` feeds the serving process's range index
(``query.index``) as ``riskstream run --serve`` does, and prints its size and runs at the end.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.engine.pipeline import Pipeline
from riskstream.query.index import RangeIndex
from riskstream.query.runs import SCHEMA
from riskstream.spec.load import load_spec

SPEC = Path(__file__).parent / "specs" / "bench.yaml"


class _Empty:
    """An empty store for the index to load from."""

    def meta(self) -> dict[str, str]:
        return {}

    def buckets(self, metric: str, tier: str, key: str | None, lo: int, hi: int) -> pl.DataFrame:
        return pl.DataFrame(schema=SCHEMA)


def main() -> None:
    """Time the batches and print events/s (and the tails with ``--tails``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--spec", type=Path, default=SPEC)
    ap.add_argument("--tails", action="store_true")
    ap.add_argument("--index", action="store_true")
    args = ap.parse_args()
    p = Pipeline(load_spec(args.spec))
    index = RangeIndex(p.spec) if args.index else None
    if index is not None:
        index.load(_Empty(), None)
        p.listener = index
    elapsed = 0.0
    n = 0
    with args.file.open("rb") as f:
        while n < args.events:
            lines = [x for x in (f.readline().rstrip(b"\n") for _ in range(args.batch)) if x]
            if not lines:
                break
            batch = RawBatch(lines, [f"f@{n + j}" for j in range(len(lines))])
            t0 = time.perf_counter()
            out = p.process(batch)
            if (n // args.batch) % 10 == 9:  # as the runner does every checkpoint
                p.take_checkpoint("bench", {}, [], defer=True)
            elapsed += time.perf_counter() - t0
            assert not out.quarantined, out.quarantined[:3]
            n += len(lines)
    print(f"{n:,} events in {elapsed:.2f} s: {n / elapsed:,.0f} events/s")
    if index is not None:
        runs = {m: index.runs(m) for m in sorted(index.metrics)}
        print(f"  range index: {index.nbytes() / 2**20:.1f} MiB of arrays, runs {runs}")
    if args.tails:
        total = 0.0
        for (metric, tier), g in p.feature_groups.items():
            frames = [*g.tail, *g.values]
            size = sum(fr.estimated_size() for fr in frames)
            total += size
            rows = sum(fr.height for fr in frames)
            print(f"  {metric}/{tier}: {rows:,} rows, {size / 2**20:.0f} MiB")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  tails {total / 2**20:.0f} MiB; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
