"""``riskstream backtest`` and ``riskstream label``: argument handling and the printed summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl

from riskstream.errors import UsageError
from riskstream.lab.backtest import backtest, backtest_archive
from riskstream.lab.replay import source_events, stored_labels
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import DB_NAME, Store


def run_backtest(
    config: Path,
    *,
    rule: str | None,
    when: str | None,
    from_ms: int | None,
    to_ms: int | None,
    source: str | None,
    data_dir: Path,
) -> dict[str, Any]:
    """Resolve the rule and the events, run the backtest, return its JSON-able result.

    ``--rule NAME`` alone backtests the spec's rule; ``--when EXPR`` alone a new rule
    (named ``candidate``); both: a new version of NAME, reported next to the live one.
    """
    spec = load_spec(config)
    if rule is None and when is None:
        raise UsageError("give --rule NAME or --when EXPR (or both: a new version of NAME)")
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise UsageError("--from must be before --to")
    live_when: str | None = None
    if when is None:
        assert rule is not None
        if rule not in spec.rules:
            known = ", ".join(sorted(spec.rules)) or "none"
            raise UsageError(f"no rule {rule!r} in {config} (rules: {known})")
        name, when = rule, spec.rules[rule].when
    else:
        name = rule or "candidate"
        if name in spec.rules and spec.rules[name].when != when:
            live_when = spec.rules[name].when
    has_store = (data_dir / DB_NAME).exists()
    labels = stored_labels(data_dir) if has_store else None
    live_cases: pl.DataFrame | None = None
    if has_store:
        live_cases = Store(data_dir, read_only=True).case_hits(from_ms, to_ms)
    base = config.parent
    if source is not None:
        return backtest(
            spec,
            source_events(spec, source),
            name,
            when,
            live_when=live_when,
            from_ms=from_ms,
            to_ms=to_ms,
            labels=labels,
            live_cases=live_cases,
            base_dir=base,
        )
    return backtest_archive(
        spec,
        data_dir,
        name,
        when,
        live_when=live_when,
        from_ms=from_ms,
        to_ms=to_ms,
        labels=labels,
        live_cases=live_cases,
        base_dir=base,
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The backtest as a few lines for the terminal."""
    lines = [
        f"rule {result['rule']}: {result['when']}",
        f"  events {result['events']:,}  hits {result['hits']:,} ({_pct(result['hit_rate'])})"
        f"  labelled {result['labelled']:,}  TP {result['true_positives']:,}"
        f"  FP {result['false_positives']:,}  precision {_pct(result['precision'])}"
        f"  recall {_pct(result['recall'])}",
    ]
    for day in result["per_day"]:
        lines.append(
            f"  {day['day']}: {day['events']:,} events, {day['hits']:,} hits,"
            f" {day['true_positives']:,} true positives"
        )
    if result["overlap"]:
        shared = ", ".join(f"{r} {n}" for r, n in result["overlap"].items())
        lines.append(f"  shared hits with live rules: {shared}")
    live = result.get("live")
    if live is not None:
        lines.append(
            f"  live version ({live['when']}): hits {live['hits']:,}"
            f"  precision {_pct(live['precision'])}  recall {_pct(live['recall'])};"
            f" new hits {result['diff']['new_hits']:,}, lost hits {result['diff']['lost_hits']:,}"
        )
    return lines


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write the result as indented JSON."""
    try:
        path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from None
