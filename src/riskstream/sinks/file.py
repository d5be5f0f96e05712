"""File sink: one JSON line per case, appended, exactly once across crashes."""

# Invariant (what makes this exactly-once)
# ----------------------------------------
# The sidecar ``<path>.seq`` holds two fixed-size, checksummed slots. Each holds a mark
# ``(seq, offset)`` meaning: "the first ``offset`` bytes of the case file are, on disk,
# exactly one complete line per case with seq <= ``seq``, in seq order".
#
# * A mark is written only after the case file has been fsynced up to ``offset``, always
#   into the slot that does *not* hold the newest mark, and is then fsynced itself. A
#   crash at any moment therefore leaves at least one valid mark (a torn slot fails its
#   checksum), and no valid mark claims bytes that a crash could lose.
# * On open, the file is cut back to the newest valid mark's offset: bytes written after
#   it (never fsynced, or fsynced but not yet marked, possibly a torn half line) are
#   dropped. ``delivered_seq()`` reports only marks that are on disk, so the engine, which
#   re-delivers everything above it, writes those cases again: no gap.
# * ``deliver`` skips cases with ``seq <=`` what the file already holds, so an engine that
#   resumes from an older persisted mark (it saved ``delivered_seq()`` a while ago) adds
#   no duplicate.
# * ``resume_seq`` (the engine's persisted mark) only matters when the file knows less:
#   no sidecar (new file, or the file was rotated by hand) or a sidecar behind the
#   engine. Then the engine's word wins: the file keeps its complete lines, any torn last
#   line is cut, and the mark becomes ``(resume_seq, end of the last complete line)``.
#
# The case file and its sidecar belong to one store: when the store (data dir) is wiped,
# remove or move the case file and its ``.seq`` sidecar too, or the new run's first cases
# (seq <= the old mark) are taken as already written.

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from riskstream.core.case import Case
from riskstream.errors import SinkError
from riskstream.sinks.base import SinkStats
from riskstream.store.private import FILE_MODE, narrow

log = logging.getLogger(__name__)

_MAGIC = b"RSQ1"
_CHUNK_BYTES = 1 << 20  # write in chunks of about 1 MiB: bounded memory per deliver()


class _Mark(NamedTuple):
    """A durable point of the case file: all cases up to ``seq`` end at byte ``offset``."""

    seq: int
    offset: int


def _encode_mark(mark: _Mark) -> bytes:
    """Fixed-size text record ``RSQ1 <seq> <offset> <crc32>\\n`` (readable with ``cat``)."""
    head = b"%s %020d %020d" % (_MAGIC, mark.seq, mark.offset)
    return head + b" %08x\n" % zlib.crc32(head)


_SLOT_SIZE = len(_encode_mark(_Mark(0, 0)))


def _decode_mark(raw: bytes) -> _Mark | None:
    """The mark in one slot, or None if the slot is empty, torn or corrupt."""
    if len(raw) != _SLOT_SIZE or not raw.endswith(b"\n"):
        return None
    parts = raw[:-1].split(b" ")
    if len(parts) != 4 or parts[0] != _MAGIC:
        return None
    try:
        seq, offset, crc = int(parts[1]), int(parts[2]), int(parts[3], 16)
    except ValueError:
        return None
    if zlib.crc32(raw[: _SLOT_SIZE - 10]) != crc or offset < 0:
        return None
    return _Mark(seq, offset)


