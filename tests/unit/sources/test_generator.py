"""Tests of the synthetic payment stream: determinism, schema, fraud shapes, lateness, source."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskstream.core.events import RawBatch
from riskstream.errors import UsageError
from riskstream.synthetic._vocab import CURRENCIES, keyword_pattern, normal_titles, risky_titles
from riskstream.synthetic.generator import (
    BLACKLISTED_SHOPS,
    BLOCK_EVENTS,
    DEFAULT_START_MS,
    FIELDS,
    PATTERNS,
    RISKY_KEYWORDS,
    SCHEMA,
    VERIFIED_SHOPS,
    GeneratorSource,
    generate_frames,
    generate_lines,
    write_jsonl,
)

SEED = 7
N = 200_000  # two blocks: every pattern appears many times, and a block boundary is crossed
RISKY = keyword_pattern()


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    """The first N events of the stream for SEED, in emission order, with a row index."""
    frame = pl.concat(list(generate_frames(N, SEED)))
    return frame.with_row_index("pos")


def _fraud(events: pl.DataFrame, pattern: str) -> pl.DataFrame:
    """Events of one fraud pattern."""
    return events.filter(pl.col("pattern") == pattern)


def _per_card(frame: pl.DataFrame) -> list[pl.DataFrame]:
    """The frame split by card, each part sorted by event time."""
    return [part.sort("event_time") for part in frame.partition_by("card_id")]


def _max_in_window(times_ms: np.ndarray, window_ms: int) -> int:
    """Most events inside any window of ``window_ms`` starting at an event (times sorted)."""
    ends = np.searchsorted(times_ms, times_ms + window_ms, side="right")
    return int((ends - np.arange(len(times_ms))).max())


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = list(generate_lines(5_000, 11, chunk=1_000))
    again = list(generate_lines(5_000, 11, chunk=1_000))
    other = list(generate_lines(5_000, 12, chunk=1_000))
    assert first == again
    assert [len(c) for c in first] == [1_000] * 5
    assert first != other
    assert sum(a != b for a, b in zip(first[0], other[0], strict=True)) > 900


def test_output_is_a_prefix_and_independent_of_chunk() -> None:
    """N events are the first N of a longer run, and chunking only slices the stream."""
    short = [line for chunk in generate_lines(3_000, 5, chunk=777) for line in chunk]
    long = [line for chunk in generate_lines(BLOCK_EVENTS + 2_000, 5) for line in chunk]
    assert short == long[:3_000]
    frames = pl.concat(list(generate_frames(BLOCK_EVENTS + 2_000, 5, chunk=40_000)))
    assert [json.loads(line) for line in long[-3_000:]] == frames.tail(3_000).to_dicts()


def test_write_jsonl_plain_and_gzip_are_reproducible(tmp_path: Path) -> None:
    plain, packed, packed2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    assert write_jsonl(plain, 4_321, 9, chunk=1_000) == 4_321
    assert write_jsonl(str(packed), 4_321, 9) == 4_321
    write_jsonl(packed2, 4_321, 9)
    data = plain.read_bytes()
    assert packed.read_bytes() == packed2.read_bytes()
    assert gzip.decompress(packed.read_bytes()) == data
    lines = [line for chunk in generate_lines(4_321, 9) for line in chunk]
    assert data == b"\n".join(lines) + b"\n"


def test_zero_events_and_bad_arguments(tmp_path: Path) -> None:
    assert list(generate_frames(0, 1)) == []
    assert write_jsonl(tmp_path / "empty.jsonl", 0, 1) == 0
    assert (tmp_path / "empty.jsonl").read_bytes() == b""
    bad: list[Callable[[], object]] = [
        lambda: generate_frames(-1, 1),
        lambda: generate_frames(10, -1),
        lambda: generate_lines(10, 1, chunk=0),
        lambda: generate_frames(10, 1, rate_per_s=0.0),
        lambda: generate_frames(10, 1, rate_per_s=float("nan")),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()


# -- schema and values ---------------------------------------------------------------------


def test_every_line_is_compact_json_with_every_field_typed() -> None:
    lines = next(generate_lines(20_000, SEED, chunk=20_000))
    frame = next(generate_frames(20_000, SEED, chunk=20_000))
    types: dict[object, type] = {pl.String: str, pl.Int64: int, pl.Float64: float}
    parsed = [json.loads(line) for line in lines]
    assert parsed == frame.to_dicts()
    for line, event in zip(lines[:2_000], parsed[:2_000], strict=True):
        assert not line.endswith(b"\n") and b", " not in line.split(b'"product_title"')[0]
        assert tuple(event) == FIELDS
        for name, dtype in SCHEMA.items():
            assert type(event[name]) is types[dtype], (name, event[name])


def test_frame_schema_and_value_domains(events: pl.DataFrame) -> None:
    assert events.drop("pos").schema == SCHEMA
    assert events["event_id"].n_unique() == N
    assert events["event_id"][0] == "ev-000000000" and events["event_id"][-1] == f"ev-{N - 1:09d}"
    for column, pattern in {
        "card_id": r"card_\d{7}",
        "person_id": r"person_\d{6}",
        "merchant_id": r"merchant_\d{4}",
        "shop_id": r"shop_\d+",
        "card_country": r"[A-Z]{2}",
        "ip_country": r"[A-Z]{2}",
        "currency": r"[A-Z]{3}",
    }.items():
        assert events[column].str.contains(f"^{pattern}$").all(), column
    assert set(events["currency"].unique()) <= set(CURRENCIES)
    assert set(events["status"].unique()) == {"succeeded", "declined"}
    assert set(events["pattern"].unique()) == set(PATTERNS)
    assert ((events["label"] == 1) == (events["pattern"] != "none")).all()
    amount = events["amount"]
    assert (amount > 0).all() and (amount.round(2) == amount).all()
    assert 15 < amount.median() < 80  # type: ignore[operator]


def test_mix_and_status_shares(events: pl.DataFrame) -> None:
    fraud = events["label"].mean()
    assert isinstance(fraud, float) and 0.02 <= fraud <= 0.03
    succeeded = (events["status"] == "succeeded").mean()
    assert isinstance(succeeded, float) and 0.93 <= succeeded <= 0.97
    counts = dict(events.group_by("pattern").len().iter_rows())
    for pattern in PATTERNS[1:]:
        assert counts[pattern] >= 200, pattern


def test_entities_are_consistent_and_skewed(events: pl.DataFrame) -> None:
    per_card = events.group_by("card_id").agg(
        pl.col("person_id").n_unique().alias("persons"),
        pl.col("card_country").n_unique().alias("countries"),
    )
    assert (per_card["persons"] == 1).all() and (per_card["countries"] == 1).all()
    cards_per_person = events.group_by("person_id").agg(pl.col("card_id").n_unique())
    assert cards_per_person["card_id"].max() == 3
    by_merchant = events.group_by("merchant_id").len().sort("len", descending=True)["len"]
    top = by_merchant.head(max(1, len(by_merchant) // 100)).sum()
    assert top / N > 0.15  # Zipf-like: the top 1% of merchants take a large share
    busiest_card = events.filter(pl.col("label") == 0).group_by("card_id").len()["len"].max()
    assert isinstance(busiest_card, int) and busiest_card < 10  # no accidental velocity
    gb = events.filter(pl.col("card_country") == "GB")
    assert (gb["currency"] == "GBP").mean() > 0.85  # type: ignore[operator]
    home_ip = (
        events.filter(pl.col("label") == 0).select(pl.col("ip_country") == pl.col("card_country"))
    ).to_series()
    assert 0.95 < home_ip.mean() < 0.99  # type: ignore[operator]


def test_event_times_follow_the_rate(events: pl.DataFrame) -> None:
    times = events["event_time"].to_numpy()
    running_max = np.maximum.accumulate(times)
    span_s = (running_max[-1] - DEFAULT_START_MS) / 1000
    assert 0.97 * N / 200 < span_s < 1.03 * N / 200
    fast = next(generate_frames(10_000, 1, rate_per_s=1_000.0, start_ms=0))
    assert 9_000 < fast["event_time"].max() < 10_500  # type: ignore[operator]


def test_out_of_order_share(events: pl.DataFrame) -> None:
    times = events["event_time"].to_numpy()
    behind = np.maximum.accumulate(times) - times
    late = (behind > 1_000).mean()
    very_late = (behind > 3_600_000).mean()
    assert 0.01 <= late <= 0.035
    assert 0.0001 <= very_late <= 0.002
    assert behind.max() <= 3 * 86_400_000 + 1_000
    fraud_behind = behind[events["label"].to_numpy() == 1]
    assert fraud_behind.max() < 1_000  # fraud episodes arrive on time, their shapes intact


# -- fraud patterns ------------------------------------------------------------------------


def test_card_testing_bursts(events: pl.DataFrame) -> None:
    frame = _fraud(events, "card_testing")
    assert frame["amount"].max() <= 3.0 and frame["amount"].min() >= 0.5  # type: ignore[operator]
    assert (frame["status"] == "declined").mean() > 0.5  # type: ignore[operator]
    cards = _per_card(frame)
    assert len(cards) >= 40
    for card in cards:
        assert _max_in_window(card["event_time"].to_numpy(), 60_000) >= 10, card
        assert card["merchant_id"].n_unique() <= 2  # one merchant per burst


def test_velocity_spikes(events: pl.DataFrame) -> None:
    frame = _fraud(events, "velocity_spike")
    assert frame["amount"].median() > 10  # type: ignore[operator]
    for card in _per_card(frame):
        assert _max_in_window(card["event_time"].to_numpy(), 5 * 60_000) >= 8, card


def test_card_at_many_merchants(events: pl.DataFrame) -> None:
    cards = _per_card(_fraud(events, "card_many_merchants"))
    assert len(cards) >= 40
    for card in cards:
        times = card["event_time"].to_numpy()
        merchants = card["merchant_id"].to_list()
        ends = np.searchsorted(times, times + 10 * 60_000, side="right")
        best = max(len(set(merchants[i:end])) for i, end in enumerate(ends))
        assert best >= 10, card


def test_country_mismatch(events: pl.DataFrame) -> None:
    frame = _fraud(events, "country_mismatch")
    assert (frame["card_country"] != frame["ip_country"]).all()
    assert frame["amount"].min() >= 500  # type: ignore[operator]


def test_blacklisted_shops_only_in_fraud(events: pl.DataFrame) -> None:
    at_blocked = events.filter(pl.col("shop_id").is_in(BLACKLISTED_SHOPS))
    assert (at_blocked["pattern"] == "blacklisted_shop").all()
    assert len(at_blocked) == len(_fraud(events, "blacklisted_shop")) > 0
    assert at_blocked["shop_id"].n_unique() >= 4
    assert {"shop_13", "shop_99"} <= set(BLACKLISTED_SHOPS)
    assert not set(BLACKLISTED_SHOPS) & set(VERIFIED_SHOPS)


def test_risky_keywords_vocabulary() -> None:
    assert 20 <= len(RISKY_KEYWORDS) <= 30
    assert sum(" " in k for k in RISKY_KEYWORDS) >= 5
    assert all(k == k.lower().strip() for k in RISKY_KEYWORDS)
    titles, _starts, _counts = normal_titles()
    clean = [t for t in titles if RISKY.search(t)]
    assert clean == []  # no normal title ever holds a risky keyword as a whole word
    risky = risky_titles()
    assert all(RISKY.search(t) for t in risky)
    assert any(t != t.lower() and t != t.upper() and t != t.title() for t in risky)
    assert any(re.search(r"[^\w\s]\w", t) for t in risky)  # punctuation glued around words
    found = {m.group(0).lower() for t in risky for m in RISKY.finditer(t)}
    assert found == set(RISKY_KEYWORDS)


def test_risky_titles_only_in_fraud_or_at_verified_shops(events: pl.DataFrame) -> None:
    flagged = events.filter(
        pl.col("product_title").map_elements(
            lambda t: bool(RISKY.search(t)), return_dtype=pl.Boolean
        )
    )
    fraud = flagged.filter(pl.col("label") == 1)
    legit = flagged.filter(pl.col("label") == 0)
    assert (fraud["pattern"] == "risky_product").all()
    assert len(fraud) == len(_fraud(events, "risky_product"))
    assert legit.height > 50 and legit["shop_id"].is_in(VERIFIED_SHOPS).all()
    assert (legit["pattern"] == "none").all()
    assert (
        not _fraud(events, "risky_product")["shop_id"]
        .is_in(VERIFIED_SHOPS + BLACKLISTED_SHOPS)
        .any()
    )


# -- GeneratorSource -----------------------------------------------------------------------


def _read_all(source: GeneratorSource, batch: int) -> list[RawBatch]:
    """Every batch until the end of a bounded source."""
    out: list[RawBatch] = []
    while (got := source.read_batch(batch, 0.1)) is not None:
        out.append(got)
    return out


def test_source_straight_read_matches_generate_lines() -> None:
    source = GeneratorSource(12_345, 3)
    assert source.name == "generator:?events=12345&seed=3"
    batches = _read_all(source, 5_000)
    assert [len(b.lines) for b in batches] == [5_000, 5_000, 2_345]
    lines = [line for b in batches for line in b.lines]
    assert lines == [line for chunk in generate_lines(12_345, 3) for line in chunk]
    assert batches[0].positions[:2] == ["generator@0", "generator@1"]
    assert [b.resume for b in batches] == [
        {"generator": 5_000},
        {"generator": 10_000},
        {"generator": 12_345},
    ]
    received = [r for b in batches for r in (b.received_ms or [])]
    times = [json.loads(line)["event_time"] for line in lines]
    assert len(received) == len(lines) and all(r >= t for r, t in zip(received, times, strict=True))
    assert received == sorted(received)
    assert source.read_batch(10, 0.0) is None
    source.close()
    fresh = GeneratorSource(10, 3)
    nothing = fresh.read_batch(0, 0.0)
    assert nothing is not None and nothing.lines == [] and nothing.resume == {"generator": 0}


def test_source_seek_resumes_exactly_across_a_block_boundary() -> None:
    total = BLOCK_EVENTS + 3_000
    straight = [line for b in _read_all(GeneratorSource(total, 8), 40_000) for line in b.lines]
    for k in (0, 1, 12_345, BLOCK_EVENTS - 10, BLOCK_EVENTS, total - 1):
        source = GeneratorSource(total, 8)
        source.seek({"generator": k})
        rest = _read_all(source, 7_000)
        assert [line for b in rest for line in b.lines] == straight[k:], k
        if rest:
            assert rest[0].positions[0] == f"generator@{k}"
            assert rest[-1].resume == {"generator": total}
    source = GeneratorSource(total, 8)
    source.seek({"generator": total + 50})
    assert source.read_batch(10, 0.0) is None
    source.seek({})
    first = source.read_batch(3, 0.0)
    assert first is not None and first.lines == straight[:3]
    with pytest.raises(ValueError):
        source.seek({"generator": -1})


def test_source_from_uri_and_unbounded_end() -> None:
    source = GeneratorSource.from_uri("generator:?events=500&seed=4")
    assert source.name == "generator:?events=500&seed=4" and source.events == 500
    custom = GeneratorSource.from_uri(
        "generator:?events=10&seed=1&rate=50&start=2026-02-01T00:00:00Z"
    )
    assert custom.name == "generator:?events=10&seed=1&start=1769904000000&rate=50"
    batch = custom.read_batch(100, 0.0)
    assert batch is not None and len(batch.lines) == 10
    assert json.loads(batch.lines[0])["event_time"] >= 1769904000000
    assert GeneratorSource.from_uri("generator:").events == GeneratorSource.DEFAULT_EVENTS
    for bad in (
        "file:x",
        "generator:?events=x",
        "generator:?seed=-2",
        "generator:?color=red",
        "generator:?start=yesterday",
    ):
        with pytest.raises(UsageError):
            GeneratorSource.from_uri(bad)
    waiting = GeneratorSource(2, 1, until_end=False)
    assert waiting.read_batch(5, 0.0) is not None
    empty = waiting.read_batch(5, 0.0)
    assert empty is not None and empty.lines == [] and empty.resume == {"generator": 2}


# -- speed ---------------------------------------------------------------------------------


def test_speed_sanity() -> None:
    """Not a timed assertion (shared CI machines): prints the JSON-lines rate for the record."""
    generate_frames(1, SEED)  # the population of SEED is cached by the fixture already
    start = time.perf_counter()
    count = sum(len(chunk) for chunk in generate_lines(300_000, SEED))
    rate = count / (time.perf_counter() - start)
    print(f"generator: {rate:,.0f} JSON lines/s")
    assert count == 300_000
