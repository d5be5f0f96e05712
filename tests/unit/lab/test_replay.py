"""Replay: features and rule hits over a source equal a brute-force evaluation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from riskstream.errors import SpecError
from riskstream.lab.replay import replay, source_events, warmup_ms
from riskstream.spec.model import PipelineSpec
from tests.unit.lab.brute import features

T0 = 1_767_600_000_000


def _spec() -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "r",
            "event": {"time": "t", "id": "id"},
            "labels": {"field": "fraud"},
            "batch_size": 700,
            "metrics": {
                "card": {"dimension": ["card"], "value": "amount", "stats": ["count", "sum"]},
                "unused": {"dimension": ["merchant"]},
            },
        }
    )


def _events(n: int, seed: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        t = T0 + i * 900 - (rnd.randint(0, 600_000) if rnd.random() < 0.1 else 0)
        e: dict[str, object] = {
            "id": f"e{i}",
            "t": t,
            "card": f"c{rnd.randint(0, 30)}",
            "amount": rnd.randint(1, 100),
        }
        if rnd.random() < 0.5:
            e["fraud"] = rnd.choice([True, False, 1, 0])
        out.append(e)
    return out


def test_features_rules_and_labels_equal_brute_force(tmp_path: Path) -> None:
    events = _events(4000, 3)
    path = tmp_path / "ev.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    spec = _spec()
    got = replay(
        spec,
        source_events(spec, f"file:{path}"),
        ["card.count(5m)", "card.sum(3600s)"],
        rules={"hot": "card.count(5m) >= 6 and amount > 50"},
    )
    assert got.columns == [
        "event_id",
        "event_time",
        "label",
        "card.count(5m)",
        "card.sum(3600s)",
        "hot",
    ]
    assert got["event_id"].to_list() == [e["id"] for e in events]
    c5 = features(events, "card", "amount", 300_000)
    s1h = features(events, "card", "amount", 3_600_000)
    assert got["card.count(5m)"].to_list() == [float(c) for c, _ in c5]
    assert got["card.sum(3600s)"].to_list() == pytest.approx([s for _, s in s1h])
    want_hot = [
        c >= 6 and float(str(e["amount"])) > 50 for (c, _), e in zip(c5, events, strict=True)
    ]
    assert got["hot"].to_list() == want_hot
    want_labels = [None if "fraud" not in e else int(bool(e["fraud"])) for e in events]
    assert got["label"].to_list() == want_labels


def test_range_filter_and_stored_labels_override(tmp_path: Path) -> None:
    import polars as pl

    events = _events(500, 4)
    path = tmp_path / "ev.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    spec = _spec()
    lo, hi = T0 + 100_000, T0 + 300_000
    stored = pl.DataFrame({"event_id": ["e200", "e201"], "label": [1, 0]})
    got = replay(spec, source_events(spec, f"file:{path}"), [], labels=stored, from_ms=lo, to_ms=hi)
    inside = [e for e in events if lo <= int(str(e["t"])) < hi]
    assert got["event_id"].to_list() == [e["id"] for e in inside]
    labels = dict(zip(got["event_id"], got["label"], strict=True))
    assert (labels["e200"], labels["e201"]) == (1, 0)


def test_warmup_is_the_longest_window_and_bad_rules_name_their_path() -> None:
    spec = _spec()
    assert warmup_ms(spec, ["card.count(5m)"], {"x": "card.sum(1h) > 1"}) == 3_601_000
    with pytest.raises(SpecError, match=r"rules\.x\.when: col 1"):
        warmup_ms(spec, [], {"x": "crd.count(1m) > 1"})
