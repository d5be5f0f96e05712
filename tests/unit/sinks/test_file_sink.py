"""FileSink: one line per case, exactly once across crashes, torn writes and lagging engines."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.core.case import Case
from riskstream.errors import SinkError
from riskstream.sinks.file import _SLOT_SIZE, FileSink

from ._cases import make_case, make_cases


def open_sink(path: Path, resume_seq: int = 0) -> FileSink:
    """A sink that flushes only when told, so each test decides what is durable."""
    return FileSink(path, resume_seq, sync_every_s=None)


def crash(sink: FileSink) -> None:
    """Simulate a process crash: drop the descriptors without flushing or marking."""
    sink._close_fds()


def lines(path: Path) -> list[bytes]:
    """The file's lines, each with its newline."""
    return path.read_bytes().splitlines(keepends=True)


def bodies(cases: list[Case]) -> list[bytes]:
    """What the file must hold for ``cases``."""
    return [c.body() + b"\n" for c in cases]


def test_lines_are_bodies_and_the_mark_moves_at_flush(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    sink = open_sink(path)
    assert sink.name == f"file:{path}"
    cases = make_cases(range(1, 6))
    sink.deliver(cases)
    assert sink.delivered_seq() == 0  # written, not yet durable
    assert sink.stats().in_flight == 5
    assert sink.flush() is True
    assert sink.delivered_seq() == 5
    assert sink.stats().delivered == 5 and sink.stats().in_flight == 0
    sink.close()
    sink.close()  # twice is fine
    assert lines(path) == bodies(cases)
    with pytest.raises(SinkError, match="closed"):
        sink.deliver(cases)


def test_deliver_flushes_by_itself_when_the_last_flush_is_old(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "cases.jsonl", sync_every_s=0.0)
    sink.deliver(make_cases([1, 2]))
    assert sink.delivered_seq() == 2
    sink.close()


def test_path_keeps_the_spec_text_in_the_name_and_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    sink = FileSink("~/cases.jsonl")
    assert sink.name == "file:~/cases.jsonl"
    sink.close()
    assert (tmp_path / "cases.jsonl").exists()


def test_clean_restart_resumes_after_the_mark_and_skips_overlap(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases([2, 3, 7, 8, 11, 12])
    sink = open_sink(path)
    sink.deliver(cases[:4])
    sink.close()
    sink = open_sink(path, 3)  # the engine persisted an older mark
    assert sink.delivered_seq() == 8
    sink.deliver(cases[1:])  # the engine re-delivers from its own mark: overlap is skipped
    sink.close()
    assert lines(path) == bodies(cases)


def test_crash_before_flush_drops_unmarked_lines(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 21))
    sink = open_sink(path)
    sink.deliver(cases[:10])
    sink.flush()
    sink.deliver(cases[10:15])
    crash(sink)
    assert len(lines(path)) == 15  # written to the OS, but never marked
    sink = open_sink(path)
    assert sink.delivered_seq() == 10
    assert lines(path) == bodies(cases[:10])
    sink.deliver(cases[10:])
    sink.close()
    assert lines(path) == bodies(cases)


def test_torn_last_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 11))
    sink = open_sink(path)
    sink.deliver(cases[:4])
    sink.flush()
    sink.deliver(cases[4:7])
    crash(sink)
    with path.open("r+b") as f:  # the crash tore line 6 in half
        f.truncate(len(b"".join(bodies(cases[:5]))) + 17)
    sink = open_sink(path)
    assert sink.delivered_seq() == 4
    sink.deliver(cases[4:])
    sink.close()
    assert lines(path) == bodies(cases)


def test_torn_mark_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 9))
    sink = open_sink(path)
    sink.deliver(cases[:3])
    sink.flush()
    sink.deliver(cases[3:6])
    os.fsync(sink._fd)  # crash inside flush: data synced, the new mark half written
    torn_slot = 1 - sink._slot
    with open(str(path) + ".seq", "r+b") as f:
        f.seek(torn_slot * _SLOT_SIZE + 10)
        f.write(b"\x00garbage")
    crash(sink)
    sink = open_sink(path)
    assert sink.delivered_seq() == 3
    sink.deliver(cases[3:])
    sink.close()
    assert lines(path) == bodies(cases)


