"""Micro-batches aligned in time across Kafka partitions, as the embedded engine's merge orders them.

The embedded engine merges partitions by message timestamp (``sources/_kafka_align.py``): the
next event is the one with the smallest timestamp at the head of a partition's buffer. Such a
merge of sequences that are not sorted themselves equals a sort by (running maximum of the
timestamp within the partition up to the event, partition name, offset): an event leaves
only after every earlier event of its partition, so it waits for the largest timestamp
before it. That running maximum is ``_pmax``; ingestion order is (``_pmax``, ``_part``,
``_off``).

Spark's Kafka source cuts micro-batches by offsets, not by time: one partition may be ahead
of another in a batch. So, like the embedded merge, a batch only *releases* the events that
no partition can still precede: those with ``_pmax`` at or below the *frontier*, the
smallest last ``_pmax`` of the partitions that are not at their end. The others are
*carried* to the next batch. The carry and the per-partition marks are saved per batch id
under the checkpoint dir; the store's fence says which batch's carry is the current one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


@dataclass
class PartMark:
    """One Kafka partition as seen by the committed batches."""

    index: int
    pmax: int
    next_offset: int


@dataclass
class Carry:
    """Events read but not released yet, and the partition marks, as of one batch."""

    batch_id: int
    parts: dict[str, PartMark] = field(default_factory=dict)
    events: pl.DataFrame | None = None

    def frontier(self, end_offsets: dict[str, int]) -> tuple[int, str] | None:
        """The last position in ingestion order that no partition can still precede, as
        (``_pmax``, partition name); None when no partition holds the others back.

        A partition not at its end will bring events with ``_pmax`` at or above its last
        one, so the smallest (last ``_pmax``, name) among them bounds what may leave: an
        event leaves when its (``_pmax``, partition) is at or below it (equal ``_pmax`` are
        ordered by partition name, and a partition's own later events by offset).
        """
        holding = [
            (mark.pmax, part)
            for part, mark in self.parts.items()
            if mark.next_offset < end_offsets.get(part, mark.next_offset)
        ]
        return min(holding) if holding else None


@dataclass(frozen=True)
class Cut:
    """What a batch's decode tasks need to align its rows, computed by the driver from one small
    count per partition: each partition's ``_pmax`` before the batch, and the frontier.

    A Spark partition of the Kafka source holds one Kafka partition's offset range, in offset
    order (the runner never sets ``minPartitions``), so the running maximum needs no shuffle.
    """

    prev_pmax: dict[str, int]
    frontier: tuple[int, str] | None

    def apply(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` with ``_pmax`` set (Kafka rows of this batch: the running maximum of their
        message timestamp ``_ts`` in their partition, continued from the previous batch; carried
        rows have theirs) and ``_held`` (True: not released by this batch, carried)."""
        fresh = rows.filter(pl.col("_pmax").is_null())
        if fresh.height:
            prev = pl.DataFrame(
                {"_part": list(self.prev_pmax), "_prev": list(self.prev_pmax.values())},
                schema={"_part": pl.String, "_prev": pl.Int64},
            )
            fresh = (
                fresh.sort("_part", "_off")
                .join(prev, on="_part", how="left", maintain_order="left")
                .with_columns(
                    pl.max_horizontal(pl.col("_ts").cum_max().over("_part"), "_prev").alias("_pmax")
                )
                .drop("_prev")
            )
            rows = pl.concat([rows.filter(pl.col("_pmax").is_not_null()), fresh])
        if self.frontier is None:
            return rows.with_columns(pl.lit(False).alias("_held"))
        top, part = self.frontier
        leaves = (pl.col("_pmax") < top) | ((pl.col("_pmax") == top) & (pl.col("_part") <= part))
        return rows.with_columns((~leaves).alias("_held"))


class CarryStore:
    """``CHECKPOINT_DIR/riskstream/carry-<batch>.parquet`` and ``parts-<batch>.json``."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.dir = checkpoint_dir / "riskstream"
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self, batch_id: int) -> Carry:
        """The carry written by ``batch_id`` (an empty one before the first batch)."""
        if batch_id < 0:
            return Carry(batch_id)
        parts_path = self.dir / f"parts-{batch_id}.json"
        if not parts_path.exists():
            raise FileNotFoundError(
                f"{parts_path}: the store's fence names batch {batch_id} but its carry is "
                "missing (was the checkpoint dir replaced?)"
            )
        raw = json.loads(parts_path.read_text())
        parts = {p: PartMark(**m) for p, m in raw.items()}
        events_path = self.dir / f"carry-{batch_id}.parquet"
        events = pl.read_parquet(events_path) if events_path.exists() else None
        return Carry(batch_id, parts, events)

    def save(self, carry: Carry) -> None:
        """Write ``carry`` durably (before the store commits the batch's fence)."""
        events_path = self.dir / f"carry-{carry.batch_id}.parquet"
        if carry.events is not None and carry.events.height:
            tmp = events_path.with_suffix(".tmp")
            carry.events.write_parquet(tmp)
            _fsync(tmp)
            os.replace(tmp, events_path)
        elif events_path.exists():
            events_path.unlink()
        parts_path = self.dir / f"parts-{carry.batch_id}.json"
        tmp = parts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({p: m.__dict__ for p, m in carry.parts.items()}))
        _fsync(tmp)
        os.replace(tmp, parts_path)

    def prune(self, keep_from: int) -> None:
        """Delete the files of batches before ``keep_from``."""
        for path in self.dir.glob("*-*.*"):
            stem = path.stem.rsplit("-", 1)[-1]
            if stem.isdigit() and int(stem) < keep_from:
                path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
