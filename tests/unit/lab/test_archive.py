"""The archive's files: day partitions, permissions, orphans, retention, committed reads."""

from __future__ import annotations

import stat
from pathlib import Path

import polars as pl
import pytest

from riskstream.lab.archive import DAY_MS, Archive, day_of

T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z


def _events(first: int, times: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "n": list(range(first, first + len(times))),
            "event_id": [f"e{first + i}" for i in range(len(times))],
            "event_time": times,
            "raw": [f'{{"i":{first + i}}}'.encode() for i in range(len(times))],
        }
    )


def test_one_file_per_day_private_and_read_back_in_order(tmp_path: Path) -> None:
    arch = Archive(tmp_path / "a", 30 * DAY_MS)
    arch.open(0)
    times = [T0, T0 + DAY_MS, T0 + 5, T0 - DAY_MS]
    written = arch.write(1, _events(0, times))
    assert sorted(p.parent.name for p in written) == sorted(
        f"day={day_of(t)}" for t in {T0, T0 + DAY_MS, T0 - DAY_MS}
    )
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    got = arch.scan(1).sort("n").collect()
    assert got["event_time"].to_list() == times
    assert got["raw"].to_list()[2] == b'{"i":2}'
    assert arch.scan(1, T0, T0 + 6).collect()["n"].sort().to_list() == [0, 2]
    assert arch.bounds(1) == (T0 - DAY_MS, T0 + DAY_MS, 4)


def test_files_above_the_committed_sequence_are_orphans(tmp_path: Path) -> None:
    arch = Archive(tmp_path, 30 * DAY_MS)
    arch.open(0)
    arch.write(1, _events(0, [T0, T0 + 1]))
    arch.write(2, _events(2, [T0 + 2]))  # its checkpoint never committed
    (tmp_path / f"day={day_of(T0)}" / ".cp-000000000003.parquet.tmp").write_bytes(b"half")
    assert arch.scan(1).collect().height == 2  # readers ignore uncommitted files
    assert arch.open(1) == 2
    assert [f.seq for f in arch.files()] == [1]


def test_prune_drops_whole_days_past_retention(tmp_path: Path) -> None:
    arch = Archive(tmp_path, 2 * DAY_MS)
    arch.open(0)
    arch.write(1, _events(0, [T0 - 3 * DAY_MS, T0 - 2 * DAY_MS, T0]))
    gone = arch.prune(T0)
    # The day of T0 - 3d ended before T0 - 2d; the day of T0 - 2d did not.
    assert gone == [day_of(T0 - 3 * DAY_MS)]
    assert sorted(arch.scan(None).collect()["n"].to_list()) == [1, 2]


@pytest.mark.parametrize("committed", [None, 5])
def test_empty_archive_has_no_bounds(tmp_path: Path, committed: int | None) -> None:
    arch = Archive(tmp_path / "none", DAY_MS)
    assert arch.bounds(committed) is None
    assert "empty" in arch.describe(committed)
