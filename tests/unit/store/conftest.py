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
STORE_BACKENDS: list[str] = ["duckdb"]


def open_store(backend: str, where: Path) -> Store:
    """A fresh, empty store of ``backend`` (``where`` is a new directory for it)."""
    if backend == "duckdb":
        from riskstream.store.duck import DuckDBStore

        return DuckDBStore(where / "data")
    raise AssertionError(f"no such store backend {backend!r}")


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


@pytest.fixture
def store(store_backend: str, tmp_path: Path) -> Iterator[Store]:
    """An empty store of the backend under test."""
    s = open_store(store_backend, tmp_path)
    try:
        yield s
    finally:
        s.close()
