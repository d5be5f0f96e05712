"""One run per data dir: an exclusive ``flock`` on ``DATA_DIR/run.lock``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from riskstream.errors import StoreError
from riskstream.store.private import open_private, private_dir, tighten_umask


class DataDirLock:
    """Held for the whole run; released by the kernel even on SIGKILL."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "run.lock"
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        private_dir(self.path.parent)
        tighten_umask()  # whatever the store: every file the run creates is private
        fd = open_private(self.path, os.O_RDWR, nofollow=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"data dir {str(self.path.parent)!r} is in use by another riskstream run (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
