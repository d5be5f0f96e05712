"""Issue 12: hostile input fuzzed into a real run (embedded runner over a file source, DuckDB).

Hypothesis mixes good events with arbitrary bytes and arbitrary JSON values (deep, wide, huge
numbers, NaN, invalid UTF-8, repeated keys, extreme times). The run must end normally, every
line is counted or quarantined exactly once with a reason, every line built to be refused is
quarantined, no good line is, and the good events' aggregates equal a brute-force sum.
Lines whose fate is legitimately open (a huge number that JSON allows) use card ``hx``, which
is not compared. One fixed corpus also goes through ``riskstream run`` in a subprocess.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.query.range import query_range
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.session import sink_factory
from riskstream.sources.file import FileSource
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store
from tests.conftest import run_cli

SPEC = """\
name: fuzz
event:
  time: ts
  id: id
  max_bytes: 20000
  fields: {card: str, amount: float, n: int}
metrics:
  card: {dimension: [card], value: amount, stats: [count, sum]}
rules:
  big: {when: "amount > 500 and card.count(1m) >= 2", action: review}
batch_size: 7
"""
CARDS = ["c0", "c1", "c2", "c3"]
BASE = time.time_ns() // 1_000_000 - 2 * 3_600_000  # two hours ago: never too early
FAR = 253402300799000


def _good() -> st.SearchStrategy[tuple[str, bytes, dict[str, Any]]]:
    def make(t: int, card: str, amount: float, extra: int) -> tuple[str, bytes, dict[str, Any]]:
        event: dict[str, Any] = {"ts": BASE + t, "card": card, "amount": amount}
        event.update({f"k{i}": i for i in range(extra)})  # wide events are fine
        return "good", orjson.dumps(event), event

    return st.builds(
        make,
        st.integers(0, 3_600_000),
        st.sampled_from(CARDS),
        st.floats(0, 1000, allow_nan=False),
        st.sampled_from([0, 0, 0, 3, 400]),
    )


def _refused() -> st.SearchStrategy[tuple[str, bytes, dict[str, Any]]]:
    """Lines that must be quarantined (the tag says why, for failure messages)."""
    t = st.integers(0, 3_600_000).map(lambda d: BASE + d)
    deep = st.tuples(t, st.integers(65, 3_000)).map(
        lambda a: b'{"ts":%d,"card":"c0","amount":1,"x":%s%s}' % (a[0], b"[" * a[1], b"]" * a[1])
    )
    deep_objects = st.tuples(t, st.integers(65, 1_500)).map(
        lambda a: b'{"ts":%d,"card":"c1","x":%s1%s}' % (a[0], b'{"a":' * a[1], b"}" * a[1])
    )
    repeated = st.tuples(t, st.sampled_from(["amount", "card", "ts", "note"])).map(
        lambda a: (
            b'{"ts":%d,"card":"c2","amount":5,"%s":1,"%s":2}' % (a[0], a[1].encode(), a[1].encode())
        )
    )
    nested_repeat = t.map(lambda v: b'{"ts":%d,"card":"c2","x":{"k":1,"k":2}}' % v)
    early = st.sampled_from(
        [FAR, "9999-12-31T23:59:59Z", 1e15, 1e300, BASE + 3 * 3_600_000 + 10 * 60_000]
    ).map(lambda v: orjson.dumps({"ts": v, "card": "c3", "amount": 7.0}))
    bad_time = st.sampled_from([-1e300, "yesterday", [], {}, True]).map(
        lambda v: orjson.dumps({"ts": v, "card": "c3", "amount": 7.0})
    )
    nan = t.map(lambda v: b'{"ts":%d,"card":"c0","amount":NaN}' % v)
    bad_utf8 = t.map(lambda v: b'{"ts":%d,"card":"c1\xff\xfe","amount":1}' % v)
    wrong_type = t.map(lambda v: b'{"ts":%d,"card":"c0","n":123456789012345678901234}' % v)
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["a", "b", "card", "amount"]), inner, max_size=4)
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode())  # no "ts": missing_time, not_object or not_json
    raw = st.binary(max_size=120).filter(lambda b: b"\n" not in b and _not_an_event(b))
    return st.one_of(
        deep, deep_objects, repeated, nested_repeat, early, bad_time, nan, bad_utf8,
        wrong_type, json_values, raw,
    ).map(lambda line: ("refused", line, {}))  # fmt: skip


def _not_an_event(b: bytes) -> bool:
    try:
        v = json.loads(b)
    except (ValueError, RecursionError):
        return True
    return not (isinstance(v, dict) and "ts" in v)


def _maybe() -> st.SearchStrategy[tuple[str, bytes, dict[str, Any]]]:
    """Valid JSON whose acceptance is a judgment call: card hx, not compared."""
    t = st.integers(0, 3_600_000).map(lambda d: BASE + d)
    huge = t.map(lambda v: b'{"ts":%d,"card":"hx","amount":1e400}' % v)
    big_int = t.map(lambda v: b'{"ts":%d,"card":"hx","amount":123456789012345678901234}' % v)
    return st.one_of(huge, big_int).map(lambda line: ("maybe", line, {}))


LINES = st.lists(st.one_of(_good(), _good(), _refused(), _maybe()), min_size=1, max_size=40)


def _run(tmp: Path, lines: list[bytes]) -> tuple[Any, list[dict[str, Any]], Path]:
    path = tmp / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    spec = parse_spec(SPEC)
    data_dir = tmp / "data"
    runner = EmbeddedRunner(
        spec, FileSource(path, until_end=True, max_line_bytes=20_000), data_dir,
        sink_factory(spec, data_dir),
    )  # fmt: skip
    stats = runner.run(install_signals=False)
    quarantine = [
        orjson.loads(x) for x in (data_dir / "quarantine.jsonl").read_bytes().splitlines()
    ]
    return stats, quarantine, data_dir


def _check(tmp: Path, drawn: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    lines = [line for _, line, _ in drawn]
    stats, quarantine, data_dir = _run(tmp, lines)
    starts, off = [], 0
    for line in lines:
        starts.append(f"events.jsonl@{off}")
        off += len(line) + 1
    # Counted or quarantined, exactly once, with a reason.
    assert stats.events + len(quarantine) == len(lines)
    positions = [q["position"] for q in quarantine]
    assert len(set(positions)) == len(positions) and set(positions) <= set(starts)
    assert all(q["reason"] and q["detail"] and "\n" not in q["detail"] for q in quarantine)
    assert sum(stats.quarantined.values()) == len(quarantine)
    by_pos = {q["position"]: q["reason"] for q in quarantine}
    for (kind, line, _), pos in zip(drawn, starts, strict=True):
        if kind == "refused":
            assert pos in by_pos, line[:200]
        elif kind == "good":
            assert pos not in by_pos, (by_pos.get(pos), line[:200])
    # Aggregates of the good events equal a brute-force sum.
    spec = parse_spec(SPEC)
    store = Store(data_dir, read_only=True)
    for card in CARDS:
        amounts = [e["amount"] for kind, _, e in drawn if kind == "good" and e["card"] == card]
        got = query_range(spec, store, "card", card, BASE - 3_600_000, BASE + 4 * 3_600_000)
        assert got["count"] == len(amounts)
        if amounts:
            assert got["sum"] == pytest.approx(math.fsum(amounts), rel=1e-9, abs=1e-9)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=LINES)
def test_fuzzed_lines_are_counted_or_quarantined_and_good_aggregates_are_exact(
    tmp_path_factory: pytest.TempPathFactory, drawn: list[tuple[str, bytes, dict[str, Any]]]
) -> None:
    _check(tmp_path_factory.mktemp("fuzz"), drawn)


def test_a_hostile_corpus_through_the_cli_exits_0(tmp_path: Path) -> None:
    t = BASE + 1000
    lines = [
        orjson.dumps({"ts": t, "card": "c0", "amount": 10.0}),
        b'{"ts":%d,"card":"c0","x":%s%s}' % (t, b"[" * 1_100, b"]" * 1_100),
        b'{"ts":%d,"card":"c0","x":%s1%s}' % (t, b'{"a":' * 1_000, b"}" * 1_000),
        orjson.dumps({"ts": FAR, "card": "c0", "amount": 1.0}),
        b'{"ts":%d,"card":"c0","amount":1,"amount":999}' % t,
        b'{"ts":%d,"card":"c0","amount":NaN}' % t,
        b'{"ts":%d,"card":"\xff","amount":1}' % t,
        b'{"ts":%d,"card":"c0","title":"%s"}' % (t, b"z" * 5_000_000),
        b"\x00\x01\x02",
        orjson.dumps({"ts": t + 1, "card": "c0", "amount": 5.0}),
    ]
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines))  # no final newline
    proc = run_cli(
        "run", "-c", str(tmp_path / "spec.yaml"), "--source", f"file:{tmp_path / 'events.jsonl'}",
        "--data-dir", str(tmp_path / "data"), "--until-end", "--summary-json",
        str(tmp_path / "summary.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["events"] == 2
    assert summary["quarantined_by_reason"] == {
        "too_deep": 2,
        "too_early": 1,
        "duplicate_key": 1,
        "not_json": 3,
        "oversized": 1,
    }
    assert summary["quarantined"] == 8
    records = (tmp_path / "data" / "quarantine.jsonl").read_bytes().splitlines()
    assert len(records) == 8 and max(map(len, records)) < 20_000  # the 5 MB line kept short
