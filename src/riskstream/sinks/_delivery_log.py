"""Append-only JSON-lines files shared by worker threads (delivery log, dead letters)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from riskstream.store.private import FILE_MODE, narrow


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonlAppender:
    """Thread-safe appender: one ``write`` per line, so lines never interleave.

    The file is opened on the first line (no empty dead-letter file on a clean run).
    With ``durable`` every line is fsynced before :meth:`append` returns: a dead-lettered
    case counts as done, so its line must survive a crash before the mark moves past it.
    """

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self._durable = durable
        self._lock = threading.Lock()
        self._fd = -1
        self._closed = False

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one JSON line (``orjson.Fragment`` values are embedded raw)."""
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path} is closed")
            if self._fd < 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
                narrow(self._fd)
            data = memoryview(line)
            while data:
                data = data[os.write(self._fd, data) :]
            if self._durable:
                os.fsync(self._fd)

    def sync(self) -> None:
        """Fsync what was written so far (no-op before the first line)."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        """Fsync and close; later appends fail."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
            self._fd = -1
            self._closed = True
