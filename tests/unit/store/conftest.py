"""The store backends the contract suite (``test_store_contract.py``) runs against.

A new backend adds its name to :data:`STORE_BACKENDS` and a branch to :func:`open_store`;
a backend whose server cannot start fails its tests (never skips).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riskstream.store.protocol import Store

#: Every backend of the ``Store`` protocol.
STORE_BACKENDS: list[str] = ["duckdb", "postgres"]


def open_store(backend: str, where: Path, dsn: str | None = None) -> Store:
    """A fresh, empty store of ``backend`` (``where`` is a new directory for it; ``dsn`` the
    session's PostgreSQL cluster, each store in a schema of its own)."""
    if backend == "duckdb":
        from riskstream.store.duckdb import DuckDBStore

        return DuckDBStore(where / "data")
    if backend == "postgres":
        from riskstream.store.postgres import PgStore
        from tests.postgres_cluster import unique_schema

        assert dsn is not None
        return PgStore(dsn, unique_schema("contract"), pipeline="p", engine="contract")
    raise AssertionError(f"no such store backend {backend!r}")


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


@pytest.fixture
def store(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty store of the backend under test (PostgreSQL: the session's cluster, which
    fails the test if it cannot start)."""
    dsn = request.getfixturevalue("pg_cluster").dsn if store_backend == "postgres" else None
    s = open_store(store_backend, tmp_path, dsn)
    try:
        yield s
    finally:
        s.close()
