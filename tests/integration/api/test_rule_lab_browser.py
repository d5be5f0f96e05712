"""The rule lab in headless Chromium: write, backtest, propose, four-eyes approve, live, roll back.

An analyst writes a new version of ``card_velocity`` (validated as typed), backtests it over
the archive (hits-per-day chart, precision/recall against imported labels), proposes it;
the same analyst cannot approve it; a second analyst does, the engine hot-reloads it and the
next matching event raises a case with the new rule; a rollback restores the old version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from riskstream.lab.labels import import_labels
from riskstream.store.duckdb import Store
from tests.integration.api._live import ADMIN, ANALYST, SPEC, T0, Live, start_live
from tests.integration.api.test_browser import browser, shots  # noqa: F401  (fixtures)

LAB_SPEC = SPEC.replace(
    "checkpoint: {{every: 200ms, events: 1000}}",
    "checkpoint: {{every: 200ms, events: 1000}}\narchive: {{retention: 30d}}",
)
OLD = "card.count(1m) >= 4"
NEW = "card.count(1m) >= 4 or amount == 123.45"


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    system = start_live(
        Path(tmp_path_factory.mktemp("lab-ui")),
        n=1500,
        seed=7,
        spec_text=LAB_SPEC,
        server=http_server,
    )
    # Late labels: the burst is fraud, every 7th background event is legit.
    csv = system.root / "labels.csv"
    rows = [f"burst{j},1" for j in range(6)] + [f"e{i:05d},0" for i in range(0, 1500, 7)]
    csv.write_text("event_id,label\n" + "\n".join(rows) + "\nbogus-id,1\n")
    system.runner.checkpoint_now()
    with system.runner.lock:
        report = import_labels(system.runner.spec, system.data_dir, csv)
    assert (report.imported, report.unknown, report.malformed) == (len(rows), 1, 0)
    yield system
    system.stop()


def _append(site: Live, event: dict[str, Any]) -> None:
    with (site.root / "events.jsonl").open("ab") as f:
        f.write(orjson.dumps(event) + b"\n")


def _case_rules(site: Live, event_id: str) -> set[str]:
    with site.runner.lock:
        rows = Store(site.data_dir).select("SELECT rule FROM cases WHERE event_id = ?", [event_id])
    return {str(r[0]) for r in rows}


def _processed(site: Live, n: int) -> None:
    deadline = time.monotonic() + 30
    while site.runner.stats.events < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert site.runner.stats.events >= n
    site.runner.checkpoint_now()


def _probe(site: Live, event_id: str, offset_ms: int) -> None:
    before = site.runner.stats.events
    _append(
        site,
        {
            "event_id": event_id,
            "event_time": site.events[-1]["event_time"] + offset_ms,
            "amount": 123.45,
            "card_id": f"card-{event_id}",
            "card_number": "4000000000000002",
            "status": "succeeded",
            "merchant_id": "m1",
        },
    )
    _processed(site, before + 1)


def _sign_in(page: Any, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Continue").click()


def test_write_backtest_propose_approve_live_rollback(
    browser: Any,  # noqa: F811
    lab_site: Live,
    shots: Path,  # noqa: F811
) -> None:
    site = lab_site
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    opened = time.monotonic()
    page.goto(site.url + "/#/lab?rule=card_velocity")
    _sign_in(page, ANALYST)
    page.get_by_role("heading", name="Rule lab").wait_for()
    when = page.get_by_label("Condition")
    page.locator("#l-check.valid").wait_for()  # the live condition, prefilled and checked
    assert when.input_value() == OLD
    # Validated as typed: an incomplete condition says where it breaks; Backtest stays off.
    when.fill("card.count(1m) >= ")
    page.locator("#l-check.error").wait_for()
    assert "col " in page.locator("#l-check").inner_text()
    assert page.get_by_role("button", name="Backtest").is_disabled()
    when.fill(NEW)
    page.locator("#l-check.valid").wait_for()
    page.get_by_role("button", name="Backtest").click()
    page.locator("svg.chart.hits rect.bar").first.wait_for(timeout=60_000)
    table = page.get_by_role("table", name="Backtest result").inner_text()
    # Same answer as the API's own backtest of the live rule: the burst's 3 fraud hits.
    direct = _backtest(site, OLD)
    assert f"{direct['true_positives']}" in table
    assert "Precision" in table and "Recall" in table
    assert "Live version" in table
    page.locator("#l-diff").wait_for()
    page.screenshot(path=str(shots / "backtest.png"), full_page=True)

    page.get_by_role("button", name="Propose").click()
    page.get_by_text("a second analyst approves it").wait_for()
    row = page.locator("table.versions tbody tr", has_text="proposed")
    row.wait_for()
    # Four eyes: the author cannot approve their own proposal.
    row.get_by_role("button", name="Approve").click()
    page.get_by_text("four-eyes").wait_for()
    assert site.runner.spec.rules["card_velocity"].when == OLD

    page.get_by_role("button", name="Forget API key").click()
    _sign_in(page, ADMIN)
    page.goto(site.url + "/#/lab?rule=card_velocity")
    row = page.locator("table.versions tbody tr", has_text="proposed")
    row.get_by_role("button", name="Approve").click()
    page.locator("table.versions tbody tr", has_text="live").filter(has_text="123.45").wait_for()
    live_after = time.monotonic() - opened
    assert site.runner.spec.rules["card_velocity"].when == NEW
    print(f"open the editor -> rule live: {live_after:.1f} s (scripted, two analysts)")

    _probe(site, "probe-new", 1_000)
    assert _case_rules(site, "probe-new") == {"card_velocity"}

    page.get_by_role("button", name="Roll back to v1").click()
    page.get_by_text("rolled back to v1").wait_for()
    assert site.runner.spec.rules["card_velocity"].when == OLD
    _probe(site, "probe-old", 2_000)
    assert _case_rules(site, "probe-old") == set()
    versions = httpx.get(
        f"{site.url}/v1/rules/card_velocity/versions", headers=site.headers(ADMIN)
    ).json()["versions"]
    assert [(v["version"], v["status"], v["body"]["when"]) for v in versions] == [
        (3, "live", OLD),
        (2, "superseded", NEW),
        (1, "superseded", OLD),
    ]
    assert versions[1]["summary"]["true_positives"] == direct["true_positives"]
    assert (
        "+  when: card.count(1m) >= 4 or amount == 123.45"
        in versions[1]["diff"].replace("+when", "+  when")
        or "123.45" in versions[1]["diff"]
    )
    assert errors == []
    page.close()


def _backtest(site: Live, when: str) -> dict[str, Any]:
    """The API's backtest of ``when`` over the generated events (not the probes appended later)."""
    h = site.headers(ANALYST)
    body = {"name": "x", "when": when, "to": site.events[-1]["event_time"] + 1}
    job = httpx.post(f"{site.url}/v1/rules/backtest", json=body, headers=h).json()
    for _ in range(600):
        got = httpx.get(f"{site.url}/v1/rules/backtest/{job['job']}", headers=h).json()
        if got["state"] in ("done", "failed"):
            assert got["state"] == "done", got
            result: dict[str, Any] = got["result"]
            return result
        time.sleep(0.1)
    raise AssertionError("backtest job did not finish")


