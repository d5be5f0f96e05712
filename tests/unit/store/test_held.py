"""The engine's kept DuckDB connection (``store/duckdb/held.py``): one open for many writes,
turns for readers in other processes, and commits that survive a SIGKILL of the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb

from riskstream.core.checkpoint import Checkpoint
from riskstream.store.duckdb import Store
from riskstream.store.duckdb.connection import _HELD, _key
from riskstream.store.duckdb.held import GRACE_S, ask_to_read, request_path

SRC = str(Path(__file__).resolve().parents[3] / "src")


def _reader(data: Path) -> subprocess.CompletedProcess[str]:
    """Another process reading the positions, as ``riskstream query`` reads the store."""
    code = textwrap.dedent(
        f"""
        from riskstream.store.duckdb import Store
        print(Store({str(data)!r}, read_only=True, lock_wait_s=20).positions("src"))
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_engine_keeps_one_connection_and_lends_it_to_the_process(tmp_path: Path) -> None:
    engine = Store(tmp_path, hold=True)
    try:
        held = _HELD[_key(engine.path)]
        engine.write_checkpoint(Checkpoint(source="src", positions={"p0": 1}))
        first = held.con
        assert first is not None
        for i in range(2, 6):
            engine.write_checkpoint(Checkpoint(source="src", positions={"p0": i}))
        assert held.con is first  # never reopened between writes
        # DuckDB's memory is bounded (its default, 80% of RAM, let upkeep spike the engine).
        limit = first.execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit is not None and limit[0] == "244.1 MiB"  # 256 MB
        # Another store object of the process (the API's) reads through the same connection,
        # even a read-only one, which could not open the file beside a read-write handle.
        assert Store(tmp_path, read_only=True).positions("src") == {"p0": 5}
        assert held.con is first and held.yields == 0
    finally:
        engine.close()
    assert _key(engine.path) not in _HELD
    # Closed: the file is free for a plain read-write open.
    duckdb.connect(str(engine.path)).close()


def test_a_reader_in_another_process_gets_turns_while_the_engine_writes(tmp_path: Path) -> None:
    engine = Store(tmp_path, hold=True)
    try:
        held = _HELD[_key(engine.path)]
        engine.write_checkpoint(Checkpoint(source="src", positions={"p0": 7}))
        assert held.con is not None
        out = _reader(tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "{'p0': 7}"
        assert held.yields == 1 and request_path(engine.path).exists()
        # While polite, the engine's writes open and close the file (the reader may be back).
        engine.write_checkpoint(Checkpoint(source="src", positions={"p0": 8}))
        assert held.con is None
        assert _reader(tmp_path).stdout.strip() == "{'p0': 8}"
        # After the grace period without requests, the connection is kept again.
        time.sleep(GRACE_S + 0.3)
        engine.write_checkpoint(Checkpoint(source="src", positions={"p0": 9}))
        assert held.con is not None
    finally:
        engine.close()
    assert Store(tmp_path, read_only=True).positions("src") == {"p0": 9}


def test_commits_on_the_kept_connection_survive_a_sigkill(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal
        from riskstream.core.checkpoint import Checkpoint
        from riskstream.store.duckdb import Store
        s = Store({str(tmp_path)!r}, hold=True)
        for i in range(1, 51):
            s.write_checkpoint(Checkpoint(source="src", positions={{"p0": i}}))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no DuckDB checkpoint of the WAL
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, env=env)
    assert proc.returncode == -signal.SIGKILL
    assert Store(tmp_path, read_only=True).positions("src") == {"p0": 50}


def test_a_small_commit_runs_beside_a_transaction_in_flight(tmp_path: Path) -> None:
    """The engine's case commit does not wait for the writer's bulk checkpoint."""
    engine = Store(tmp_path, hold=True)
    inside, finish = threading.Event(), threading.Event()

    def bulk(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("INSERT OR REPLACE INTO positions VALUES ('src', 'p0', 42)")
        inside.set()
        assert finish.wait(30)

    writer = threading.Thread(target=engine._in_transaction, args=("bulk", bulk))
    try:
        assert engine.concurrent_commits
        writer.start()
        assert inside.wait(30)
        t0 = time.monotonic()
        engine.write_checkpoint(Checkpoint(source="src", rule_hits={"burst": 3}))
        assert time.monotonic() - t0 < 5 and writer.is_alive()
        reader = Store(tmp_path, read_only=True)
        assert reader.rule_hits() == {"burst": 3}
        assert reader.positions("src") == {}  # the bulk transaction has not committed yet
        finish.set()
        writer.join(30)
        assert reader.positions("src") == {"p0": 42}
    finally:
        finish.set()
        engine.close()


def test_a_symlinked_readers_file_is_not_followed(tmp_path: Path) -> None:
    """A planted link at the readers file never touches its target, and a reader just waits."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.utime(victim, (1_000_000, 1_000_000))
    db = tmp_path / "riskstream.duckdb"
    request_path(db).symlink_to(victim)
    ask_to_read(db)  # no error: best effort
    assert victim.stat().st_mtime == 1_000_000
    assert victim.read_text() == "precious\n"
