"""Issue 12, input side: far-future events, deep nesting, repeated keys, any per-event failure,
oversized lines, huge integers and unused declared fields. Each test fails on the code before."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.engine import guard
from riskstream.engine import pipeline as pipeline_module
from riskstream.engine.decode import PREFIX_BYTES, Decoded
from riskstream.engine.pipeline import Pipeline
from riskstream.sources.file import _LineReader
from riskstream.spec.load import parse_spec

NOW = 1_767_600_000_000  # the wall clock the tests run at (2026-01-05T08:00Z)
MIN = 60_000

SPEC = """\
name: hostile
event:
  time: ts
  id: id
  max_lateness: 1h
  fields: {card: str, amount: float, n: int, spare: int}
metrics:
  card: {dimension: [card], value: amount, stats: [count, sum]}
rules:
  big: {when: amount > 90, action: review, score: 70}
"""


def _pipeline(spec: str = SPEC) -> Pipeline:
    return Pipeline(parse_spec(spec), clock=lambda: NOW)


def _line(i: int, t: Any, **more: Any) -> bytes:
    return orjson.dumps({"id": f"e{i}", "ts": t, "card": f"c{i % 3}", "amount": 10.0, **more})


def _batch(lines: list[bytes]) -> RawBatch:
    return RawBatch(lines, [f"f@{i}" for i in range(len(lines))])


def _codes(outcome: Any) -> dict[str, str]:
    return {q.position: q.code for q in outcome.quarantined}


def _counts(p: Pipeline) -> dict[str, float]:
    """Count per card key over every pending second bucket."""
    sec = p.pending.frames()[0][("card", "second")]
    out: dict[str, float] = {}
    for key, count in zip(sec["key"].to_list(), sec["count"].to_list(), strict=True):
        out[key] = out.get(key, 0) + count
    return out


# ---- 1. far-future events ----------------------------------------------------------------------


def test_far_future_events_are_too_early_and_never_move_the_watermark() -> None:
    p = _pipeline()
    poison = [
        _line(100, 253402300799000),  # year 9999, epoch ms
        _line(101, "9999-12-31T23:59:59Z"),  # the same as ISO text
        _line(102, 1e15),  # 1e15 ms: year 33658
        _line(103, NOW + 6 * MIN),  # just beyond max_future (5m)
    ]
    fine = [_line(i, NOW - 30 * MIN + i) for i in range(5)]
    out = p.process(_batch(poison + fine + [_line(104, NOW + 4 * MIN)]))
    assert _codes(out) == {f"f@{i}": "too_early" for i in range(4)}
    assert out.events == 6
    assert p.watermark == NOW + 4 * MIN
    # Real events keep being counted: nothing was made too late by the poison.
    later = p.process(_batch([_line(200 + i, NOW - 50 * MIN + i) for i in range(3)]))
    assert later.quarantined == [] and later.events == 3


def test_replays_of_old_data_keep_working() -> None:
    p = _pipeline()
    old = NOW - 400 * 86_400_000  # more than a year ago
    out = p.process(_batch([_line(i, old + i * 1000) for i in range(10)]))
    assert out.quarantined == [] and out.events == 10


def test_a_poisoned_watermark_from_an_older_store_is_pulled_back() -> None:
    p = _pipeline()
    p.restore({"watermark": "253402300799000"}, {}, {})
    assert p.watermark == NOW + 5 * MIN
    out = p.process(_batch([_line(1, NOW - MIN)]))
    assert out.quarantined == [] and out.events == 1


def test_decide_path_refuses_far_future_events_too() -> None:
    p = _pipeline()
    for t in (253402300799000, "9999-12-31T23:59:59Z", 1e15):
        frame, quarantined, _ = p.evaluate(_batch([_line(1, t)]))
        assert [q.code for q in quarantined] == ["too_early"] and frame.height == 0
    frame, quarantined, _ = p.evaluate(_batch([_line(1, NOW)]))
    assert quarantined == [] and frame.height == 1


# ---- 2. deep nesting and any failure on one event ----------------------------------------------


def _deep(levels: int) -> bytes:
    return b'{"id":"deep","ts":%d,"card":"c0","x":%s1%s}' % (NOW, b"[" * levels, b"]" * levels)


@pytest.mark.parametrize("levels", [65, 1_100, 100_000])
def test_deep_nesting_is_too_deep_in_the_batch_and_decide_paths(levels: int) -> None:
    p = _pipeline()
    out = p.process(_batch([_line(0, NOW), _deep(levels), _line(2, NOW)]))
    assert _codes(out) == {"f@1": "too_deep"} and out.events == 2
    _, quarantined, _ = p.evaluate(_batch([_deep(levels)]))
    assert [q.code for q in quarantined] == ["too_deep"]


def test_nesting_up_to_max_depth_is_accepted() -> None:
    p = _pipeline()
    out = p.process(_batch([_deep(63)]))  # 63 + the event object itself = 64 levels
    assert out.quarantined == [] and out.events == 1


def test_any_failure_on_one_event_quarantines_it_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = orjson.loads

    def fragile(raw: bytes) -> Any:
        if b"poison" in raw:
            raise ValueError("cannot build this case body\nsecond line never shown")
        return real(raw)

    monkeypatch.setattr(pipeline_module.orjson, "loads", fragile)
    p = _pipeline()
    lines = [_line(i, NOW - 1000 + i, amount=95.0 if i % 7 == 0 else 5.0) for i in range(50)]
    lines[21] = _line(21, NOW - 979, amount=99.0, note="poison")
    out = p.process(_batch(lines))
    assert [(q.position, q.code) for q in out.quarantined] == [("f@21", "unprocessable")]
    assert out.quarantined[0].reason == "ValueError: cannot build this case body"
    assert out.events == 49
    # Every other event counted exactly once, every case raised exactly once.
    expected: dict[str, float] = {}
    for i in range(50):
        if i != 21:
            expected[f"c{i % 3}"] = expected.get(f"c{i % 3}", 0) + 1
    assert _counts(p) == expected
    assert sorted(c.event_id for c in out.cases) == sorted(
        f"e{i}" for i in range(50) if i % 7 == 0 and i != 21
    )
    assert p.next_seq == 50
    assert p.isolated_batches == 1
    assert [r.levelname for r in caplog.records if "batch of 50 events" in r.message] == ["WARNING"]


def test_a_failure_of_the_whole_batch_is_reported_as_an_engine_bug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug that only shows on batches of several events: every part passes alone, so nothing
    # is quarantined and every event counts, but it must not pass silently (it costs speed).
    p = _pipeline()
    real_decode = p.decoder.decode

    def batch_bug(batch: RawBatch, seq0: int, watermark: int | None) -> Decoded:
        if len(batch.lines) > 1:
            raise IndexError("frame[0] on a batch")
        return real_decode(batch, seq0, watermark)

    monkeypatch.setattr(p.decoder, "decode", batch_bug)
    lines = [_line(i, NOW - 1000 + i, amount=5.0) for i in range(8)]
    out = p.process(_batch(lines))
    assert out.quarantined == [] and out.events == 8
    assert _counts(p) == {"c0": 3, "c1": 3, "c2": 2}
    assert p.isolated_batches == 1
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "IndexError: frame[0] on a batch" in errors[0]
    assert "engine bug" in errors[0]


# ---- 6. repeated keys -------------------------------------------------------------------------


DUPLICATES = [
    b'{"id":"d","ts":%d,"card":"c0","amount":5,"amount":95}' % NOW,
    b'{"id":"d","ts":%d,"card":"c0","amount":95,"amount":5}' % NOW,
    b'{"id":"d","ts":%d,"ts":%d,"card":"c0"}' % (NOW, NOW - 1),
    b'{"id":"d","ts":%d,"note":"a","note":"b"}' % NOW,
    b'{"id":"d","ts":%d,"x":{"k":1,"k":2}}' % NOW,
    b'{"id":"d","ts":%d,"am\\u006fu\\u006et":95,"amount":5}' % NOW,
    b'{"id":"d","ts":%d,"amount" : 1,"amount":2}' % NOW,
]


@pytest.mark.parametrize("line", DUPLICATES)
def test_repeated_keys_are_quarantined_in_the_batch_and_decide_paths(line: bytes) -> None:
    p = _pipeline()
    out = p.process(_batch([_line(0, NOW), line]))
    assert _codes(out) == {"f@1": "duplicate_key"} and out.events == 1
    _, quarantined, _ = p.evaluate(_batch([line]))
    assert [q.code for q in quarantined] == ["duplicate_key"]


def test_same_key_in_sibling_objects_is_fine() -> None:
    p = _pipeline()
    line = b'{"id":"s","ts":%d,"items":[{"sku":"a"},{"sku":"b"}],"x":{"sku":1}}' % NOW
    assert p.process(_batch([line])).quarantined == []


def _json_values() -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["a", "b", "amount", "ts", "x", ""])
    return st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | st.text('ab"\\{[:', max_size=4),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.lists(st.tuples(keys, inner), max_size=4).map(lambda kv: {"__pairs__": kv})
        ),
        max_leaves=12,
    )


def _dump(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(x)}" for k, x in v["__pairs__"]) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    return json.dumps(v)


def _brute(v: Any) -> tuple[int, bool]:
    """(depth, has a repeated key) of a value written by ``_dump``."""
    if isinstance(v, dict):
        pairs = v["__pairs__"]
        keys = [k for k, _ in pairs]
        subs = [_brute(x) for _, x in pairs]
        return 1 + max((d for d, _ in subs), default=0), len(set(keys)) < len(keys) or any(
            r for _, r in subs
        )
    if isinstance(v, list):
        subs = [_brute(x) for x in v]
        return 1 + max((d for d, _ in subs), default=0), any(r for _, r in subs)
    return 0, False


@settings(max_examples=300, deadline=None)
@given(st.lists(_json_values(), min_size=1, max_size=6), st.integers(1, 4))
def test_guard_finds_exactly_the_deep_and_repeated_lines(values: list[Any], max_depth: int) -> None:
    lines = [_dump(v).encode() for v in values]
    found = guard.check(lines, max_depth)
    for i, v in enumerate(values):
        depth, repeated = _brute(v)
        if depth > max_depth:
            assert found.get(i, ("",))[0] == "too_deep", lines[i]
        elif repeated:
            assert found.get(i, ("",))[0] == "duplicate_key", lines[i]
        else:
            assert i not in found, lines[i]


def _spell(text: str, escape: list[bool], shift: int) -> str:
    """``text`` as a JSON string, some characters written as ``\\uXXXX`` (same key, other bytes;
    ``shift`` varies which, so a repeated key may be spelled two ways)."""
    body = json.dumps(text)[1:-1]
    if not escape or "\\" in body:
        return '"' + body + '"'
    return (
        '"'
        + "".join(
            f"\\u{ord(ch):04x}" if escape[(i + shift) % len(escape)] else ch
            for i, ch in enumerate(text)
        )
        + '"'
    )


def _dump_spaced(v: Any, gaps: list[str], escape: list[bool]) -> str:
    """Like ``_dump`` with blanks between tokens and escaped key spellings drawn from the lists."""
    gap = gaps[len(str(v)) % len(gaps)] if gaps else ""
    if isinstance(v, dict):
        items = [
            f"{gap}{_spell(k, escape, j)}{gap}:{gap}{_dump_spaced(x, gaps, escape)}"
            for j, (k, x) in enumerate(v["__pairs__"])
        ]
        return "{" + ",".join(items) + gap + "}"
    if isinstance(v, list):
        return "[" + ",".join(gap + _dump_spaced(x, gaps, escape) for x in v) + "]"
    return json.dumps(v)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_json_values(), min_size=1, max_size=6),
    st.integers(1, 4),
    st.lists(st.sampled_from(["", "", " ", "\t", "  "]), max_size=3),
    st.lists(st.booleans(), max_size=3),
)
def test_guard_exact_whatever_the_spacing_and_escapes(
    values: list[Any], max_depth: int, gaps: list[str], escape: list[bool]
) -> None:
    """The vectorized pre-filter never lets a deep or repeated-key line through, whatever the
    blanks between tokens, escaped quotes in values or ``\\uXXXX`` spellings of keys."""
    lines = [_dump_spaced(v, gaps, escape).encode() for v in values]
    for line in lines:
        json.loads(line)  # the lines are JSON
    found = guard.check(lines, max_depth)
    for i, v in enumerate(values):
        depth, repeated = _brute(v)
        if depth > max_depth:
            assert found.get(i, ("",))[0] == "too_deep", lines[i]
        elif repeated:
            assert found.get(i, ("",))[0] == "duplicate_key", lines[i]
        else:
            assert i not in found, lines[i]


def test_guard_needs_no_exact_check_for_escaped_quotes_in_values() -> None:
    """Values with escapes (``27\\" monitor``) are no suspects; a key spelled with an escape is."""
    plain = b'{"a":"27\\" monitor","b":"x\\\\","c":1}'
    assert guard.suspects([plain], 64) == []
    spelled = b'{"a":1,"\\u0061":2}'
    assert guard.suspects([plain, spelled], 64) == [1]
    assert guard.check([plain, spelled], 64)[1][0] == "duplicate_key"


# ---- 9. oversized lines while reading ----------------------------------------------------------


def test_an_oversized_line_is_cut_while_reading_and_quarantined_with_its_length() -> None:
    big = b'{"id":"big","ts":%d,"card":"' % NOW + b"x" * (40 << 20) + b'"}'
    data = _line(0, NOW) + b"\n" + big + b"\n" + _line(2, NOW) + b"\n"
    reader = _LineReader(io.BytesIO(data), "f", "file", 0, True, 1_000_000)
    t0 = time.perf_counter()
    batch = reader.read_batch(100, 0.1)
    assert batch is not None and time.perf_counter() - t0 < 5
    assert [len(x) for x in batch.lines] == [len(_line(0, NOW)), PREFIX_BYTES, len(_line(2, NOW))]
    assert batch.truncated == {1: len(big)}
    assert batch.positions[2] == f"f@{len(_line(0, NOW)) + 1 + len(big) + 1}"
    p = _pipeline()
    out = p.process(batch)
    assert out.events == 2
    (q,) = out.quarantined
    assert q.code == "oversized" and len(q.raw) == PREFIX_BYTES
    assert f"event of {len(big)} bytes" in q.reason


def test_an_oversized_event_from_any_source_keeps_only_a_prefix_in_quarantine() -> None:
    p = _pipeline()
    big = b'{"id":"big","ts":%d,"card":"' % NOW + b"y" * 3_000_000 + b'"}'
    (q,) = p.process(_batch([big])).quarantined
    assert q.code == "oversized" and len(q.raw) == PREFIX_BYTES
    assert str(len(big)) in q.reason


# ---- 13. integers beyond 64 bits, declared fields no rule uses ----------------------------------


def test_a_23_digit_integer_in_an_int_field_is_wrong_type() -> None:
    p = _pipeline()
    line = b'{"id":"n","ts":%d,"card":"c0","n":12345678901234567890123}' % NOW
    (q,) = p.process(_batch([_line(0, NOW), line])).quarantined
    assert q.code == "wrong_type" and "'n'" in q.reason


def test_declared_fields_no_rule_uses_are_type_checked() -> None:
    p = _pipeline()
    out = p.process(_batch([_line(0, NOW, spare="not a number"), _line(1, NOW, spare=3)]))
    assert _codes(out) == {"f@0": "wrong_type"} and out.events == 1
