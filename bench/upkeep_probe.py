"""Peak RSS and time of one store upkeep step, on a copy of a store, in a fresh process.

Why: attributes the engine's memory spikes to fold or roll-up without a whole run. Copy a
run's ``riskstream.duckdb`` between two checkpoints (no ``.wal`` beside it), then:

    .venv/bin/python bench/upkeep_probe.py STORE_DIR fold|rollup [MEMORY_LIMIT]

``rollup`` rolls everything closed one hour past the stored watermark; ``MEMORY_LIMIT``
(e.g. ``128MB``) is set on every connection the store opens. The step changes the copy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from riskstream.store.duckdb.store import DuckDBStore

HOUR_MS = 3_600_000


def hwm_mib() -> float:
    """This process's peak RSS (``VmHWM``) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    """Run the step named on the command line and print its time and added peak."""
    store = DuckDBStore(Path(sys.argv[1]))
    step, limit = sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
    if limit:
        opened = store._open

        @contextmanager
        def limited(*, close: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
            with opened(close=close) as con:
                con.execute(f"SET memory_limit = '{limit}'")
                yield con

        store._open = limited  # type: ignore[method-assign]
    with store.connect() as con:
        row = con.execute("SELECT v FROM meta WHERE k = 'watermark'").fetchone()
    before = hwm_mib()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM restarts from the current RSS
    t0 = time.perf_counter()
    if step == "fold":
        store.fold()
    elif step == "rollup" and row is not None:
        store.roll_up(int(row[0]) + HOUR_MS, ["second", "minute", "hour", "day", "week"])
    else:
        raise SystemExit(f"unknown step {step!r} (fold or rollup, on a store with a watermark)")
    print(
        f"{step}: {time.perf_counter() - t0:.1f} s, peak RSS {hwm_mib():.0f} MiB "
        f"(before {before:.0f} MiB), memory_limit {limit or 'default'}"
    )


if __name__ == "__main__":
    main()
