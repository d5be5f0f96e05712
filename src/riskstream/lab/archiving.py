"""The runner's side of the archive: events accepted since the last checkpoint, and the
counters the checkpoint commits (see :mod:`riskstream.lab.archive` for the protocol)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from riskstream.engine.decode import EID, RAW, TIME
from riskstream.lab.archive import META_NEXT, META_SEQ, Archive


class ArchiveLog:
    """Collects accepted events per batch; hands each checkpoint a job that writes them."""

    def __init__(self, archive: Archive, meta: dict[str, str]) -> None:
        self.archive = archive
        #: Last committed checkpoint sequence and next archive ordinal, from the store.
        self.seq = int(meta.get(META_SEQ, "0"))
        self.next = int(meta.get(META_NEXT, "0"))
        self.orphans_removed = archive.open(self.seq)
        self._parts: list[pl.DataFrame] = []

    def add(self, scored: pl.DataFrame | None) -> None:
        """Keep a batch's accepted events (the pipeline's scored frame), in ingestion order."""
        if scored is not None and scored.height:
            self._parts.append(
                scored.select(
                    pl.col(EID).cast(pl.String).alias("event_id"),
                    pl.col(TIME).alias("event_time"),
                    pl.col(RAW).alias("raw"),
                )
            )

    def take(self, meta: dict[str, str]) -> Callable[[], None] | None:
        """Move what is pending into a write job for the next checkpoint.

        Sets ``meta``'s archive keys (committed with the checkpoint); the job must run
        before the store transaction. None when nothing is pending.
        """
        if not self._parts:
            return None
        parts, self._parts = self._parts, []
        seq, first = self.seq + 1, self.next
        rows = sum(p.height for p in parts)
        self.seq, self.next = seq, first + rows
        meta[META_SEQ], meta[META_NEXT] = str(seq), str(first + rows)
        archive = self.archive

        def job() -> None:
            frame = pl.concat(parts)
            frame = frame.with_columns(pl.int_range(first, first + rows, dtype=pl.Int64).alias("n"))
            archive.write(seq, frame)

        return job

    def prune(self, watermark: int | None) -> list[str]:
        """Drop event days past retention."""
        return [] if watermark is None else self.archive.prune(watermark)
