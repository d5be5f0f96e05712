"""Benchmark models: scoring overhead in the engine, and training time.

    .venv/bin/python bench/models.py [--events 100000] [--train-events 100000] [--repeat 3]
                                     [--features rules|auto] [--threads 1] [--json PATH]

1. **Scoring overhead.** A 200-tree LightGBM model is trained on ``--train-events`` generated
   labelled events (seed 8) for the bench spec (``bench/specs/bench.yaml``), on the features
   its rules read plus ``amount`` (``--features rules``, the default: the model reads what the
   engine computes anyway) or on ``--features auto`` (the usual windows of every metric: the
   engine then computes more features). Then ``riskstream run --until-end`` goes over the same
   ``--events`` events (a file, seed 7), alternately without and with the model
   (``models: {fraud: {version: latest}}`` and one rule reading ``model.fraud``), ``--repeat``
   times each in a fresh data dir; the figure is the median events/s of each and the ratio.
   Target: the model costs <= 20% of the events/s.
2. **Training time.** The same ``train`` code as ``riskstream train``, split in its two parts:
   replaying the ``--train-events`` events through the engine to build the training set, and
   fitting + calibrating + reporting (LightGBM with ``--threads``). Target: 2M labelled
   events in <= 5 minutes on 2 cores (``--train-events 2000000``: minutes and ~1 GB).

A benchmark, not a test: the numbers depend on the machine and what else runs on it; the
load average at start and end is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_SPEC = ROOT / "bench" / "specs" / "bench.yaml"
MODEL_RULE = """  model_and_velocity:
    when: model.fraud > 0.9 and card.count(1h) >= 3
    action: review
    score: 85
"""


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def train_model(root: Path, events: int, features: str, threads: int) -> dict[str, Any]:
    """Train ``fraud`` (200 trees) on ``events`` generated events; time both parts."""
    from riskstream.lab.replay import source_events
    from riskstream.models.registry import models_root
    from riskstream.spec.load import load_spec
    from riskstream.spec.model import LabelsSpec
    from riskstream.training.dataset import auto_features, build_dataset, rule_features
    from riskstream.training.train import Params, train

    spec = load_spec(BENCH_SPEC)
    spec = spec.model_copy(update={"labels": LabelsSpec(field="label")})  # the generator's
    names = auto_features(spec) if features == "auto" else [*rule_features(spec), "amount"]
    t0, c0 = time.perf_counter(), time.process_time()
    data = build_dataset(spec, source_events(spec, f"generator:?events={events}&seed=8"), names)
    t1, c1 = time.perf_counter(), time.process_time()
    trained = train(
        spec, data, names, "fraud", models_root(root / "trained"), params=Params(threads=threads)
    )
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "events": events,
        "labelled": int(data["label"].is_not_null().sum()),
        "features": len(names),
        "trees": trained.meta["trees"],
        "threads": threads,
        "replay_s": round(t1 - t0, 2),
        "fit_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "replay_cpu_s": round(c1 - c0, 2),
        "fit_cpu_s": round(c2 - c1, 2),
        "replay_events_per_s": round(events / (t1 - t0)),
        "auc_pr": trained.meta["metrics"]["auc_pr"],
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_engine(
    root: Path, spec_text: str, events_file: Path, models: Path | None
) -> tuple[float, float]:
    """One ``riskstream run --until-end`` in a fresh data dir: its events/s (wall clock) and
    its events per CPU-second (user + system time of the process, all threads: steadier than
    the wall clock on a shared machine)."""
    work = Path(tempfile.mkdtemp(dir=root))
    spec = work / "spec.yaml"
    spec.write_text(spec_text)
    data = work / "data"
    if models is not None:
        shutil.copytree(models, data / "models")
    summary = work / "summary.json"
    cpu0 = _cpu()
    subprocess.run(
        [
            sys.executable, "-m", "riskstream.cli", "run", "-c", str(spec),
            "--source", f"file:{events_file}", "--data-dir", str(data),
            "--until-end", "-q", "--summary-json", str(summary),
        ],
        check=True,
        cwd=work,  # the bench spec's file sink writes cases.jsonl here
    )  # fmt: skip
    cpu = _cpu() - cpu0
    got = json.loads(summary.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return float(got["events_per_s"]), got["events"] / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="events the engine runs over")
    ap.add_argument("--train-events", type=int, default=100_000, help="events to train on")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--features", choices=("rules", "auto"), default="rules")
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads")
    ap.add_argument("--skip-engine", action="store_true", help="only the training figures")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from riskstream.synthetic.generator import write_jsonl

    out: dict[str, Any] = {"load_start": _load()}
    with tempfile.TemporaryDirectory(prefix="rs-bench-models-") as tmp:
        root = Path(tmp)
        out["training"] = train_model(root, args.train_events, args.features, args.threads)
        print(f"training: {out['training']}", flush=True)
        if not args.skip_engine:
            events_file = root / "events.jsonl"
            write_jsonl(events_file, args.events, 7)
            base = BENCH_SPEC.read_text()
            with_model = base.replace("rules:\n", "rules:\n" + MODEL_RULE, 1)
            with_model += "models: {fraud: {version: latest}}\n"
            models = root / "trained" / "models"
            plain: list[tuple[float, float]] = []
            scored: list[tuple[float, float]] = []
            for i in range(args.repeat):
                plain.append(run_engine(root, base, events_file, None))
                scored.append(run_engine(root, with_model, events_file, models))
                print(
                    f"run {i + 1}: no model {plain[-1][0]:,.0f} ev/s "
                    f"({plain[-1][1]:,.0f} per CPU-s), model {scored[-1][0]:,.0f} ev/s "
                    f"({scored[-1][1]:,.0f} per CPU-s)",
                    flush=True,
                )
            p = statistics.median(x[0] for x in plain)
            s = statistics.median(x[0] for x in scored)
            pc = statistics.median(x[1] for x in plain)
            sc = statistics.median(x[1] for x in scored)
            out["engine"] = {
                "events": args.events,
                "no_model_events_per_s": p,
                "model_events_per_s": s,
                "no_model_events_per_cpu_s": round(pc),
                "model_events_per_cpu_s": round(sc),
                "runs_no_model": plain,
                "runs_model": scored,
                "cost_wall": round(1 - s / p, 3),
                "cost_cpu": round(1 - sc / pc, 3),
            }
            print(
                f"engine over {args.events:,} events (medians of {args.repeat}): no model "
                f"{p:,.0f} ev/s, {pc:,.0f} per CPU-s; 200-tree model {s:,.0f} ev/s, "
                f"{sc:,.0f} per CPU-s: {1 - s / p:+.1%} events/s, {1 - sc / pc:+.1%} per CPU-s"
            )
    out["load_end"] = _load()
    print(f"load average at start {out['load_start']}, at end {out['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
