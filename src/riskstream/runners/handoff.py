"""The case hand-off to sinks: the one way a runner gives committed cases to its sinks.

Both runners use it (``runners/embedded.py`` through ``runners/outbox.py``, and
``runners/spark/job.py``): cases go to every sink only after the store transaction that
holds them committed; the sinks' durable marks (``delivered_seq``) are read for the next
checkpoint; at start, each sink gets again what the outbox holds beyond its mark.

Sinks are not thread-safe (a file sink's flush must not interleave with an append), and the
embedded runner hands cases over on the engine thread while its checkpoint writer reads the
marks: every call here holds one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from riskstream.core.case import Case
from riskstream.sinks.base import Sink
from riskstream.store.protocol import Store


class Handoff:
    """The sinks of one run, behind one lock."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)
        self._lock = threading.RLock()

    def deliver(self, cases: Sequence[Case]) -> None:
        """Hand committed ``cases`` (in seq order) to every sink."""
        if not cases:
            return
        with self._lock:
            for sink in self.sinks:
                sink.deliver(cases)

    def marks(self) -> dict[str, int]:
        """Each sink's durable mark, after letting it move forward without waiting
        (``flush(0)``: a file sink syncs, a webhook sink does not wait for slow deliveries)."""
        with self._lock:
            for sink in self.sinks:
                sink.flush(0)
            return {s.name: s.delivered_seq() for s in self.sinks}

    def redeliver(self, store: Store, marks: dict[str, int], log: Callable[[str], None]) -> None:
        """At start: every sink gets the outbox's cases after its mark (the store's or its own,
        whichever is further); a sink stored under a name that showed credentials is renamed."""
        with self._lock:
            for sink in self.sinks:
                legacy = getattr(sink, "legacy_name", None)  # a name that showed credentials
                if isinstance(legacy, str) and legacy in marks:
                    store.rename_sink_mark(legacy, sink.name)
                    marks[sink.name] = max(marks.pop(legacy), marks.get(sink.name, 0))
                mark = max(marks.get(sink.name, 0), sink.delivered_seq())
                backlog = store.cases_after(mark)
                if backlog:
                    log(f"re-delivering {len(backlog)} cases to {sink.name}")
                    sink.deliver(backlog)

    def flush(self, timeout_s: float | None, log: Callable[[str], None] | None = None) -> bool:
        """Wait until each sink delivered what it was handed (False if one timed out)."""
        ok = True
        with self._lock:
            for sink in self.sinks:
                if not sink.flush(timeout_s=timeout_s):
                    ok = False
                    if log is not None:
                        log(
                            f"{sink.name}: cases still undelivered; they are re-delivered on "
                            "the next start"
                        )
        return ok

    def close(self) -> None:
        """Close every sink (each flushes what it can)."""
        with self._lock:
            for sink in self.sinks:
                sink.close()
