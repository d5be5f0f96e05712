"""Backtest a rule: hits, precision and recall over past events, never touching the live state.

The events come from the archive (``--from/--to``) or any bounded source (``--source``);
features are recomputed by :func:`riskstream.lab.replay.replay` exactly as live. The
result (a dict, the JSON of ``riskstream backtest --json``)::

    {rule, when, from, to, events, hits, hit_rate, labelled, true_positives,
     false_positives, precision, recall, per_day: [{day, events, hits, true_positives}],
     overlap: {rule: shared_hits}, sample: [case, ...],
     live: {same keys, for the live version of the rule} | null,
     diff: {new_hits, lost_hits} | null}

``hits`` count the events where the condition holds (before ``once_per`` throttling);
``labelled`` the events with a label; precision = TP / (TP + FP) over labelled hits,
recall = TP / labelled fraud events (null when undefined). ``overlap`` counts the hits
shared with every other rule's live cases in the store over the same range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from riskstream.core.case import case_id_for
from riskstream.core.events import RawBatch
from riskstream.lab.replay import (
    archive_events,
    compile_rule,
    lookahead_ms,
    replay,
    warmup_ms,
)
from riskstream.spec.model import PipelineSpec

LIVE = "__live__"
SAMPLE = 20


def _counted(events: Iterable[RawBatch], progress: Callable[[int], None]) -> Iterator[RawBatch]:
    done = 0
    for batch in events:
        yield batch
        done += len(batch.lines)
        progress(done)


def backtest(
    spec: PipelineSpec,
    events: Iterable[RawBatch],
    name: str,
    when: str,
    *,
    live_when: str | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    labels: pl.DataFrame | None = None,
    live_cases: pl.DataFrame | None = None,
    base_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    sample: int = SAMPLE,
) -> dict[str, Any]:
    """Backtest rule ``name`` (condition ``when``) over raw ``events`` in ingestion order.

    ``live_when``: the live version's condition, reported alongside with the diff.
    ``live_cases``: (rule, event_id) of live cases, for ``overlap``.
    """
    compiled = compile_rule(spec, name, when)
    rules = {name: when}
    if live_when is not None:
        compile_rule(spec, name, live_when)
        rules[LIVE] = live_when
    feats = [ref.name for ref in compiled.features]
    if progress is not None:
        events = _counted(events, progress)
    frame = replay(
        spec,
        events,
        feats,
        rules=rules,
        labels=labels,
        from_ms=from_ms,
        to_ms=to_ms,
        base_dir=base_dir,
        with_raw=True,
    )
    rule = spec.rules.get(name)
    result: dict[str, Any] = {"rule": name, "when": when, "from": from_ms, "to": to_ms}
    result |= summarize(frame, name)
    result["overlap"] = _overlap(frame, name, live_cases)
    result["sample"] = _sample(
        spec,
        frame,
        name,
        feats,
        rule.action if rule else "review",
        rule.score if rule else 50.0,
        sample,
    )
    result["live"] = None
    result["diff"] = None
    if live_when is not None:
        live = {"when": live_when} | summarize(frame, LIVE)
        live["overlap"] = _overlap(frame, LIVE, live_cases, own=name)
        result["live"] = live
        new, old = frame[name], frame[LIVE]
        result["diff"] = {
            "new_hits": int((new & ~old).sum()),
            "lost_hits": int((~new & old).sum()),
        }
    return result


def summarize(frame: pl.DataFrame, column: str) -> dict[str, Any]:
    """events, hits, hit_rate, labelled, true/false positives, precision, recall, per_day."""
    hit = pl.col(column)
    tp = hit & (pl.col("label") == 1)
    fp = hit & (pl.col("label") == 0)
    row = frame.select(
        pl.len().alias("events"),
        hit.sum().alias("hits"),
        pl.col("label").is_not_null().sum().alias("labelled"),
        (pl.col("label") == 1).sum().alias("positives"),
        tp.sum().alias("tp"),
        fp.sum().alias("fp"),
    ).row(0, named=True)
    events, hits = int(row["events"]), int(row["hits"] or 0)
    tp_n, fp_n, pos = int(row["tp"] or 0), int(row["fp"] or 0), int(row["positives"] or 0)
    per_day = (
        frame.group_by(
            (pl.col("event_time") // 86_400_000 * 86_400_000)
            .cast(pl.Datetime("ms", "UTC"))
            .dt.strftime("%Y-%m-%d")
            .alias("day")
        )
        .agg(
            pl.len().alias("events"),
            hit.sum().cast(pl.Int64).alias("hits"),
            tp.sum().cast(pl.Int64).alias("true_positives"),
        )
        .sort("day")
    )
    return {
        "events": events,
        "hits": hits,
        "hit_rate": hits / events if events else 0.0,
        "labelled": int(row["labelled"] or 0),
        "true_positives": tp_n,
        "false_positives": fp_n,
        "precision": tp_n / (tp_n + fp_n) if tp_n + fp_n else None,
        "recall": tp_n / pos if pos else None,
        "per_day": per_day.to_dicts(),
    }


def _overlap(
    frame: pl.DataFrame, column: str, live_cases: pl.DataFrame | None, own: str | None = None
) -> dict[str, int]:
    """Per other rule, how many of these hits it raised a live case for."""
    if live_cases is None or not live_cases.height:
        return {}
    skip = own if own is not None else column
    ids = frame.filter(pl.col(column)).select("event_id").unique()
    shared = (
        live_cases.filter(pl.col("rule") != skip)
        .join(ids, on="event_id", how="inner")
        .group_by("rule")
        .agg(pl.col("event_id").n_unique().alias("n"))
        .sort("rule")
    )
    return {str(r): int(n) for r, n in shared.iter_rows()}


def _sample(
    spec: PipelineSpec,
    frame: pl.DataFrame,
    name: str,
    feats: list[str],
    action: str,
    score: float,
    limit: int,
) -> list[dict[str, Any]]:
    """The first ``limit`` hits as cases (what the rule would have raised)."""
    rows = frame.filter(pl.col(name)).head(limit)
    out: list[dict[str, Any]] = []
    for row in rows.iter_rows(named=True):
        out.append(
            {
                "case_id": case_id_for(spec.name, name, str(row["event_id"])),
                "pipeline": spec.name,
                "rule": name,
                "action": action,
                "score": score,
                "event_id": row["event_id"],
                "event_time": row["event_time"],
                "label": row["label"],
                "features": {f: row[f] for f in feats},
                "event": orjson.loads(row["raw"]),
            }
        )
    return out


def backtest_archive(
    spec: PipelineSpec,
    data_dir: str | Path,
    name: str,
    when: str,
    *,
    live_when: str | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    labels: pl.DataFrame | None = None,
    live_cases: pl.DataFrame | None = None,
    base_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    committed: int | None = None,
) -> dict[str, Any]:
    """:func:`backtest` over the archive of ``data_dir`` (with warm-up before ``from_ms``)."""
    rules = {name: when} | ({LIVE: live_when} if live_when is not None else {})
    events = archive_events(
        spec,
        data_dir,
        from_ms,
        to_ms,
        warmup=warmup_ms(spec, (), rules),
        lookahead=lookahead_ms(spec, (), rules),
        committed=committed,
    )
    return backtest(
        spec,
        events,
        name,
        when,
        live_when=live_when,
        from_ms=from_ms,
        to_ms=to_ms,
        labels=labels,
        live_cases=live_cases,
        base_dir=base_dir,
        progress=progress,
    )
