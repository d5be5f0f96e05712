"""JSON-lines files (plain or gzip) and stdin, with byte-offset positions for exact resume."""

from __future__ import annotations

import gzip
import itertools
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from riskstream.core.events import RawBatch
from riskstream.errors import SourceError

_BLOCK = 4 << 20
#: Bytes kept of a line longer than the limit (the event is quarantined as oversized).
PREFIX_BYTES = 4096


class _LineReader:
    """Splits a byte stream into lines, tracking the offset of each line's first byte.

    A line longer than ``max_line`` bytes is not buffered: its first ``PREFIX_BYTES`` are
    kept, the rest is counted and dropped until its newline, and the batch marks it
    ``truncated`` with its full length (the decoder quarantines it as oversized).
    """

    def __init__(
        self,
        stream: BinaryIO,
        label: str,
        part: str,
        offset: int,
        until_end: bool,
        max_line: int = 1_000_000,
    ) -> None:
        self.stream = stream
        self.max_line = max_line
        #: inside an oversized line: its kept prefix and its length so far
        self._long: tuple[bytes, int] | None = None
        #: blocks read since the last newline (joined once the line ends)
        self._parts: list[bytes] = []
        self._held = 0
        self.label = label
        self.part = part
        self.offset = offset  # offset of the first byte of ``self.buf``
        self.buf = b""
        self.until_end = until_end
        self.eof = False
        # read1 returns what is available now instead of blocking for a whole block (pipes, stdin).
        self._read = getattr(stream, "read1", stream.read)

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        deadline = time.monotonic() + timeout_s
        lines: list[bytes] = []
        starts: list[int] = []
        cut: dict[int, int] = {}
        while len(lines) < max_events:
            nl = self.buf.rfind(b"\n")
            if nl >= 0:
                chunk, self.buf = self.buf[: nl + 1], self.buf[nl + 1 :]
                parts = chunk.split(b"\n")[:-1]
                take = parts[: max_events - len(lines)]
                if len(take) < len(parts):  # give the rest back to the buffer
                    used = sum(len(p) + 1 for p in take)
                    self.buf = chunk[used:] + self.buf
                    chunk = chunk[:used]
                offs = itertools.accumulate((len(p) + 1 for p in take), initial=self.offset)
                starts.extend(itertools.islice(offs, len(take)))
                lines.extend(p[:-1] if p.endswith(b"\r") else p for p in take)
                self.offset += len(chunk)
                continue
            if self._long is None and len(self.buf) + self._held > self.max_line:
                head = b"".join([self.buf, *self._parts])
                self._long, self.buf = (head[:PREFIX_BYTES], len(head)), b""
                self._parts, self._held = [], 0
                continue
            data = self._read(_BLOCK)
            if data and self._long is not None:
                prefix, size = self._long
                nl = data.find(b"\n")
                end = len(data) if nl < 0 else nl
                if len(prefix) < PREFIX_BYTES:  # the line's first bytes, as many as for others
                    prefix += data[: min(end, PREFIX_BYTES - len(prefix))]
                if nl < 0:
                    self._long = (prefix, size + len(data))
                    continue
                starts.append(self.offset)
                cut[len(lines)] = size + nl
                lines.append(prefix)
                self.offset += size + nl + 1
                self._long, self.buf = None, data[nl + 1 :]
                continue
            if data:
                if b"\n" in data:  # one join per line end: linear, never ``buf += data`` per block
                    self.buf = b"".join([self.buf, *self._parts, data])
                    self._parts, self._held = [], 0
                else:
                    self._parts.append(data)
                    self._held += len(data)
                continue
            # End of the data available now.
            if self._long is not None and (self.until_end or self.eof):
                prefix, size = self._long
                starts.append(self.offset)
                cut[len(lines)] = size
                lines.append(prefix)
                self.offset += size
                self._long = None
            if self._parts:
                self.buf = b"".join([self.buf, *self._parts])
                self._parts, self._held = [], 0
            if self.until_end or self.eof:
                if self.buf:
                    starts.append(self.offset)
                    lines.append(self.buf.rstrip(b"\r"))
                    self.offset += len(self.buf)
                    self.buf = b""
                if not lines:
                    return None
                break
            if lines or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # follow the file like tail -f
        return RawBatch(
            lines=lines,
            positions=[f"{self.label}@{s}" for s in starts],
            resume={self.part: self.offset},
            truncated=cut or None,
        )


class FileSource:
    """Reads JSON lines from a file (``.gz`` too); follows it for new lines unless ``until_end``."""

    def __init__(
        self, path: str | Path, *, until_end: bool = True, max_line_bytes: int = 1_000_000
    ) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.resolve()}"
        self.until_end = until_end
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot open {str(self.path)!r}: {exc.strerror}") from None
        self._gzip = self.path.suffix == ".gz"
        self._stream: BinaryIO = gzip.GzipFile(fileobj=raw) if self._gzip else raw  # type: ignore[assignment]
        self._reader = _LineReader(
            self._stream, self.path.name, "file", 0, until_end, max_line_bytes
        )

    def seek(self, positions: Mapping[str, int]) -> None:
        """Continue at the stored byte offset (for gzip, the offset in the decompressed stream)."""
        offset = int(positions.get("file", 0))
        if offset <= 0:
            return
        try:
            self._stream.seek(offset)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot seek {str(self.path)!r} to {offset}: {exc}") from None
        self._reader.offset = offset
        self._reader.buf = b""
        self._reader._long = None
        self._reader._parts, self._reader._held = [], 0

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` lines."""
        try:
            return self._reader.read_batch(max_events, timeout_s)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(
                f"cannot read {str(self.path)!r}: {exc}", f"byte {self._reader.offset}"
            ) from None

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


class StdinSource:
    """Reads JSON lines from standard input until it closes."""

    name = "stdin:"

    def __init__(self, stream: BinaryIO | None = None, *, max_line_bytes: int = 1_000_000) -> None:
        self._reader = _LineReader(
            stream or sys.stdin.buffer, "stdin", "stdin", 0, True, max_line_bytes
        )

    def seek(self, positions: Mapping[str, int]) -> None:
        """Standard input cannot be replayed; positions are ignored."""

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` lines."""
        return self._reader.read_batch(max_events, timeout_s)

    def close(self) -> None:
        """Nothing to release."""
