"""Backtest over archived events equals a brute-force evaluation of the rule (hypothesis).

One real run archives out-of-order events spread over three days; hypothesis then draws
rules (count/sum features with windows from 1 s to 1 day, and/or, thresholds) and time
ranges with unaligned bounds, and compares hits, TP/FP and per-day counts with plain Python.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from riskstream.lab.archive import ArchiveRangeError
from riskstream.lab.backtest import backtest_archive
from riskstream.lab.replay import stored_labels
from riskstream.spec.load import load_spec
from tests.conftest import run_cli
from tests.unit.lab.brute import features

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
SPAN = int(2.5 * 86_400_000)
N = 6000
WINDOWS = ["1s", "5s", "30s", "1m", "90s", "5m", "10m", "1h", "3h", "12h", "1d"]
WINDOW_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

SPEC = """
name: prop
event: {time: t, id: id}
archive: {retention: 30d}
labels: {field: fraud}
checkpoint: {every: 50ms, events: 700}
batch_size: 300
metrics:
  card: {dimension: [card], value: amount, stats: [count, sum]}
  shop: {dimension: [shop], value: amount, stats: [count, sum]}
rules:
  existing: {when: card.count(1h) >= 3}
"""


def _events() -> list[dict[str, Any]]:
    rnd = random.Random(21)
    out: list[dict[str, Any]] = []
    for i in range(N):
        t = T0 + SPAN * i // N
        if rnd.random() < 0.15:
            t -= rnd.randint(1, 1_200_000)  # up to 20 minutes late
        e: dict[str, Any] = {
            "id": f"p{i}",
            "t": t,
            "card": f"c{int(rnd.paretovariate(1.3)) % 40}",
            "shop": f"s{rnd.randint(0, 9)}",
            "amount": rnd.randint(1, 200),
        }
        if rnd.random() < 0.7:
            e["fraud"] = rnd.random() < 0.2
        out.append(e)
    return out


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> _Archived:
    tmp = tmp_path_factory.mktemp("prop")
    events = _events()
    (tmp / "ev.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp / "spec.yaml").write_text(SPEC)
    run_cli(
        "run", "-c", str(tmp / "spec.yaml"), "--source", f"file:{tmp / 'ev.jsonl'}",
        "--data-dir", str(tmp / "data"), "--until-end", "-q",
    )  # fmt: skip
    return _Archived({"tmp": tmp, "events": events, "spec": load_spec(tmp / "spec.yaml")})


class _Archived(dict[str, Any]):
    """The fixture's data, with a short repr (hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<archived run in {self['tmp']}>"


def _ms(window: str) -> int:
    return int(window[:-1]) * WINDOW_MS[window[-1]]


terms = st.tuples(
    st.sampled_from(["card", "shop"]),
    st.sampled_from(["count", "sum"]),
    st.sampled_from(WINDOWS),
    st.integers(1, 400),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure shows as drawn
)
@given(
    parts=st.lists(terms, min_size=1, max_size=2),
    joiner=st.sampled_from(["and", "or"]),
    lo=st.integers(0, SPAN - 1),
    length=st.integers(1, SPAN),
)
def test_backtest_equals_brute_force(
    archived: dict[str, Any],
    parts: list[tuple[str, str, str, int]],
    joiner: str,
    lo: int,
    length: int,
) -> None:
    events, spec = archived["events"], archived["spec"]
    when = f" {joiner} ".join(f"{m}.{s}({w}) >= {k}" for m, s, w, k in parts)
    frm, to = T0 + lo, T0 + lo + length
    # Brute force: each term over all events in file (ingestion) order.
    fired = [joiner == "and"] * len(events)
    for metric, stat, window, k in parts:
        vals = features(events, metric, "amount", _ms(window))
        hit = [(c if stat == "count" else s) >= k for c, s in vals]
        fired = [
            (a and b) if joiner == "and" else (a or b) for a, b in zip(fired, hit, strict=True)
        ]
    per_day: dict[str, list[int]] = {}
    hits = tp = fp = labelled = pos = n = 0
    for e, f in zip(events, fired, strict=True):
        if not frm <= e["t"] < to:
            continue
        n += 1
        label = None if "fraud" not in e else int(e["fraud"])
        day = per_day.setdefault(_day(e["t"]), [0, 0, 0])
        day[0] += 1
        labelled += label is not None
        pos += label == 1
        if f:
            hits += 1
            day[1] += 1
            tp += label == 1
            fp += label == 0
            day[2] += label == 1
    run = lambda: backtest_archive(  # noqa: E731
        spec, archived["tmp"] / "data", "cand", when, from_ms=frm, to_ms=to,
        labels=stored_labels(archived["tmp"] / "data"),
    )  # fmt: skip
    if n == 0:
        with pytest.raises(ArchiveRangeError, match="no archived events from"):
            run()
        return
    got = run()
    assert (got["events"], got["hits"], got["labelled"]) == (n, hits, labelled)
    assert (got["true_positives"], got["false_positives"]) == (tp, fp)
    assert got["precision"] == (tp / (tp + fp) if tp + fp else None)
    assert got["recall"] == (tp / pos if pos else None)
    assert got["per_day"] == [
        {"day": d, "events": v[0], "hits": v[1], "true_positives": v[2]}
        for d, v in sorted(per_day.items())
    ]
    assert len(got["sample"]) == min(20, hits)


def _day(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def test_no_archive_in_range_names_the_archived_range(archived: dict[str, Any]) -> None:
    proc = run_cli(
        "backtest", "-c", str(archived["tmp"] / "spec.yaml"), "--rule", "existing",
        "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z",
        "--data-dir", str(archived["tmp"] / "data"), check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "no archived events from 2020-01-01T00:00:00.000Z" in proc.stderr
    assert f"holds {N} events from 2026-01-0" in proc.stderr
