"""The event archive: every accepted event as Parquet (zstd), partitioned by event day.

Layout (``DATA_DIR/archive`` unless ``archive.path`` says otherwise)::

    archive/day=2026-12-01/cp-000000000042.parquet

One file per (checkpoint, event day). Columns: ``n`` (archive ordinal: ingestion order,
contiguous from 0), ``event_id``, ``event_time`` (epoch ms), ``raw`` (the event's bytes as
they came, so a replay decodes them exactly as the live engine did).

Exactly once: the runner writes a checkpoint's files (temporary name, fsync, rename)
*before* the store transaction that records ``archive_seq`` (the checkpoint's archive
sequence) and ``archive_next`` (the next ordinal). A file whose sequence is above the
committed ``archive_seq`` is an orphan of a checkpoint that never committed: it is removed
at open, and its events come again from the source, which resumes at the committed
positions. Readers ignore files above the committed sequence too.

The archive is as private as the store: directories 0700, files 0600.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from riskstream.core.tiers import parse_duration
from riskstream.errors import UsageError
from riskstream.spec.model import PipelineSpec

#: Store meta keys written in the checkpoint transaction.
META_SEQ = "archive_seq"
META_NEXT = "archive_next"
DAY_MS = 86_400_000
SCHEMA = pl.Schema({"n": pl.Int64, "event_id": pl.String, "event_time": pl.Int64, "raw": pl.Binary})
_FILE = re.compile(r"^cp-(\d{12})\.parquet$")
_DAY = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


class ArchiveRangeError(UsageError):
    """No archived events in the requested range; the message names what is archived."""


def day_of(ms: int) -> str:
    """``YYYY-MM-DD`` (UTC) of an epoch-ms time."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def day_start(day: str) -> int:
    """Epoch ms of the start of ``YYYY-MM-DD`` (UTC)."""
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)


