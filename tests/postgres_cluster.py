"""pytest helpers for the throw-away PostgreSQL cluster of ``tools/postgres.py``.

``pg_cluster`` is one cluster for the whole test session (started on first use, destroyed
at the end); ``pg_schema`` is a fresh schema name per test, so tests never see each
other's tables. A test that stops or restarts the server starts its own cluster with
:func:`cluster_or_fail`. When the cluster cannot start, the test FAILS (never skips).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # tools/ is a plain directory next to tests/
    sys.path.insert(0, str(_ROOT))

from tools.postgres import PostgresCluster, PostgresError  # noqa: E402

__all__ = ["PostgresCluster", "cluster_or_fail", "pg_cluster", "pg_schema", "unique_schema"]


def cluster_or_fail(data_dir: Path) -> PostgresCluster:
    """A started cluster in ``data_dir``; the test fails (not skips) if it cannot start."""
    cluster = PostgresCluster(data_dir)
    try:
        cluster.start()
    except (PostgresError, OSError) as exc:
        pytest.fail(f"the PostgreSQL cluster could not start: {exc}", pytrace=False)
    return cluster


def unique_schema(prefix: str = "t") -> str:
    """A fresh schema name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the test session."""
    cluster = cluster_or_fail(tmp_path_factory.mktemp("postgres"))
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_schema() -> str:
    """A schema name no other test uses."""
    return unique_schema()
