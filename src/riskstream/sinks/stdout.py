"""Stdout sink: case bodies as JSON lines on standard output, for pipes and demos."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO

from riskstream.core.case import Case
from riskstream.sinks.base import SinkStats


class StdoutSink:
    """Writes one line per case; no exactly-once guarantee (a restart may repeat lines)."""

    def __init__(self, stream: BinaryIO | None = None, resume_seq: int = 0) -> None:
        self.name = "stdout"
        self._stream = stream
        self._seq = resume_seq
        self._written = 0

    def _out(self) -> BinaryIO:
        """The target, looked up late so a replaced ``sys.stdout`` (tests, redirects) is honoured."""
        return self._stream if self._stream is not None else sys.stdout.buffer

    def deliver(self, cases: Sequence[Case]) -> None:
        """Write the cases' bodies, one per line."""
        if not cases:
            return
        out = self._out()
        for case in cases:
            out.write(case.body() + b"\n")
        self._seq = cases[-1].seq
        self._written += len(cases)

    def delivered_seq(self) -> int:
        """The seq of the last case written."""
        return self._seq

    def flush(self, timeout_s: float | None = None) -> bool:
        """Push buffered output to the terminal or pipe."""
        self._out().flush()
        return True

    def stats(self) -> SinkStats:
        """Lines written so far."""
        return SinkStats(delivered=self._written)

    def close(self) -> None:
        """Flush; standard output itself stays open."""
        self.flush()
