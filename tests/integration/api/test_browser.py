"""End to end in headless Debian chromium: queue -> case -> "Confirmed fraud" -> persisted.

Chromium comes from Debian (``apt-get install -y chromium``), never from ``playwright
install``. Without it the test is skipped locally and FAILS in CI (env ``CI`` set).
Screenshots go to a temporary directory, or to ``docs/screenshots/`` when
``RISKSTREAM_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api._live import ADMIN, ANALYST, T0, Live, start_live

CHROMIUM = os.environ.get("RISKSTREAM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason} (CI: install it with `apt-get update && apt-get install -y chromium`)"
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Python Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"chromium not found at {CHROMIUM}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    """A separate live system (the test records decisions)."""
    system = start_live(Path(tmp_path_factory.mktemp("api-ui")), n=1500, seed=7, server=http_server)
    yield system
    system.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    if os.environ.get("RISKSTREAM_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path


def test_confirm_fraud_from_the_queue(browser: Any, site: Live, shots: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site.url + "/#/cases?rule=card_velocity")
    # The key is asked for once, then kept in sessionStorage.
    page.get_by_label("API key").fill(ANALYST)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Case queue").wait_for()
    rows = page.locator("table.grid tbody tr")
    rows.first.wait_for()
    assert rows.count() == 25
    assert page.get_by_text("of 1,").count() or page.locator(".pager").inner_text()
    first = rows.first.locator("a.case-link")
    href = first.get_attribute("href")
    assert href and href.startswith("#/cases/")
    case_id = href.split("/")[-1]
    first.click()
    page.get_by_role("heading", name="Decision").wait_for()
    assert page.get_by_text("card.count(1m) >= 4").count() == 1
    assert (
        "************" in page.locator("table.kv").last.inner_text()
    )  # masked without 'sensitive'
    page.get_by_label("Analyst").fill("Dana Analyst")
    page.get_by_label("Note (optional)").fill(
        "Card tested in a burst; cardholder confirmed it was not them."
    )
    page.get_by_role("button", name="Confirmed fraud").click()
    page.locator("h1 .badge.confirmed_fraud").wait_for()
    page.get_by_text("Dana Analyst").wait_for()
    page.screenshot(path=str(shots / "case.png"), full_page=True)

    # Persisted: the API (and so the store) has it.
    case = httpx.get(f"{site.url}/v1/cases/{case_id}", headers=site.headers(ADMIN)).json()
    assert case["status"] == "confirmed_fraud"
    assert [(d["decision"], d["analyst"]) for d in case["decisions"]] == [
        ("confirmed_fraud", "Dana Analyst")
    ]

    # The key survives navigation within the tab: the metric explorer needs no new sign-in.
    page.get_by_role("link", name="Metric explorer").click()
    page.get_by_label("Key", exact=True).fill("c3")
    page.get_by_label("From", exact=True).fill("2026-01-05T00:00:00Z")
    page.get_by_label("To", exact=True).fill("2026-01-05T01:10:00Z")
    page.get_by_label("Step").select_option("5m")
    page.get_by_role("button", name="Show").click()
    page.locator("svg.chart rect.bar").first.wait_for()
    assert page.locator("svg.chart rect.bar").count() == 14
    count = httpx.get(
        f"{site.url}/v1/metrics/card/c3",
        params={"from": T0, "to": T0 + 4_200_000},
        headers=site.headers(ADMIN),
    ).json()["count"]
    assert page.locator(".tiles li").first.inner_text().replace(",", "").split()[-1] == str(count)
    page.screenshot(path=str(shots / "metrics.png"), full_page=True)

    page.get_by_role("link", name="Rules").click()
    page.get_by_role("heading", name="Rules").wait_for()
    assert page.locator("table.grid tbody tr").count() == 3
    assert errors == []
    page.close()
