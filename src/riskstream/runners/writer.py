"""One background thread that writes checkpoints while the engine goes on with the next batches.

At most one checkpoint is in flight: :meth:`wait` (called before the next checkpoint is
taken, and wherever the caller needs it durable) returns once the previous one is done
and re-raises what it raised. DuckDB and Polars release the GIL, so the store's work
runs on the second core while the engine decodes and scores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CheckpointWriter:
    """Runs submitted jobs one at a time on a daemon thread."""

    def __init__(self, *, start: bool = True) -> None:
        self._job: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="riskstream-checkpoint", daemon=True)
        if start:
            self._thread.start()

    @classmethod
    def idle(cls) -> CheckpointWriter:
        """A writer with nothing in flight and no thread (before the runner starts)."""
        return cls(start=False)

    def submit(self, job: Callable[[], None]) -> None:
        """Start ``job`` once the previous one is done (waits for it)."""
        self.wait()
        with self._cond:
            self._job, self._busy = job, True
            self._cond.notify_all()

    def wait(self, *, reraise: bool = True) -> None:
        """Block until nothing is in flight; re-raise the last job's error (unless told not to:
        the engine thread, not an API reader, should receive it)."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            if not reraise:
                return
            error, self._error = self._error, None
        if error is not None:
            raise error

    @property
    def busy(self) -> bool:
        """Whether a job is in flight."""
        return self._busy

    def close(self) -> None:
        """Finish the job in flight and stop the thread."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    return
                job = self._job
            try:
                job()
            except BaseException as exc:  # handed to the engine thread by wait()
                self._error = exc
            with self._cond:
                self._job, self._busy = None, False
                self._cond.notify_all()
