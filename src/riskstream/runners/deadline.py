"""How long a read may wait to fill a batch: the deadline follows the arrival rate.

A fixed deadline (200 ms) made every event of a steady stream wait for it: a Kafka
``consume`` returns when the batch is full *or* the deadline passes, and at 14k events/s
a 10,000-event batch is never full. Now, while events flow, the read waits only a share
of the time the last batch took to process (at least ``floor_s``): events that arrived
meanwhile are already fetched, so batches grow with the arrival rate and the engine's
cost per batch, and latency stays near one processing cycle. An idle source (the last
read brought nothing) gets the full ``idle_s``, so the loop does not spin.
"""

from __future__ import annotations


class BatchDeadline:
    """The timeout for the next ``read_batch``."""

    def __init__(self, *, idle_s: float = 0.2, floor_s: float = 0.005, share: float = 0.25) -> None:
        self.idle_s = idle_s
        self.floor_s = floor_s
        self.share = share
        self._timeout = idle_s

    def timeout(self) -> float:
        """Seconds the next read may wait for its batch to fill."""
        return self._timeout

    def observe(self, events: int, busy_s: float) -> None:
        """The last read brought ``events``, and processing them took ``busy_s``."""
        if events <= 0:
            self._timeout = self.idle_s
        else:
            self._timeout = min(self.idle_s, max(self.floor_s, self.share * busy_s))
