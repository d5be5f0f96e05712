"""Fixtures: one live engine + API shared by the read-mostly tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.api._live import ADMIN, Live, start_live


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The shared live system (tests that change engine state use their own)."""
    system = start_live(Path(tmp_path_factory.mktemp("api-live")))
    yield system
    system.stop()


@pytest.fixture
def client(live: Live) -> Iterator[httpx.Client]:
    """An httpx client with the all-scopes key."""
    with httpx.Client(base_url=live.url, headers=live.headers(ADMIN), timeout=30) as c:
        yield c
