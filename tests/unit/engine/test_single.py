"""The single-event scoring path answers exactly as the batch ``Pipeline.evaluate`` on one event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.engine import single
from riskstream.engine.decode import Quarantined
from riskstream.engine.pipeline import Pipeline
from riskstream.spec.load import parse_spec

T0 = 1_767_571_200_000

SPEC = """\
name: single
event:
  time: event_time
  id: event_id
  max_lateness: 10m
  fields: {{amount: float, card_id: str, shop: str, merchant_id: str, qty: int, vip: bool}}
tiers: [second, minute, hour, day, week]
metrics:
  card: {{dimension: [card_id], value: amount, stats: [count, sum, avg, min, max, var, stddev]}}
  merchant_cards: {{dimension: [merchant_id], value: card_id, stats: [distinct]}}
  shop: {{dimension: [shop], where: "amount > 10 and not vip"}}
  pair: {{dimension: [card_id, shop], value: qty, stats: [count, sum, max]}}
lists:
  blocked: {{values: [s1, s3]}}
rules:
  big: {{when: amount > 90, action: block, score: 90}}
  busy: {{when: card.count(1m) >= 3, action: review, score: 60}}
  spend: {{when: "card.sum(1h) > 400 and card.avg(10m) > 40", action: tag, score: 20}}
  spread: {{when: "card.max(5m) - card.min(5m) > 50 or card.stddev(2m) > 20", action: review}}
  var: {{when: card.var(30s) > 100, action: tag}}
  fan: {{when: merchant_cards.distinct(10m) >= 3, action: review}}
  fan_day: {{when: merchant_cards.distinct(2h) >= 4, action: tag}}
  shop: {{when: "shop.count(5m) >= 4 and shop not in blocked", action: tag}}
  pair: {{when: "pair.sum(1m) >= 5 or pair.max(1h) > 3", action: tag}}
  nulls: {{when: "is_null(shop) and coalesce(amount, 0) / 2 > 20", action: tag}}
  week: {{when: card.count(7d) > 8, action: tag}}
  words: {{when: "{words}", action: tag}}
