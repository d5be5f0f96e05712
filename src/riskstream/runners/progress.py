"""Live progress on a terminal (events, events/s, quarantined, cases, lag) and the final summary."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from riskstream.runners.stats import RunStats


class Progress:
    """A one-line live display on stderr when it is a terminal; silent otherwise."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(t, e, tb)

    def update(self, stats: RunStats) -> None:
        """Refresh the line (at most 4 times a second)."""
        now = time.monotonic()
        if self._live is None or now - self._last < 0.25:
            return
        self._last = now
        self._live.update(progress_line(stats))


def progress_line(stats: RunStats) -> str:
    """The live line (rich markup): events, rate, quarantined, cases, checkpoints, lag, waits."""
    rate = stats.events / stats.elapsed if stats.elapsed > 0 else 0.0
    lag = sum(stats.lag.values()) if stats.lag else None
    text = (
        f"[bold]{stats.events:,}[/] events  [cyan]{rate:,.0f}/s[/]  "
        f"quarantined [yellow]{sum(stats.quarantined.values()):,}[/]  cases [red]{stats.cases:,}[/]  "
        f"checkpoints {stats.checkpoints:,}" + (f"  lag {lag:,}" if lag is not None else "")
    )
    if stats.waiting:
        shown = ", ".join(stats.waiting[:4]) + (" …" if len(stats.waiting) > 4 else "")
        text += f"  [magenta]waiting for partitions {shown}[/] (held by another group member)"
    return text


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run summary as a table."""
    table = Table(title="riskstream run summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("events", f"{summary['events']:,}")
    table.add_row(
        "throughput", f"{summary['events_per_s']:,.0f} events/s over {summary['elapsed_s']:.2f} s"
    )
    q = summary["quarantined_by_reason"]
    table.add_row(
        "quarantined",
        f"{summary['quarantined']:,}"
        + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(q.items()))})" if q else ""),
    )
    table.add_row("cases", f"{summary['cases']:,}")
    for rule, n in sorted(summary["cases_by_rule"].items()):
        table.add_row(f"  {rule}", f"{n:,}")
    table.add_row("checkpoints", f"{summary['checkpoints']:,}")
    if summary.get("lag"):
        table.add_row("lag", ", ".join(f"{p}: {n}" for p, n in sorted(summary["lag"].items())))
    return table