def format_ms(ms: int) -> str:
    """ISO-8601 UTC text of an epoch-ms time (for messages)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class ArchiveFile:
    """One archived Parquet file: its event day and checkpoint sequence."""

    path: Path
    day: str
    seq: int


class Archive:
    """Write, read and prune the archive under ``root``."""

    def __init__(self, root: str | Path, retention_ms: int) -> None:
        self.root = Path(root)
        self.retention_ms = retention_ms

    # ---- files -------------------------------------------------------------------------

    def files(self, committed_seq: int | None = None) -> list[ArchiveFile]:
        """Archived files (only those of committed checkpoints when ``committed_seq`` is given)."""
        out: list[ArchiveFile] = []
        if not self.root.is_dir():
            return out
        for day_dir in sorted(self.root.iterdir()):
            m = _DAY.match(day_dir.name)
            if not m or not day_dir.is_dir():
                continue
            for f in sorted(day_dir.iterdir()):
                fm = _FILE.match(f.name)
                if fm is None:
                    continue
                seq = int(fm.group(1))
                if committed_seq is None or seq <= committed_seq:
                    out.append(ArchiveFile(f, m.group(1), seq))
        return out

    def open(self, committed_seq: int) -> int:
        """Create the root (0700) and remove orphans: temporary files and files above
        ``committed_seq``. Returns how many files were removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        removed = 0
        for day_dir in self.root.iterdir():
            if not day_dir.is_dir():
                continue
            for f in day_dir.iterdir():
                fm = _FILE.match(f.name)
                if (fm is None and f.name.endswith(".tmp")) or (
                    fm is not None and int(fm.group(1)) > committed_seq
                ):
                    f.unlink()
                    removed += 1
        if removed:
            _fsync_dir(self.root)
        return removed

    def write(self, seq: int, frame: pl.DataFrame) -> list[Path]:
        """Write one checkpoint's events (columns of :data:`SCHEMA`), one file per event day.

        Each file is written under a temporary name, fsynced and renamed; the caller commits
        ``seq`` in the store afterwards (see the module docstring).
        """
        if not frame.height:
            return []
        frame = frame.select(SCHEMA.names()).cast(SCHEMA)
        days = frame.with_columns(
            (pl.col("event_time") // DAY_MS * DAY_MS)
            .cast(pl.Datetime("ms", "UTC"))
            .dt.strftime("%Y-%m-%d")
            .alias("_day")
        )
        written: list[Path] = []
        for (day,), part in days.partition_by("_day", as_dict=True, maintain_order=True).items():
            day_dir = self.root / f"day={day}"
            if not day_dir.is_dir():
                day_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(day_dir, 0o700)
                _fsync_dir(self.root)
            final = day_dir / f"cp-{seq:012d}.parquet"
            tmp = day_dir / f".cp-{seq:012d}.parquet.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                part.drop("_day").write_parquet(fh, compression="zstd", statistics=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(day_dir)
            written.append(final)
        return written

    def prune(self, watermark: int) -> list[str]:
        """Remove whole event days that ended before ``watermark - retention``; returns them."""
        cutoff = watermark - self.retention_ms
        gone: list[str] = []
        if not self.root.is_dir():
            return gone
        for day_dir in sorted(self.root.iterdir()):
            m = _DAY.match(day_dir.name)
            if m and day_start(m.group(1)) + DAY_MS <= cutoff:
                shutil.rmtree(day_dir)
                gone.append(m.group(1))
        return gone

    # ---- reads -------------------------------------------------------------------------

    def scan(
        self,
        committed_seq: int | None,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> pl.LazyFrame:
        """Archived events with ``event_time`` in ``[from_ms, to_ms)`` (either bound optional),
        not yet in ingestion order (sort by ``n``)."""
        lo = None if from_ms is None else day_of(from_ms)
        hi = None if to_ms is None else day_of(max(to_ms - 1, 0))
        paths = [
            str(f.path)
            for f in self.files(committed_seq)
            if (lo is None or f.day >= lo) and (hi is None or f.day <= hi)
        ]
        if not paths:
            return pl.LazyFrame(schema=SCHEMA)
        lf = pl.scan_parquet(paths, schema=SCHEMA)
        if from_ms is not None:
            lf = lf.filter(pl.col("event_time") >= from_ms)
        if to_ms is not None:
            lf = lf.filter(pl.col("event_time") < to_ms)
        return lf

    def bounds(self, committed_seq: int | None) -> tuple[int, int, int] | None:
        """(first event time, last event time, events) of the archive, or None when empty."""
        row = (
            self.scan(committed_seq)
            .select(
                pl.col("event_time").min().alias("lo"),
                pl.col("event_time").max().alias("hi"),
                pl.len().alias("n"),
            )
            .collect()
            .row(0)
        )
        if not row[2]:
            return None
        return int(row[0]), int(row[1]), int(row[2])

    def describe(self, committed_seq: int | None) -> str:
        """One phrase naming what is archived (for error messages)."""
        b = self.bounds(committed_seq)
        if b is None:
            return f"the archive in {str(self.root)!r} is empty"
        return (
            f"the archive holds {b[2]} events from {format_ms(b[0])} to {format_ms(b[1])}"
            f" (exclusive end {format_ms(b[1] + 1)})"
        )

    def batches(
        self,
        committed_seq: int | None,
        from_ms: int | None,
        to_ms: int | None,
        size: int = 50_000,
    ) -> Iterator[pl.DataFrame]:
        """Archived events of ``[from_ms, to_ms)`` in ingestion order, ``size`` at a time."""
        frame = self.scan(committed_seq, from_ms, to_ms).sort("n").collect()
        for off in range(0, frame.height, size):
            yield frame.slice(off, size)


def for_spec(spec: PipelineSpec, data_dir: str | Path) -> Archive | None:
    """The archive a spec asks for (``archive:``), or None when it has none."""
    if spec.archive is None:
        return None
    root = archive_root(data_dir, spec.archive.path)
    return Archive(root, parse_duration(spec.archive.retention))


def archive_root(data_dir: str | Path, path: str | None) -> Path:
    """Where the archive lives: ``path`` (relative to the data dir) or ``DATA_DIR/archive``."""
    base = Path(data_dir)
    if path is None:
        return base / "archive"
    p = Path(path)
    return p if p.is_absolute() else base / p


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