def test_bad_rule_is_refused_with_its_position_and_nothing_saved(lab_site: Live) -> None:
    h = lab_site.headers(ANALYST)
    before = httpx.get(f"{lab_site.url}/v1/rules/card_velocity/versions", headers=h).json()
    got = httpx.post(
        f"{lab_site.url}/v1/rules/proposals",
        json={"name": "card_velocity", "when": "card.count(1m) >= and"},
        headers=h,
    )
    assert got.status_code == 422
    assert "rules.card_velocity.when: col" in got.json()["error"]
    bt = httpx.post(
        f"{lab_site.url}/v1/rules/backtest", json={"when": "crd.count(1m) > 1"}, headers=h
    )
    assert bt.status_code == 422 and "unknown metric" in bt.json()["error"]
    after = httpx.get(f"{lab_site.url}/v1/rules/card_velocity/versions", headers=h).json()
    assert after == before


def test_backtest_counts_match_brute_force_on_the_live_events(lab_site: Live) -> None:
    from tests.integration.api._live import count_1m

    got = _backtest(lab_site, OLD)
    events = lab_site.events
    want_hits = {e["event_id"] for i, e in enumerate(events) if count_1m(events, i) >= 4}
    assert got["events"] == len(events)
    assert got["hits"] == len(want_hits)
    fraud = {f"burst{j}" for j in range(6)}
    assert got["true_positives"] == len(want_hits & fraud)
    assert got["sample"][0]["event_time"] >= T0
