"""Issue 12.4: the live progress line says which partitions a bounded run waits for."""

from __future__ import annotations

from riskstream.runners.progress import progress_line
from riskstream.runners.stats import RunStats


def test_progress_line_names_the_partitions_waited_for() -> None:
    stats = RunStats(events=10, lag={"t/0": 0, "t/1": 40, "t/2": 2})
    stats.waiting = ["t/1", "t/2"]
    line = progress_line(stats)
    assert "waiting for partitions t/1, t/2" in line
    assert "held by another group member" in line
    assert "lag 42" in line


def test_progress_line_without_waits_says_nothing_about_them() -> None:
    line = progress_line(RunStats(events=10))
    assert "waiting" not in line
