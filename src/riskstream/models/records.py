"""Score records: every model's score of every event, as Parquet under ``DATA_DIR/model_scores``.

The engine hands each batch's scores here; they are written at each checkpoint, one file per
write. After a crash the replayed events are scored again, so readers keep the last record of
each (entry, event_id): at-least-once on disk, exactly once as read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

SCHEMA = {
    "event_id": pl.String,
    "event_time": pl.Int64,
    "entry": pl.String,
    "model": pl.String,
    "version": pl.Int64,
    "shadow": pl.Boolean,
    "score": pl.Float64,
    "label": pl.Float64,
}


def scores_dir(models_root: Path) -> Path:
    """Where the score records live (next to ``models/``, so no model name can collide)."""
    return models_root.parent / "model_scores"


class ScoreLog:
    """Buffers batches of score records and writes them as one Parquet file per flush."""

    def __init__(self, models_root: Path) -> None:
        self.dir = scores_dir(models_root)
        self._pending: list[pl.DataFrame] = []

    def add(self, records: pl.DataFrame | None) -> None:
        """Keep one batch's records until the next flush."""
        if records is not None and records.height:
            self._pending.append(records)

    def flush(self) -> None:
        """Write what is pending (zstd Parquet, written to a temp name and renamed)."""
        if not self._pending:
            return
        frame = pl.concat(self._pending)
        self._pending = []
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"part-{time.time_ns()}-{os.getpid()}.parquet"
        tmp = self.dir / f".{name}"
        frame.write_parquet(tmp, compression="zstd")
        tmp.rename(self.dir / name)


def read_scores(models_root: Path) -> pl.DataFrame:
    """Every score record, the last per (entry, event_id)."""
    d = scores_dir(models_root)
    files = sorted(d.glob("part-*.parquet")) if d.is_dir() else []
    if not files:
        return pl.DataFrame(schema=SCHEMA)
    frame = pl.concat([pl.read_parquet(f) for f in files])
    return frame.unique(subset=["entry", "event_id"], keep="last", maintain_order=True)
