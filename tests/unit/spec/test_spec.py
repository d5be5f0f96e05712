"""Spec loading: good specs load; bad ones are refused with the path of the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskstream.errors import SpecError
from riskstream.spec.load import load_spec

BASE = """
name: t
event: {time: ts, id: id, fields: {amount: float, card_id: str, merchant_id: str, ts: any, id: str, status: str, title: str}}
metrics:
  card: {dimension: [card_id], value: amount, where: "status == 'ok'", stats: [count, sum, avg, min, max, var]}
  merchant_cards: {dimension: [merchant_id], value: card_id, stats: [distinct]}
lists:
  words: {values: [replica, vape]}
rules:
  card_testing: {when: "card.count(1m) >= 10 and card.avg(1m) < 5", action: review, score: 80}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_base_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.tiers == ["second", "minute", "hour", "day", "week"]
    assert spec.retention_ms("second") == 7_200_000
    assert spec.rules["card_testing"].score == 80


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("card.count(1m)", "crd.count(1m)"),
            "rules.card_testing.when: col 1: unknown metric 'crd'",
        ),
        (
            ("card.avg(1m) < 5", "card.avg(1m) < amout"),
            "rules.card_testing.when: col 41: unknown field 'amout'",
        ),
        (("card.count(1m)", "card.count(7x)"), "rules.card_testing.when: col 12"),
        (
            ("action: review", "action: escalate"),
            "rules.card_testing.action: 'escalate' is not one of",
        ),
        (("score: 80}", "score: 80, colour: red}"), "rules.card_testing: unknown key 'colour'"),
        (
            ("name: t\n", "name: t\ntiers: [second, fortnight]\n"),
            "tiers.1: 'fortnight' is not one of",
        ),
        (
            ("name: t\n", "name: t\nretention: {second: 2 hours}\n"),
            "retention: bad duration '2 hours'",
        ),
        (("name: t\n", "name: t\nretention: {minutes: 2h}\n"), "retention: unknown tier 'minutes'"),
        (
            ("[card_id], value", "[card_nr], value"),
            "metrics.card.dimension.0: unknown field 'card_nr'",
        ),
        (
            ("stats: [distinct]", "stats: [distinct, median]"),
            "metrics.merchant_cards.stats.1: 'median' is not one of",
        ),
        (("status == 'ok'", "status == "), "metrics.card.where: col"),
        (
            ("words: {values: [replica, vape]}", "words: {file: missing.txt}"),
            "lists.words.file: no such file",
        ),
        (
            ("{time: ts, id: id,", "{time: ts, id: id, max_lateness: soon,"),
            "event.max_lateness: bad duration 'soon'",
        ),
    ],
)
def test_bad_specs_name_the_path(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = BASE.replace(*change)
    assert text != BASE
    with pytest.raises(SpecError) as exc:
        load_spec(write(tmp_path, text))
    assert str(exc.value).startswith(message), str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_top_level_key_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^rulez: unknown key 'rulez'$"):
        load_spec(write(tmp_path, BASE + "rulez: {}\n"))
    with pytest.raises(SpecError, match="invalid YAML at line"):
        load_spec(write(tmp_path, "name: [unclosed\n"))


def test_window_longer_than_retention_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("card.count(1m) >= 10", "card.count(600w) >= 10")
    with pytest.raises(
        SpecError, match=r"^rules.card_testing.when: card.count\(600w\): window 600w is longer"
    ):
        load_spec(write(tmp_path, text))
