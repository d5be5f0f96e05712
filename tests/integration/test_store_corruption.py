"""Issue 12 item 12: a damaged store file is one line on stderr, exit 2, naming the file."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.independent_events import write_events

SPEC = """\
name: corrupt
event: {time: ts, id: event_id}
metrics:
  merchant: {dimension: [merchant], value: amount, stats: [count, sum]}
"""


def _truncate_half(data: bytearray) -> bytearray:
    return data[: len(data) // 2]


def _drop_tail(data: bytearray) -> bytearray:
    # The last quarter: whole 256 KiB DuckDB blocks. Only 4 KiB used to be cut, but the file
    # of an engine that kept its connection ends in free blocks a query never reads.
    return data[: len(data) * 3 // 4]


def _zero_header(data: bytearray) -> bytearray:
    data[:4096] = bytes(4096)
    return data


def _scribble(data: bytearray) -> bytearray:
    rnd = random.Random(1)
    for off in range(3 * 4096, len(data), 8192):
        data[off : off + 64] = bytes(rnd.randrange(256) for _ in range(64))
    return data


def _garbage(data: bytearray) -> bytearray:
    return bytearray(random.Random(2).randbytes(len(data)))


def _empty(data: bytearray) -> bytearray:
    return bytearray()


CORRUPTIONS: dict[str, Callable[[bytearray], bytearray]] = {
    "truncated": _truncate_half,
    "tail_cut": _drop_tail,
    "zero_header": _zero_header,
    "scribbled": _scribble,
    "garbage": _garbage,
    "empty": _empty,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    (root / "spec.yaml").write_text(SPEC)
    write_events(root / "events.jsonl", 3_000, seed=5, hours=1.0)
    run_cli(
        "run", "-c", str(root / "spec.yaml"), "--source", f"file:{root / 'events.jsonl'}",
        "--data-dir", str(root / "clean"), "--until-end",
    )  # fmt: skip
    return root


def _damaged(store: Path, kind: str, name: str) -> Path:
    data_dir = store / name
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir()
    clean = bytearray((store / "clean" / "riskstream.duckdb").read_bytes())
    (data_dir / "riskstream.duckdb").write_bytes(bytes(CORRUPTIONS[kind](clean)))
    return data_dir


def _one_clear_line(stderr: str, data_dir: Path) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "riskstream.duckdb" in lines[0] and str(data_dir.name) in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in stderr


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_query_on_a_damaged_store_is_one_line_exit_2(store: Path, kind: str) -> None:
    data_dir = _damaged(store, kind, f"q-{kind}")
    proc = run_cli(
        "query", "-c", str(store / "spec.yaml"), "merchant", "m1", "--from", "0",
        "--to", "4102444800000", "--data-dir", str(data_dir), check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    _one_clear_line(proc.stderr, data_dir)


@pytest.mark.parametrize("kind", [k for k in CORRUPTIONS if k != "tail_cut"])
def test_run_on_a_damaged_store_is_one_line_exit_2(store: Path, kind: str) -> None:
    # (a cut tail that no block of the last checkpoint uses still opens and runs: not damage
    # the engine can see, so it is left out here)
    data_dir = _damaged(store, kind, f"r-{kind}")
    proc = run_cli(
        "run", "-c", str(store / "spec.yaml"), "--source", f"file:{store / 'events.jsonl'}",
        "--data-dir", str(data_dir), "--until-end", check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    _one_clear_line(proc.stderr, data_dir)