def test_without_a_sidecar_the_engine_mark_wins_and_a_torn_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 7))
    path.write_bytes(b"".join(bodies(cases[:3])) + b'{"case_id": "tor')
    sink = open_sink(path, 3)
    assert sink.delivered_seq() == 3
    sink.deliver(cases)
    sink.close()
    assert lines(path) == bodies(cases)


def test_rotated_file_resumes_at_the_engine_mark(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    cases = make_cases(range(1, 7))
    sink = open_sink(path)
    sink.deliver(cases[:3])
    sink.close()
    path.rename(tmp_path / "cases.jsonl.1")  # rotated by hand; the sidecar stays
    sink = open_sink(path, 3)
    assert sink.delivered_seq() == 3
    sink.deliver(cases)
    sink.close()
    assert lines(path) == bodies(cases[3:])


def test_stale_marks_never_win_once_the_file_grows_again(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    sink = open_sink(path)
    sink.deliver(make_cases(range(1, 4), pad=500))
    sink.close()  # both slots now point far into the file
    path.rename(tmp_path / "cases.jsonl.1")
    sink = open_sink(path)  # a fresh store: the engine has no mark
    assert sink.delivered_seq() == 0
    cases = make_cases(range(1, 30), pad=100)
    sink.deliver(cases)  # grows past the stale offsets, then crashes before any flush
    crash(sink)
    sink = open_sink(path)
    assert sink.delivered_seq() == 0
    sink.deliver(cases)
    sink.close()
    assert lines(path) == bodies(cases)


def test_a_second_sink_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    sink = open_sink(path)
    with pytest.raises(SinkError, match="in use"):
        open_sink(path)
    sink.close()
    open_sink(path).close()


def test_unopenable_path_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SinkError, match="cannot open"):
        FileSink(tmp_path / "dir")


# -- random crash points ------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.integers(1, 8)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(
            st.just("crash"), st.integers(0, 1000)
        ),  # 0..1000: how much unsynced data survives
        st.tuples(st.just("crash_in_flush"), st.integers(0, _SLOT_SIZE - 1)),
    ),
    max_size=25,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.integers(1, 3), min_size=1, max_size=40),
    pads=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    ops=_ops,
    lag=st.lists(st.booleans(), max_size=25),
)
def test_random_crashes_leave_exactly_one_line_per_case(
    gaps: list[int], pads: list[int], ops: list[tuple[str, int]], lag: list[bool]
) -> None:
    seqs = [sum(gaps[: i + 1]) for i in range(len(gaps))]  # increasing, with gaps
    cases = [make_case(s, pad=pads[i % len(pads)]) for i, s in enumerate(seqs)]
    expected = bodies(cases)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.jsonl"
        engine_mark = 0  # what the engine persisted (it may lag behind the sink's mark)
        sink = open_sink(path)
        nxt = 0  # index of the next case the engine hands over
        for step, (op, arg) in enumerate(ops):
            if op == "deliver":
                sink.deliver(cases[nxt : nxt + arg])
                nxt = min(len(cases), nxt + arg)
            elif op == "flush":
                sink.flush()
                if not (lag and lag[step % len(lag)]):
                    engine_mark = sink.delivered_seq()
            else:
                durable = sink._mark.offset
                if op == "crash_in_flush":
                    os.fsync(sink._fd)  # data synced, then the new mark torn at byte ``arg``
                    with open(str(path) + ".seq", "r+b") as f:
                        f.seek((1 - sink._slot) * _SLOT_SIZE + arg)
                        f.write(b"\xff")
                crash(sink)
                if op == "crash":  # unsynced bytes: only a prefix survives, maybe with junk
                    size = path.stat().st_size
                    keep = durable + (size - durable) * arg // 1000
                    with path.open("r+b") as f:
                        f.truncate(keep)
                        if arg % 3 == 0 and keep < size:
                            f.seek(keep)
                            f.write(b"\x00" * (arg % 7))
                sink = open_sink(path, engine_mark)
                mark = sink.delivered_seq()
                assert mark >= engine_mark
                held = [c for c in cases if c.seq <= mark]
                assert lines(path) == bodies(held)
                # the engine re-delivers from its own (maybe older) mark
                nxt = sum(1 for c in cases if c.seq <= engine_mark)
        sink.deliver(cases[nxt:])
        sink.close()
        assert sink.delivered_seq() == seqs[-1]
        assert lines(path) == expected
