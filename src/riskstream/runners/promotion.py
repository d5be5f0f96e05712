"""Model promotions in the rule history: a hot-reloaded spec that changes a model entry.

Promoting a model is a spec change (``models: {fraud: {version: 2}}``, or a shadow entry made
live). When the engine reloads such a spec, every rule that reads the entry (``model.fraud``)
gets a new version in its history (``rule_versions``, the rule lab's table) by
``model promotion``: the rule's text is unchanged, the summary holds the old and the new
model version with their test metrics from training and what the new version scored live so
far (its score records on labelled events, e.g. while it ran as a shadow challenger).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from riskstream.models import quality
from riskstream.models.records import scores_dir
from riskstream.models.scoring import LoadedModel, ModelSet
from riskstream.spec.check import compile_rules
from riskstream.spec.model import PipelineSpec
from riskstream.store.protocol import Store

AUTHOR = "model promotion"


@dataclass(frozen=True)
class ModelChange:
    """One models: entry whose model, version or shadow flag a reload changed."""

    entry: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    rules: list[str]

    @property
    def note(self) -> str:
        """``model fraud: v1 -> v2`` (``shadow`` marked)."""

        def show(side: dict[str, Any] | None) -> str:
            if side is None:
                return "none"
            return f"{side['model']} v{side['version']}" + (" (shadow)" if side["shadow"] else "")

        return f"model.{self.entry}: {show(self.before)} -> {show(self.after)}"


def _side(model: LoadedModel, shadow: bool) -> dict[str, Any]:
    meta = model.stored.meta
    m = meta.get("metrics") or {}
    return {
        "model": model.name,
        "version": model.version,
        "shadow": shadow,
        "trained_at": meta.get("trained_at"),
        "test_range": meta.get("test_range"),
        "test": {
            k: m.get(k) for k in ("events", "fraud", "auc_pr", "precision_at_recall", "brier")
        },
    }


def model_changes(old: ModelSet, new: ModelSet, spec: PipelineSpec) -> list[ModelChange]:
    """Entries whose (model, version, shadow) differ between two loaded model sets."""
    readers: dict[str, list[str]] = {}
    for rule, compiled in compile_rules(spec).items():
        for entry in compiled.models:
            readers.setdefault(entry, []).append(rule)
    out: list[ModelChange] = []
    for entry in sorted(set(old.models) | set(new.models)):
        a = old.models.get(entry)
        b = new.models.get(entry)
        before = _side(a, old.shadow[entry]) if a is not None else None
        after = _side(b, new.shadow[entry]) if b is not None else None
        key = ("model", "version", "shadow")
        if before is not None and after is not None and all(before[k] == after[k] for k in key):
            continue
        out.append(ModelChange(entry, before, after, readers.get(entry, [])))
    return out


def live_quality(models_root: Path, model: str, version: int) -> dict[str, Any]:
    """How ``model`` v``version`` scored the labelled events it has seen live so far."""
    d = scores_dir(models_root)
    if not d.is_dir() or not any(d.glob("part-*.parquet")):
        return {"events": 0}
    frame = (
        pl.scan_parquet(str(d / "part-*.parquet"))
        .filter((pl.col("model") == model) & (pl.col("version") == version))
        .unique(subset=["entry", "event_id"], keep="last")
        .select("score", "label")
        .collect()
    )
    labelled = frame.filter(pl.col("label").is_not_null())
    y = (labelled["label"].to_numpy() >= 0.5).astype(float)
    s = labelled["score"].to_numpy()
    return {
        "events": frame.height,
        "labelled": labelled.height,
        "fraud": int(y.sum()),
        "auc_pr": quality.average_precision(s, y) if labelled.height else None,
    }


def record(store: Store, spec: PipelineSpec, changes: list[ModelChange], models_root: Path) -> int:
    """Write one rule version per (change, rule reading it); returns how many were written."""
    from riskstream.lab.specfile import rule_body

    now = int(time.time() * 1000)
    written = 0
    for change in changes:
        after = change.after
        summary: dict[str, Any] = {"model_change": {"entry": change.entry}}
        summary["model_change"]["before"] = change.before
        if after is not None:
            after = {**after, "live": live_quality(models_root, after["model"], after["version"])}
        summary["model_change"]["after"] = after
        for rule in change.rules:
            body = rule_body(spec.rules[rule])
            v = store.add_rule_version(
                rule,
                body,
                author=AUTHOR,
                status="live",
                at_ms=now,
                summary=summary,
                note=change.note,
            )
            store.set_rule_status(rule, v, "live", approved_ms=now)
            written += 1
    return written