"""
#: one spec the Python evaluator covers entirely, one it does not (contains_any: Polars)
WORDS_PY = "shop in ['s2', 's4'] and len(card_id) == 2 or qty not in [1, 3.0] and -amount < -50"
WORDS_POLARS = "contains_any(shop, ['s2', 's4'])"

CARDS = ["c0", "c1", "c2", "c3"]
SHOPS = ["s0", "s1", "s2", "s3", "s4"]


@st.composite
def events(draw: st.DrawFn, base: int, spread: int) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, 10**6))}",
        "event_time": base + draw(st.integers(-spread, spread)),
        "amount": draw(st.integers(0, 400)) / 4,
        "card_id": draw(st.sampled_from(CARDS)),
        "shop": draw(st.sampled_from(SHOPS)),
        "merchant_id": draw(st.sampled_from(["m0", "m1"])),
        "qty": draw(st.integers(0, 5)),
        "vip": draw(st.booleans()),
    }
    for name in ("amount", "shop", "qty", "vip", "event_id", "merchant_id", "card_id"):
        if draw(st.integers(0, 12)) == 0:
            if draw(st.booleans()):
                del e[name]
            else:
                e[name] = None
    return e


ODD: list[Any] = [
    {"event_time": "2026-01-05T00:00:01Z"},  # ISO time: the batch path
    {"event_time": "yesterday"},
    {"event_time": None},
    {"event_time": True},
    {"amount": "lots"},
    {"amount": 12},  # an integer in a float field
    {"qty": 1.5},
    {"vip": "yes"},
    {"card_id": 7},  # a number in a text field: its text
    {"card_id": 2.5},
    {"card_id": True},
    {"card_id": {"nested": 1}},
    {"event_id": 42},
    {"event_time_offset": -3_600_000},  # too late
    {"event_time_float": 0.75},
]


def _odd(e: dict[str, Any], which: int) -> dict[str, Any]:
    change = dict(ODD[which])
    e = dict(e)
    for shift in ("event_time_offset", "event_time_float"):
        if shift in change:
            delta = change.pop(shift)
            if isinstance(e.get("event_time"), int):
                e["event_time"] += delta
    e.update(change)
    return e


def _pipeline(words: str) -> Pipeline:
    return Pipeline(parse_spec(SPEC.format(words=words)))


def _batch_answer(p: Pipeline, line: bytes, pos: str) -> Any:
    frame, quarantined, fired = p.evaluate_batch(RawBatch(lines=[line], positions=[pos]))
    if quarantined:
        q = quarantined[0]
        return ("quarantine", q.code, q.reason)
    names = [r.name for g in p.feature_groups.values() for r in g.requests]
    row = frame.row(0, named=True)
    return (
        {c: row[c] for c in frame.columns if c not in names},
        {n: row[n] for n in names},
        [bool(fired[r.name][0]) for r in p.rules],
    )


def _fast_answer(result: single.EventScore | Quarantined) -> Any:
    if isinstance(result, Quarantined):
        return ("quarantine", result.code, result.reason)
    return (result.row, result.features, result.fired)


@pytest.mark.parametrize("words", [WORDS_PY, WORDS_POLARS])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_single_path_equals_batch_path(words: str, data: st.DataObject) -> None:
    p = _pipeline(words)
    t = T0
    for b in range(data.draw(st.integers(1, 5), label="batches")):
        t += data.draw(st.integers(0, 400_000))
        batch = data.draw(st.lists(events(t, 90_000), min_size=1, max_size=40), label=f"b{b}")
        lines = [orjson.dumps(e) for e in batch]
        p.process(RawBatch(lines=lines, positions=[f"f@{b}.{i}" for i in range(len(lines))]))
    wm = p.watermark or t
    probes = data.draw(st.lists(events(wm, 70_000), min_size=1, max_size=12), label="probes")
    odd = data.draw(st.lists(st.integers(0, len(ODD) - 1), max_size=6), label="odd")
    for k, which in enumerate(odd):
        probes[k % len(probes)] = _odd(probes[k % len(probes)], which)
    lines = [orjson.dumps(e) for e in probes]
    positions = [f"api#{i}" for i in range(len(lines))]
    want = [_batch_answer(p, line, pos) for line, pos in zip(lines, positions, strict=True)]

    scorer = single.scorer_for(p)
    for python in (True, False):
        scorer.python = python
        together = scorer.score(lines, positions, unique_keys=True)
        assert [_fast_answer(r) for r in together] == want
        alone = [scorer.score([ln], [pos])[0] for ln, pos in zip(lines, positions, strict=True)]
        assert [_fast_answer(r) for r in alone] == want
    # Pipeline.evaluate on one event: the very frame and flags of the batch path
    for line, pos in zip(lines, positions, strict=True):
        got = p.evaluate(RawBatch(lines=[line], positions=[pos]))
        ref = p.evaluate_batch(RawBatch(lines=[line], positions=[pos]))
        assert got[0].schema == ref[0].schema
        assert got[0].rows() == ref[0].rows()
        assert [(q.code, q.reason) for q in got[1]] == [(q.code, q.reason) for q in ref[1]]
        assert {k: v.to_list() for k, v in got[2].items()} == {
            k: v.to_list() for k, v in ref[2].items()
        }


def test_python_evaluator_covers_the_plain_spec() -> None:
    p = _pipeline(WORDS_PY)
    plan = single.scorer_for(p).plan()
    assert plan.py_rules is not None and plan.py_metrics is not None
    assert single.scorer_for(_pipeline(WORDS_POLARS)).plan().py_rules is None


def test_lines_the_fast_decoder_leaves_to_the_batch_path() -> None:
    p = _pipeline(WORDS_PY)
    fast = single.scorer_for(p).fast_decoder()
    ok = orjson.dumps({"event_time": T0, "card_id": "c1"})
    assert fast.row(ok, None) is not None
    for line in (
        b'{"event_time": 1, "card_id": "a", "card_id": "b"}',  # repeated key: Polars keeps the first
        b'{"event_time": 1, "card_id": "a\\"b"}',
        b'{"event_time": 1}\n{"event_time": 2}',
        b"[1, 2]",
        b"",
        b'{"event_time": 1e400}',
    ):
        assert fast.row(line, None) is None
        got = single.scorer_for(p).score([line], ["x"])[0]
        assert _fast_answer(got) == _batch_answer(p, line, "x")
