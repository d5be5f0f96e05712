"""The batch deadline follows the arrival rate; the sink hand-off is safe across threads."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from riskstream.runners.deadline import BatchDeadline
from riskstream.runners.handoff import Handoff
from riskstream.sinks.file import FileSink
from tests.unit.sinks._cases import make_cases


def test_deadline_is_long_when_idle_and_a_share_of_the_work_while_events_flow() -> None:
    d = BatchDeadline(idle_s=0.2, floor_s=0.005, share=0.25)
    assert d.timeout() == 0.2  # nothing seen yet: wait for the first events
    d.observe(2_000, 0.08)
    assert d.timeout() == 0.02  # a quarter of the last batch's processing time
    d.observe(10, 0.001)
    assert d.timeout() == 0.005  # never below the floor
    d.observe(10_000, 4.0)
    assert d.timeout() == 0.2  # never above the idle wait
    d.observe(0, 0.0)
    assert d.timeout() == 0.2  # the source went quiet: no spinning


def test_handoff_keeps_a_file_sink_exact_while_another_thread_takes_marks(tmp_path: Path) -> None:
    """The engine thread delivers while the writer thread reads marks (flush + mark); after a
    crash the file, cut back to its mark and re-delivered from it, holds each case once."""
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 3_001))
    handoff = Handoff([FileSink(path, sync_every_s=None)])
    stop = threading.Event()
    marks: list[int] = []

    def writer() -> None:
        while not stop.is_set():
            marks.append(handoff.marks()[f"file:{path}"])

    t = threading.Thread(target=writer)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: interleavings a lock must prevent
    try:
        t.start()
        for i in range(0, len(cases), 7):
            handoff.deliver(cases[i : i + 7])
        stop.set()
        t.join()
    finally:
        sys.setswitchinterval(switch)
    assert marks == sorted(marks) and len(marks) > 1
    sink = handoff.sinks[0]
    assert isinstance(sink, FileSink)
    sink._close_fds()  # a crash: no final flush
    again = FileSink(path, sync_every_s=None)
    mark = again.delivered_seq()
    again.deliver([c for c in cases if c.seq > mark])  # what the engine re-delivers
    again.close()
    assert path.read_bytes() == b"".join(c.body() + b"\n" for c in cases)
