"""Timestamp alignment of partitions, as Kafka Streams does it.

A consumer catching up (after a restart, an outage, or in a replay) receives partitions in
big uneven chunks: one partition may be an hour of event time ahead of another. With one
watermark per engine, the other partitions' events would then look "too late". So each
partition's messages wait in a small buffer and leave in message-timestamp order: the
next message is always the one with the smallest timestamp at the head of a buffer, and
nothing newer than the last timestamp fetched from a partition that is not caught up
(whose buffer is empty) leaves before that partition delivers more. A partition at its end
(end-of-partition seen) never holds the others back, and one that delivers nothing for
``wait_s`` stops holding them back until it does.

Each partition's own order (offsets) is never changed.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable

#: One buffered message: (timestamp ms, offset, value).
Item = tuple[int, int, bytes]


class Aligner:
    """Per-partition buffers merged by message timestamp."""

    def __init__(self, wait_s: float = 10.0) -> None:
        self.wait_s = wait_s
        self.buffers: dict[str, deque[Item]] = {}
        self._last_ts: dict[str, int] = {}
        self._caught_up: set[str] = set()
        self._empty_since: dict[str, float] = {}

    def add(self, part: str, ts: int, offset: int, value: bytes) -> None:
        """A message fetched from ``part`` (in offset order)."""
        buf = self.buffers.get(part)
        if buf is None:
            buf = self.buffers[part] = deque()
        buf.append((ts, offset, value))
        self.fetched(part, ts)

    def fetched(self, part: str, ts: int) -> None:
        """Messages were appended to ``part``'s buffer directly; ``ts`` is the last one's."""
        self._last_ts[part] = ts
        self._caught_up.discard(part)
        self._empty_since.pop(part, None)

    def at_end(self, part: str) -> None:
        """``part`` reached its end (nothing more to fetch for now)."""
        self._caught_up.add(part)

    def drop(self, parts: Iterable[str]) -> None:
        """Forget buffered messages (partitions revoked or assigned anew)."""
        for part in parts:
            self.buffers.pop(part, None)
            self._last_ts.pop(part, None)
            self._caught_up.discard(part)
            self._empty_since.pop(part, None)

    def size(self, part: str) -> int:
        """Messages waiting in ``part``'s buffer."""
        buf = self.buffers.get(part)
        return len(buf) if buf else 0

    def take(self, max_items: int, active: Iterable[str]) -> list[tuple[str, Item]]:
        """Up to ``max_items`` messages in timestamp order, as far as every active partition allows."""
        now = time.monotonic()
        frontier: int | None = None
        for part in active:
            if self.buffers.get(part):
                self._empty_since.pop(part, None)
                continue
            if part in self._caught_up:
                continue
            since = self._empty_since.setdefault(part, now)
            if now - since > self.wait_s:
                continue  # silent for too long: stop waiting for it
            last = self._last_ts.get(part)
            if last is None:
                return []  # it may hold older events: wait for its first fetch
            frontier = last if frontier is None else min(frontier, last)
        heap = [(buf[0][0], part) for part, buf in self.buffers.items() if buf]
        heapq.heapify(heap)
        out: list[tuple[str, Item]] = []
        buffers = self.buffers
        while heap and len(out) < max_items:
            ts, part = heap[0]
            if frontier is not None and ts > frontier:
                break
            buf = buffers[part]
            out.append((part, buf.popleft()))
            if buf:
                heapq.heapreplace(heap, (buf[0][0], part))
                continue
            heapq.heappop(heap)
            if part not in self._caught_up:  # ran dry: it now holds the others back too
                last = self._last_ts[part]
                frontier = last if frontier is None else min(frontier, last)
                self._empty_since.setdefault(part, now)
        return out
