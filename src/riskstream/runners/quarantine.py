"""``DATA_DIR/quarantine.jsonl``: appended before each checkpoint, trimmed back on recovery.

The checkpoint records the file's length; after a crash the file is truncated to
that length and the replay writes the same lines again, so each bad event
appears exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from riskstream.engine.decode import Quarantined
from riskstream.store.private import open_private, private_dir


class QuarantineFile:
    """Append-only JSON lines with an exactly-once length mark."""

    def __init__(self, path: Path, committed_bytes: int) -> None:
        self.path = path
        private_dir(path.parent)
        self._fd = open_private(path, os.O_RDWR | os.O_APPEND, nofollow=True)
        if os.fstat(self._fd).st_size > committed_bytes:
            os.ftruncate(self._fd, committed_bytes)
        self.size = os.fstat(self._fd).st_size

    def append(self, records: list[Quarantined]) -> int:
        """Write ``records`` durably; returns the new length to record in the checkpoint."""
        if records:
            data = b"".join(orjson.dumps(r.record()) + b"\n" for r in records)
            os.write(self._fd, data)
            os.fsync(self._fd)
            self.size += len(data)
        return self.size

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
