"""``riskstream train`` and ``riskstream models compare|list``: the work behind the commands."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.errors import UsageError
from riskstream.models import quality
from riskstream.models.records import read_scores
from riskstream.models.registry import compile_features, models_root, read_version, versions
from riskstream.spec.model import PipelineSpec
from riskstream.training.dataset import build_dataset, parse_feature_list
from riskstream.training.train import RECALLS, Params, Trained, train


def event_batches(
    spec: PipelineSpec,
    data_dir: Path,
    source_uri: str | None,
    features: list[str],
    from_ms: int | None = None,
    to_ms: int | None = None,
) -> tuple[Iterator[RawBatch], str]:
    """The events to train on, in source order, and a description of where they come from.

    ``--source`` (a file, the generator ...) when given; otherwise the lab's event archive
    under the data dir (``archive:`` in the spec), from the longest feature window before
    ``from_ms`` on, so the first events' features see their whole window.
    """
    from riskstream.lab.replay import archive_events, source_events

    if source_uri is not None:
        return source_events(spec, source_uri), source_uri
    longest = max(
        (ref.window_ms for c in compile_features(spec, features) for ref in c.features), default=0
    )
    warmup = longest + 1000 if longest else 0
    batches = archive_events(spec, data_dir, from_ms, to_ms, warmup=warmup)
    first = next(batches, None)  # raises now when nothing is archived in the range
    rest: Iterator[RawBatch] = itertools.chain([first] if first is not None else [], batches)
    return rest, f"archive under {data_dir}"


def stored_labels(data_dir: Path) -> pl.DataFrame | None:
    """Analyst decisions and imported labels (event_id, label) kept in the store, if any."""
    from riskstream.lab.replay import stored_labels as read

    frame = read(data_dir)
    return frame if frame.height else None


def run_train(
    spec: PipelineSpec,
    *,
    model: str,
    data_dir: Path,
    source_uri: str | None,
    from_ms: int | None,
    to_ms: int | None,
    features: str,
    params: Params,
) -> Trained:
    """Build the training set, train, store ``DATA_DIR/models/MODEL/vN``."""
    names = parse_feature_list(spec, features)
    if not names:
        raise UsageError("no features to train on: give --features auto or a list")
    try:
        compile_features(spec, names)
    except ValueError as exc:
        raise UsageError(f"--features: {exc}") from None
    batches, where = event_batches(spec, data_dir, source_uri, names, from_ms, to_ms)
    data = build_dataset(
        spec,
        batches,
        names,
        from_ms=from_ms,
        to_ms=to_ms,
        labels=stored_labels(data_dir),
    )
    return train(
        spec,
        data,
        names,
        model,
        models_root(data_dir),
        params=params,
        source=where,
        requested=(from_ms, to_ms),
    )


def _quality(frame: pl.DataFrame) -> dict[str, Any]:
    labelled = frame.filter(pl.col("label").is_not_null())
    y = (labelled["label"].to_numpy() >= 0.5).astype(float)
    s = labelled["score"].to_numpy()
    return {
        "events": frame.height,
        "labelled": labelled.height,
        "fraud": int(y.sum()),
        "auc_pr": quality.average_precision(s, y) if labelled.height else None,
        "precision_at_recall": {
            f"{int(r * 100)}": quality.precision_at_recall(s, y, r) for r in RECALLS
        },
    }


def compare(spec: PipelineSpec, data_dir: Path, name: str) -> dict[str, Any]:
    """Champion vs challenger(s) of model ``name`` on the same labelled events.

    The champion is the spec's live (non-shadow) entry on model ``name``, the challengers its
    shadow entries; the events are those both scored since the challenger's first score.
    """
    entries = {e: es for e, es in spec.models.items() if (es.model or e) == name}
    if not entries:
        raise UsageError(f"the spec has no models entry for model {name!r}")
    champions = [e for e, es in entries.items() if not es.shadow]
    challengers = [e for e, es in entries.items() if es.shadow]
    if len(champions) != 1 or not challengers:
        raise UsageError(
            f"model {name!r}: compare needs one live entry and at least one shadow entry "
            f"(the spec has live {champions or 'none'}, shadow {challengers or 'none'})"
        )
    champion = champions[0]
    scores = read_scores(models_root(data_dir))
    labels = stored_labels(data_dir)
    if labels is not None and labels.height:
        scores = (
            scores.join(
                labels.select(
                    pl.col("event_id").cast(pl.String), pl.col("label").cast(pl.Float64).alias("_l")
                ),
                on="event_id",
                how="left",
            )
            .with_columns(pl.coalesce("_l", "label").alias("label"))
            .drop("_l")
        )
    out: dict[str, Any] = {"model": name, "champion": champion, "challengers": {}}
    champ = scores.filter(pl.col("entry") == champion)
    for entry in challengers:
        chal = scores.filter(pl.col("entry") == entry)
        if not chal.height:
            out["challengers"][entry] = {"events": 0, "note": "no scores recorded yet"}
            continue
        started = int(chal["event_time"].to_numpy().min())
        both = champ.join(chal.select("event_id"), on="event_id", how="semi")
        chal = chal.join(both.select("event_id"), on="event_id", how="semi")
        out["challengers"][entry] = {
            "since": started,
            "champion": {"version": _versions(both), **_quality(both)},
            "challenger": {"version": _versions(chal), **_quality(chal)},
        }
    return out


def _versions(frame: pl.DataFrame) -> list[int]:
    return sorted({int(v) for v in frame["version"].unique().to_list()}) if frame.height else []


def list_models(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored model version with its headline test metrics."""
    root = models_root(data_dir)
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        for v in versions(root, child.name):
            meta = read_version(root, child.name, v).meta
            m = meta.get("metrics", {})
            out.append(
                {
                    "model": child.name,
                    "version": v,
                    "spec": meta.get("spec_name"),
                    "trained_at": meta.get("trained_at"),
                    "test_range": meta.get("test_range"),
                    "auc_pr": m.get("auc_pr"),
                    "precision_at_recall": m.get("precision_at_recall"),
                    "report": str(child / f"v{v}" / "report.html"),
                }
            )
    return out
