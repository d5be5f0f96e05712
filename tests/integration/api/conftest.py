"""Fixtures: one live engine + API shared by the read-mostly tests, on each ASGI server.

Every fixture that serves the API takes ``http_server``, so each test of this package runs
once on uvicorn and once on granian (``RISKSTREAM_HTTP_SERVER`` picks one in production).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.api._live import ADMIN, Live, start_live

HTTP_SERVERS = ("uvicorn", "granian")


@pytest.fixture(scope="session", params=HTTP_SERVERS)
def http_server(request: pytest.FixtureRequest) -> str:
    """The ASGI server the API runs on in this test."""
    return str(request.param)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    """The shared live system (tests that change engine state use their own)."""
    system = start_live(Path(tmp_path_factory.mktemp("api-live")), server=http_server)
    assert system.server.kind == http_server
    yield system
    system.stop()


@pytest.fixture
def client(live: Live) -> Iterator[httpx.Client]:
    """An httpx client with the all-scopes key."""
    with httpx.Client(base_url=live.url, headers=live.headers(ADMIN), timeout=30) as c:
        yield c