def _end_of_last_line(fd: int, size: int) -> int:
    """Byte offset just after the last ``\\n`` in the first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _fsync_dir(path: Path) -> None:
    """Make the creation of a file in ``path`` durable (its directory entry)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    """Appends ``case.body()`` lines to ``path``; ``flush`` fsyncs and records the mark.

    ``deliver`` also flushes when the last flush is older than ``sync_every_s``, so the
    mark keeps advancing even for a caller that only flushes at shutdown (None: never).
    """

    def __init__(
        self, path: str | Path, resume_seq: int = 0, *, sync_every_s: float | None = 1.0
    ) -> None:
        if resume_seq < 0:
            raise ValueError(f"resume_seq must be >= 0, got {resume_seq}")
        self.name = f"file:{path}"  # the spec's text: the key of the engine's mark
        self._path = Path(path).expanduser().absolute()
        self._sync_every_s = sync_every_s
        self._last_sync = time.monotonic()
        self._index_path = self._path.with_name(self._path.name + ".seq")
        self._fd = -1
        self._index_fd = -1
        self._written = 0  # lines written since open
        self._durable_lines = 0
        try:
            self._open(resume_seq)
        except OSError as exc:
            self._close_fds()
            raise SinkError(f"{self.name}: cannot open: {exc.strerror or exc}") from None
        except BaseException:
            self._close_fds()
            raise

    def _open(self, resume_seq: int) -> None:
        """Open both files, lock them, and cut the case file back to a durable mark."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        created = not self._path.exists() or not self._index_path.exists()
        # Cases carry full event bodies: 0600 whatever the umask.
        self._index_fd = os.open(self._index_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        narrow(self._index_fd)
        try:
            fcntl.flock(self._index_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SinkError(f"{self.name}: the file is in use by another sink") from None
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
        narrow(self._fd)
        if created:
            _fsync_dir(self._path.parent)
        size = os.fstat(self._fd).st_size
        slots = [_decode_mark(os.pread(self._index_fd, _SLOT_SIZE, i * _SLOT_SIZE)) for i in (0, 1)]
        best = max((m for m in slots if m is not None and m.offset <= size), default=None)
        if best is not None and best.seq >= resume_seq:
            mark = best
            if size > mark.offset:
                log.info(
                    "%s: dropping %d unmarked bytes after seq %d",
                    self.name,
                    size - mark.offset,
                    mark.seq,
                )
                os.ftruncate(self._fd, mark.offset)
        else:
            keep = _end_of_last_line(self._fd, size)
            if keep < size:
                log.warning("%s: cutting a torn last line (%d bytes)", self.name, size - keep)
                os.ftruncate(self._fd, keep)
            if any(slots):
                log.warning(
                    "%s: the .seq mark does not match the file (rotated or edited?); "
                    "keeping its complete lines and resuming after seq %d",
                    self.name,
                    resume_seq,
                )
            os.fsync(self._fd)
            mark = _Mark(resume_seq, keep)
        # Leave both slots holding ``mark``: a stale slot (from a rotated or cut file) must
        # never win later, once the file grows past its offset again.
        for slot, old in enumerate(slots):
            if old != mark:
                self._write_slot(slot, mark)
        self._slot = 0
        self._mark = mark
        self._offset = mark.offset
        self._written_seq = mark.seq

    def _write_slot(self, slot: int, mark: _Mark) -> None:
        """Write ``mark`` into one slot of the sidecar and fsync it."""
        os.pwrite(self._index_fd, _encode_mark(mark), slot * _SLOT_SIZE)
        os.fsync(self._index_fd)

    def _write_mark(self, mark: _Mark) -> None:
        """Record ``mark`` in the older slot (the case file is already synced up to it)."""
        self._write_slot(1 - self._slot, mark)
        self._slot = 1 - self._slot
        self._mark = mark

    def deliver(self, cases: Sequence[Case]) -> None:
        """Append one line per case not already in the file; durable only after :meth:`flush`."""
        if self._fd < 0:
            raise SinkError(f"{self.name}: sink is closed")
        chunk: list[bytes] = []
        size = 0
        last = self._written_seq
        for case in cases:
            if case.seq <= last:
                continue  # already in the file: re-delivered after a restart
            body = case.body()
            chunk.append(body)
            chunk.append(b"\n")
            size += len(body) + 1
            last = case.seq
            if size >= _CHUNK_BYTES:
                self._append(chunk, last)
                chunk, size = [], 0
        if chunk:
            self._append(chunk, last)
        if (
            self._sync_every_s is not None
            and time.monotonic() - self._last_sync >= self._sync_every_s
        ):
            self.flush()

    def _append(self, parts: list[bytes], last_seq: int) -> None:
        """Write whole lines; on failure cut the file back so no partial line stays behind."""
        joined = b"".join(parts)
        data = memoryview(joined)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):  # else the next open cuts back to the mark
                os.ftruncate(self._fd, self._offset)
            raise SinkError(f"{self.name}: cannot write: {exc.strerror or exc}") from None
        self._offset += len(joined)
        self._written += len(parts) // 2
        self._written_seq = last_seq

    def delivered_seq(self) -> int:
        """The durable mark: cases up to here are on disk (advances at :meth:`flush`)."""
        return self._mark.seq

    def flush(self, timeout_s: float | None = None) -> bool:
        """Fsync the case file, then record the new mark; the timeout is not needed here."""
        self._last_sync = time.monotonic()
        if self._fd < 0 or self._written_seq == self._mark.seq:
            return True
        try:
            os.fsync(self._fd)
            self._write_mark(_Mark(self._written_seq, self._offset))
        except OSError as exc:
            raise SinkError(f"{self.name}: cannot sync: {exc.strerror or exc}") from None
        self._durable_lines = self._written
        return True

    def stats(self) -> SinkStats:
        """Lines made durable, and lines written but not yet flushed (``in_flight``)."""
        return SinkStats(
            delivered=self._durable_lines, in_flight=self._written - self._durable_lines
        )

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                self._close_fds()

    def _close_fds(self) -> None:
        """Close both descriptors (releasing the lock) without flushing."""
        for fd in (self._fd, self._index_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._index_fd = -1
