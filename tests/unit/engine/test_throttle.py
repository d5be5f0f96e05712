"""``once_per`` throttles: the cases raised equal a brute-force replay in ingestion order,
however the stream is cut into batches (the engine skips throttled hits before building
their case bodies, and must decide exactly as the sequential rule does)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.engine.pipeline import Pipeline
from riskstream.spec.load import parse_spec

NOW = 1_767_600_000_000

SPEC = """\
name: throttle
event:
  time: ts
  id: id
  max_lateness: 1h
  fields: {card: str, amount: float}
metrics:
  card: {dimension: [card], value: amount, stats: [count]}
rules:
  big:
    when: amount > 50
    action: review
    once_per: {key: card, within: 10s}
  any_big:
    when: amount > 80
    action: tag
"""


def _brute(events: list[tuple[str, int, float]]) -> set[tuple[str, str]]:
    until: dict[str, int] = {}
    out: set[tuple[str, str]] = set()
    for i, (card, t, amount) in enumerate(events):
        if amount > 80:
            out.add(("any_big", f"e{i}"))
        if amount > 50:
            if card in until and t < until[card]:
                continue
            until[card] = t + 10_000
            out.add(("big", f"e{i}"))
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(0, 30).map(lambda s: s * 1000),  # whole seconds: hits at a throttle's end
            st.sampled_from([10.0, 60.0, 90.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(1, 20), min_size=1, max_size=8),
)
def test_once_per_equals_sequential_replay(
    events: list[tuple[str, int, float]], cuts: list[int]
) -> None:
    events = [(c, NOW - 60_000 + t, a) for c, t, a in events]
    p = Pipeline(parse_spec(SPEC), clock=lambda: NOW)
    lines = [
        orjson.dumps({"id": f"e{i}", "ts": t, "card": c, "amount": a})
        for i, (c, t, a) in enumerate(events)
    ]
    got: set[tuple[str, str]] = set()
    i = k = 0
    while i < len(lines):
        j = min(len(lines), i + cuts[k % len(cuts)])
        out = p.process(RawBatch(lines[i:j], [f"f@{x}" for x in range(i, j)]))
        assert not out.quarantined
        got |= {(c.rule, c.event_id or "") for c in out.cases}
        i, k = j, k + 1
    assert got == _brute(events)
