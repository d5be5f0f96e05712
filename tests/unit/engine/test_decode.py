"""Decoding and quarantine: every kind of malformed event is caught with its reason."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.engine.decode import EID, TIME, Decoder, _has_blank

DAY = 86_400_000


def decoder(**kw: object) -> Decoder:
    args: dict[str, object] = {
        "time_field": "ts",
        "id_field": "id",
        "fields": {"amount": "float", "card": "str", "n": "int", "ok": "bool"},
        "max_bytes": 200,
        "max_lateness_ms": DAY,
    }
    args.update(kw)
    return Decoder(**args)  # type: ignore[arg-type]


def batch(*lines: bytes) -> RawBatch:
    return RawBatch(list(lines), [f"f@{i}" for i in range(len(lines))])


def test_good_events_decode_with_epoch_and_iso_times() -> None:
    out = decoder().decode(
        batch(
            b'{"id":"a","ts":1767571200000,"amount":1.5,"card":"c1"}',
            b'{"id":"b","ts":"2026-01-05T00:00:01Z","amount":2,"card":7}',
            b'{"id":"c","ts":"2026-01-05T00:00:02.250+00:00","n":3,"ok":true}',
            b'{"ts":"2026-01-05 00:00:03"}',
        ),
        0,
        None,
    )
    assert out.quarantined == []
    assert out.frame[TIME].to_list() == [1767571200000, 1767571201000, 1767571202250, 1767571203000]
    assert out.frame["amount"].to_list() == [1.5, 2.0, None, None]
    assert out.frame["card"].to_list() == ["c1", "7", None, None]
    assert out.frame[EID].to_list() == ["a", "b", "c", "f@3"]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json at all", "not_json"),
        (b'{"ts": 1767571200000, "amount": 1', "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'"just a string"', "not_object"),
        (b'{"amount": 3.0}', "missing_time"),
        (b'{"ts": "yesterday"}', "bad_time"),
        (b'{"ts": 1767571200000, "amount": "ten"}', "wrong_type"),
        (b'{"ts": 1767571200000, "n": 1.5}', "wrong_type"),
        (b'{"ts": 1767571200000, "ok": "yes"}', "wrong_type"),
        (b'{"ts": 1767571200000, "pad": "' + b"x" * 300 + b'"}', "oversized"),
        (b"", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
    ],
)
def test_each_malformed_kind_is_quarantined_and_the_rest_survive(line: bytes, code: str) -> None:
    good = b'{"id":"g","ts":1767571200000,"amount":4.0}'
    out = decoder().decode(batch(good, line, good.replace(b'"g"', b'"h"')), 10, None)
    assert [q.code for q in out.quarantined] == [code]
    assert out.quarantined[0].position == "f@1" and out.quarantined[0].raw == line
    assert out.frame["id"].to_list() == ["g", "h"]
    assert out.frame["_seq"].to_list() == [10, 12]


def test_too_late_is_judged_against_the_max_time_seen_before() -> None:
    wm = 1767571200000
    out = decoder().decode(
        batch(
            b'{"id":"a","ts":%d}' % (wm - DAY - 1),
            b'{"id":"b","ts":%d}' % (wm + 5 * DAY),
            b'{"id":"c","ts":%d}' % (wm + 3 * DAY),
            b'{"id":"d","ts":%d}' % (wm + 4 * DAY + 1),
        ),
        0,
        wm,
    )
    assert sorted(q.raw for q in out.quarantined) == sorted(
        [b'{"id":"a","ts":%d}' % (wm - DAY - 1), b'{"id":"c","ts":%d}' % (wm + 3 * DAY)]
    )
    assert all(q.code == "too_late" for q in out.quarantined)
    assert out.frame["id"].to_list() == ["b", "d"]


def test_quarantine_record_escapes_raw_bytes() -> None:
    out = decoder().decode(batch(b"\xff oops"), 0, None)
    rec = out.quarantined[0].record()
    assert rec["reason"] == "not_json" and rec["position"] == "f@0"
    assert rec["raw"] == "\\xff oops"
    assert isinstance(pl.DataFrame([rec]), pl.DataFrame)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=6) | st.sampled_from([b" ", b"\t\r", b"\x0b", b" {}"])))
def test_blank_line_finder_equals_strip(lines: list[bytes]) -> None:
    """The vectorized blank-line test agrees with ``bytes.strip`` on any lines."""
    lines = [line.replace(b"\n", b"") for line in lines]
    assert _has_blank(lines, b"\n".join(lines)) == any(not line.strip() for line in lines)


def test_blank_lines_are_quarantined_not_skipped() -> None:
    good = b'{"id":"a","ts":1767571200000,"amount":1.0}'
    out = decoder().decode(batch(good, b"  \t", good.replace(b'"a"', b'"b"')), 0, None)
    assert out.frame[EID].to_list() == ["a", "b"]
    assert [(q.position, q.code) for q in out.quarantined] == [("f@1", "not_json")]
