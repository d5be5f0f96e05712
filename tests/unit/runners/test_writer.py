"""The checkpoint writer: one job at a time, in order, errors handed to the engine thread."""

from __future__ import annotations

import threading
import time

import pytest

from riskstream.runners.writer import CheckpointWriter


def test_jobs_run_one_at_a_time_in_submission_order() -> None:
    writer = CheckpointWriter()
    seen: list[int] = []
    running = threading.Lock()

    def job(i: int) -> None:
        assert running.acquire(blocking=False), "two jobs in flight"
        time.sleep(0.01)
        seen.append(i)
        running.release()

    for i in range(5):
        writer.submit(lambda i=i: job(i))  # type: ignore[misc]
    writer.wait()
    assert seen == [0, 1, 2, 3, 4]
    writer.close()


def test_an_error_reaches_the_next_wait_once_and_readers_do_not_take_it() -> None:
    writer = CheckpointWriter()

    def fail() -> None:
        raise RuntimeError("disk full")

    writer.submit(fail)
    writer.wait(reraise=False)  # an API reader only waits
    assert not writer.busy
    with pytest.raises(RuntimeError, match="disk full"):
        writer.wait()
    writer.wait()  # handed over once
    writer.close()


def test_idle_writer_has_nothing_in_flight() -> None:
    writer = CheckpointWriter.idle()
    writer.wait()
    assert not writer.busy
    writer.close()
