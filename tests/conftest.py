"""Shared fixtures: an independent event writer and the riskstream command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RISKSTREAM = [sys.executable, "-m", "riskstream.cli"]


def run_cli(
    *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 600, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``riskstream ARGS`` in a fresh process; return the completed process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [*RISKSTREAM, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"riskstream {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc  # type: ignore[no-any-return]


@pytest.fixture
def cli() -> object:
    """The ``run_cli`` helper as a fixture."""
    return run_cli


from tests.postgres_cluster import pg_cluster, pg_schema  # noqa: E402, F401  (fixtures)
