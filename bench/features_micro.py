"""Micro-benchmark of the sliding-feature functions on realistic inputs, against a baseline.

Runs the benchmark spec (``bench/specs/bench.yaml``) over the synthetic stream, records the
arguments of every call to ``compute``, ``compute_distinct`` and ``gather_keys`` (and of the
tail upkeep, ``state_rows`` and ``keyed``) for a few batches once the tails are full, then
times each recorded call with the working-tree functions and with a baseline revision loaded
from ``git show REV:...`` into a temporary directory (nothing is written to the tree). The
answers are compared too (counts and distincts equal, floats within 1e-9).

    .venv/bin/python bench/features_micro.py                   # baseline b5228e8
    .venv/bin/python bench/features_micro.py --baseline ad5b6c1 --repeat 9
    .venv/bin/python bench/features_micro.py --no-baseline     # the working tree alone

Figures are per batch of ``--batch`` events (the sum over the recorded batches divided by
their number): the median and the minimum over ``--repeat`` rounds, baseline and current
alternating, so both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from riskstream.core import keys as corekeys
from riskstream.core.keys import HASH, KEY
from riskstream.core.stats import CATEGORY
from riskstream.engine import distinct_features as dfeat
from riskstream.engine import features as feat
from riskstream.engine import pipeline as pipeline_mod
from riskstream.engine.pipeline import Pipeline
from riskstream.spec.load import load_spec
from riskstream.synthetic.generator import GeneratorSource

ROOT = Path(__file__).resolve().parent.parent
FEATURES = "src/riskstream/engine/features.py"
DISTINCT = "src/riskstream/engine/distinct_features.py"
Call = tuple[str, tuple[Any, ...]]


def record(
    spec_path: Path, events: int, batch: int, seed: int, skip: int
) -> tuple[list[Call], int]:
    """Run the pipeline; return the feature calls of the batches after the first ``skip``."""
    calls: list[Call] = []
    state = {"batch": 0}

    def spy(name: str, fn: Callable[..., Any], copy_frames: bool = False) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            if state["batch"] >= skip:
                saved = (list(args[0]), *args[1:]) if copy_frames else args
                calls.append((name, saved))
            return fn(*args)

        return wrapper

    originals = {
        (feat, "compute"): feat.compute,
        (pipeline_mod, "gather_keys"): pipeline_mod.gather_keys,
        (feat, "state_rows"): feat.state_rows,
        (pipeline_mod, "keyed"): pipeline_mod.keyed,
        (dfeat, "compute_distinct"): dfeat.compute_distinct,
    }
    for (module, name), fn in originals.items():
        setattr(module, name, spy(name, fn, copy_frames=name == "gather_keys"))
    try:
        pipe = Pipeline(load_spec(spec_path))
        source = GeneratorSource(events, seed)
        while (raw := source.read_batch(batch, 0.0)) is not None:
            pipe.process(raw)
            state["batch"] += 1
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return calls, max(state["batch"] - skip, 1)


def load_baseline(rev: str, where: Path) -> tuple[ModuleType, ModuleType]:
    """The two modules at ``rev``, importable side by side with the working tree's."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    (where / "baseline_features.py").write_text(show(FEATURES))
    distinct = show(DISTINCT).replace(
        "from riskstream.engine.features import", "from baseline_features import"
    )
    (where / "baseline_distinct.py").write_text(distinct)
    sys.path.insert(0, str(where))
    modules = []
    for name in ("baseline_features", "baseline_distinct"):
        spec = importlib.util.spec_from_file_location(name, where / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


def _keys_of(features: ModuleType) -> ModuleType:
    """Where ``gather_keys``/``keyed`` live: in features.py before the core split, else core.keys."""
    return features if hasattr(features, "gather_keys") else corekeys


def functions(features: ModuleType, distinct: ModuleType) -> dict[str, Callable[..., Any]]:
    return {
        "compute": features.compute,
        "compute_distinct": distinct.compute_distinct,
        "gather_keys": lambda frames, keys, schema: _keys_of(features).gather_keys(
            list(frames), keys, schema
        ),
        "state_rows": features.state_rows,
        "keyed": _keys_of(features).keyed,
    }


def same(name: str, a: pl.DataFrame, b: pl.DataFrame) -> str | None:
    """None when ``a`` and ``b`` give the same answer, else what differs."""
    if name in ("gather_keys", "state_rows", "keyed"):
        # Same rows in any order (group-by sums may round differently from run to run).
        cols = sorted(set(a.columns) & set(b.columns))
        by = [c for c in (KEY, "b", CATEGORY, HASH) if c in cols]
        a, b = a.select(cols).sort(by), b.select(cols).sort(by)
        if a.height != b.height:
            return f"{name}: {a.height} rows != {b.height}"
    if a.columns != b.columns:
        return f"{name}: columns {a.columns} != {b.columns}"
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype != y.dtype or not (x.is_null() == y.is_null()).all():
            return f"{name}.{col}: dtype or nulls differ"
        if not x.dtype.is_float():
            if not x.equals(y):
                return f"{name}.{col}: values differ"
            continue
        xs = x.drop_nulls().to_numpy().astype(np.float64)
        ys = y.drop_nulls().to_numpy().astype(np.float64)
        if "stddev" in col:
            # sqrt of a variance that is 0 up to rounding: compare the variances instead.
            xs, ys = xs**2, ys**2
        bad = ~np.isclose(xs, ys, rtol=1e-9, atol=1e-9)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return f"{name}.{col}: {bad.sum()} values differ, e.g. {xs[i]!r} vs {ys[i]!r}"
    return None


def whole_runs(
    spec_path: Path,
    events: int,
    batch: int,
    seed: int,
    repeat: int,
    baseline: tuple[ModuleType, ModuleType] | None,
) -> None:
    """Whole ``Pipeline.process`` runs over the stream, the feature functions swapped per run,
    timing the two pipeline stages that call them (``_features``, ``_advance_tails``)."""
    spec = load_spec(spec_path)
    current = (feat, dfeat)
    names = {
        feat: ("compute", "state_rows"),
        pipeline_mod: ("gather_keys", "keyed"),
        dfeat: ("compute_distinct", "value_rows"),
    }
    saved = {(m, n): getattr(m, n) for m, ns in names.items() for n in ns}
    stages = ("_features", "_advance_tails")
    originals = {s: getattr(Pipeline, s) for s in stages}
    spent: dict[str, float] = defaultdict(float)

    def timed(stage: str) -> Callable[..., Any]:
        def wrapper(self: Pipeline, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return originals[stage](self, *args)
            finally:
                spent[stage] += time.perf_counter() - start

        return wrapper

    variants = (
        {"current": current}
        if baseline is None
        else {"baseline": baseline, **dict(current=current)}
    )
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        for stage in stages:
            setattr(Pipeline, stage, timed(stage))
        for _ in range(repeat):
            for variant, (fmod, dmod) in variants.items():
                for (m, n), fn in saved.items():
                    setattr(
                        m,
                        n,
                        (
                            getattr(dmod if m is dfeat else _keys_of(fmod), n)
                            if m is not feat
                            else getattr(fmod, n)
                        )
                        if variant != "current"
                        else fn,
                    )
                spent.clear()
                pipe = Pipeline(spec)
                source = GeneratorSource(events, seed)
                start = time.perf_counter()
                while (raw := source.read_batch(batch, 0.0)) is not None:
                    pipe.process(raw)
                results[(variant, "process (whole batch)")].append(time.perf_counter() - start)
                for stage in stages:
                    results[(variant, stage)].append(spent[stage])
    finally:
        for (m, n), fn in saved.items():
            setattr(m, n, fn)
        for stage, fn in originals.items():
            setattr(Pipeline, stage, fn)
    print(
        f"\nwhole runs of {events:,} events in batches of {batch:,}: seconds, median / min of {repeat}"
    )
    print(f"{'stage':24}" + "".join(f"{v:>18}" for v in variants))
    for stage in (*stages, "process (whole batch)"):
        cells = [results[(v, stage)] for v in variants]
        line = f"{'Pipeline.' + stage if stage in stages else stage:24}" + "".join(
            f"{statistics.median(c):8.2f} / {min(c):6.2f}" for c in cells
        )
        if len(cells) > 1:
            line += f"   {statistics.median(cells[0]) / statistics.median(cells[1]):5.2f}x"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "bench/specs/bench.yaml")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip", type=int, default=5, help="batches to run before recording")
    parser.add_argument("--repeat", type=int, default=5)
    # b5228e8: the last revision before the NumPy rewrite of these two modules.
    parser.add_argument("--baseline", default="b5228e8", help="git revision to compare with")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--whole",
        type=int,
        default=0,
        metavar="N",
        help="instead: N whole pipeline runs per variant, timing Pipeline._features and "
        "Pipeline._advance_tails",
    )
    args = parser.parse_args()
    if args.whole:
        with tempfile.TemporaryDirectory() as tmp:
            base = None if args.no_baseline else load_baseline(args.baseline, Path(tmp))
            whole_runs(args.spec, args.events, args.batch, args.seed, args.whole, base)
        return

    t0 = time.perf_counter()
    calls, batches = record(args.spec, args.events, args.batch, args.seed, args.skip)
    print(
        f"recorded {len(calls)} calls over {batches} batches of {args.batch:,} events "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    variants = {"current": functions(feat, dfeat)}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_baseline:
            variants = {"baseline": functions(*load_baseline(args.baseline, Path(tmp))), **variants}
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        problems: set[str] = set()
        for round_ in range(args.repeat + 1):  # round 0 warms up and checks the answers
            totals: dict[tuple[str, str], float] = defaultdict(float)
            for name, call_args in calls:
                answers = {}
                for variant, fns in variants.items():
                    start = time.perf_counter()
                    answers[variant] = fns[name](*call_args)
                    totals[(variant, name)] += time.perf_counter() - start
                if round_ == 0 and "baseline" in answers:
                    problem = same(name, answers["baseline"], answers["current"])
                    if problem:
                        problems.add(problem)
            if round_:
                for k, v in totals.items():
                    times[k].append(v)

    names = sorted({name for name, _ in calls}, key=list(functions(feat, dfeat)).index)
    per = 1000 / batches
    print(f"\nms per batch (median / min of {args.repeat} rounds)")
    header = f"{'function':18}" + "".join(f"{v:>20}" for v in variants)
    print(header + ("     speedup (median)" if len(variants) > 1 else ""))
    sums = {v: [0.0] * args.repeat for v in variants}
    for name in [*names, "feature stage"]:
        cells = []
        medians = []
        for variant in variants:
            if name == "feature stage":
                series = sums[variant]
            else:
                series = times[(variant, name)]
                if name in ("compute", "compute_distinct", "gather_keys"):
                    sums[variant] = [a + b for a, b in zip(sums[variant], series, strict=True)]
            med = statistics.median(series) * per
            medians.append(med)
            cells.append(f"{med:9.1f} / {min(series) * per:7.1f}")
        line = f"{name:18}" + "".join(f"{c:>20}" for c in cells)
        if len(medians) > 1:
            line += f"     {medians[0] / medians[1]:5.2f}x"
        print(line)
    print("(feature stage = compute + compute_distinct + gather_keys)")
    if problems:
        print("\nANSWERS DIFFER:\n  " + "\n  ".join(sorted(problems)))
        raise SystemExit(1)
    if len(variants) > 1:
        print("answers: same as the baseline")


if __name__ == "__main__":
    main()
