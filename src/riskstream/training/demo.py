"""The demo's model: trained on the demo's archived, labelled stream, shown next to the rules.

``riskstream demo`` runs the example pipeline (which archives its events), then trains model
``fraud`` on that archive with ``--features auto`` exactly as ``riskstream train`` would, and
prints the model's held-out quality next to each rule's precision/recall on the same events.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from riskstream.errors import RiskstreamError
from riskstream.models.registry import NotEnoughLabels
from riskstream.spec.model import PipelineSpec
from riskstream.training.commands import run_train
from riskstream.training.train import Params, Trained

DEMO_MODEL = "fraud"


def train_demo_model(spec: PipelineSpec, data_dir: Path, console: Console) -> Trained | None:
    """Train ``fraud`` on the archive under ``data_dir`` and print its report; None when the
    stream has too few labels (the message says the counts) or nothing is archived."""
    console.print(
        f"\n[bold]Training model {DEMO_MODEL!r}[/] on {spec.name}'s archived events "
        "(features auto, labels from the generator; oldest 60% train, next 20% calibrate, "
        "newest 20% test)",
        highlight=False,
    )
    t0 = time.perf_counter()
    try:
        trained = run_train(
            spec,
            model=DEMO_MODEL,
            data_dir=data_dir,
            source_uri=None,
            from_ms=None,
            to_ms=None,
            features="auto",
            params=Params(),
        )
    except NotEnoughLabels as exc:
        console.print(f"no model trained: {exc}", highlight=False)
        return None
    except RiskstreamError as exc:
        console.print(f"no model trained: {exc}", highlight=False)
        return None
    seconds = time.perf_counter() - t0
    report(console, trained, seconds)
    return trained


def report(console: Console, trained: Trained, seconds: float) -> None:
    """The model and each rule on the same held-out test events, then where the report is."""
    m = trained.meta["metrics"]
    table = Table(
        title=(
            f"Model {trained.name} v{trained.version} ({len(trained.meta['features'])} features, "
            f"{trained.meta['trees']} trees, {seconds:.1f} s) next to the rules, on the same "
            f"held-out test events ({m['events']:,}, {m['fraud']:,} fraud)"
        ),
        title_justify="left",
    )
    for col in ("detector", "precision", "recall", "flagged"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r, p in m["precision_at_recall"].items():
        threshold = m["threshold_at_recall"].get(r)
        at = f" (score >= {threshold:.3f})" if threshold == threshold else ""  # NaN: none
        table.add_row(f"model.{trained.name}{at}", f"{p:.0%}", f"{int(r)}%", "-")
    for rule, point in m.get("rules", {}).items():
        table.add_row(
            f"rule {rule}",
            f"{point['precision']:.0%}" if point["hits"] else "-",
            f"{point['recall']:.0%}",
            f"{point['hits']:,}",
        )
    console.print(table)
    best = max(
        m.get("rules", {}).values(), key=lambda p: p["precision"] * p["recall"], default=None
    )
    line = f"AUC-PR of the model: {m['auc_pr']:.3f}"
    if best is not None:
        line += f" (the best rule's precision x recall: {best['precision'] * best['recall']:.3f})"
    console.print(line, highlight=False)
    console.print(f"Report (plots, calibration, importance): {trained.path / 'report.html'}")
