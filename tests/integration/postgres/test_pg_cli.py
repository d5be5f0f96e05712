"""The command line over a PostgreSQL store: run, query, validate, and PostgreSQL down at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl

from tests.postgres_cluster import PostgresCluster

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "riskstream.cli"]


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_postgres_down_at_start_is_one_line_exit_2(tmp_path: Path) -> None:
    port = _closed_port()
    spec = ROOT / "examples" / "card-velocity-postgres.yaml"
    dsn = f"postgresql://risk:hunter2@127.0.0.1:{port}/risk"
    for args in (
        ["run", "-c", str(spec), "--until-end", "--data-dir", str(tmp_path / "d")],
        ["query", "-c", str(spec), "card", "c1", "--from", "0", "--to", "1"],
    ):
        proc = _cli(*args, env={"RISKSTREAM_PG_DSN": dsn}, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in lines[0]
        assert "hunter2" not in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr


def test_missing_dsn_variable_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RISKSTREAM_PG_DSN"}
    proc = subprocess.run(
        [
            *CLI,
            "query",
            "-c",
            str(ROOT / "examples" / "card-velocity-postgres.yaml"),
            "card",
            "c",
            "--from",
            "0",
            "--to",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "riskstream: store.kind is postgres but $RISKSTREAM_PG_DSN is not set (export the DSN, "
        "e.g. the one `make postgres` prints, or pass --store-dsn)"
    )


def test_example_runs_and_queries_through_postgres(
    pg_cluster: PostgresCluster, pg_schema: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    assert _cli("generate", "--events", "3000", "--seed", "5", "--out", str(events)).returncode == 0
    text = (ROOT / "examples" / "card-velocity-postgres.yaml").read_text()
    spec = tmp_path / "spec.yaml"
    spec.write_text(text.replace("schema: riskstream", f"schema: {pg_schema}"))
    env = {"RISKSTREAM_PG_DSN": pg_cluster.dsn}
    proc = _cli("validate", "-c", str(spec))
    assert proc.returncode == 0
    assert "several engines (source.key: card_id): every rule feature is exact" in proc.stdout
    run = _cli(
        "run",
        "-c",
        str(spec),
        "--source",
        f"file:{events}",
        "--until-end",
        "-q",
        "--data-dir",
        str(tmp_path / "d"),
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert pg_cluster.dsn not in run.stderr + run.stdout
    frame = pl.read_ndjson(events)
    card = frame["card_id"][0]
    amounts = frame.filter(pl.col("card_id") == card)["amount"].to_list()
    # --store-dsn overrides the environment (which here points nowhere).
    q = _cli(
        "query",
        "-c",
        str(spec),
        "card",
        card,
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
        "--store-dsn",
        pg_cluster.dsn,
        env={"RISKSTREAM_PG_DSN": f"postgresql://x@127.0.0.1:{_closed_port()}/x"},
    )
    assert q.returncode == 0, q.stderr
    got = orjson.loads(q.stdout)
    assert got["count"] == len(amounts)
    assert abs(got["sum"] - sum(amounts)) < 1e-6
