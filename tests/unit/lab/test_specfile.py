"""Approving a rule writes it into the spec file: only that rule changes, comments stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from riskstream.errors import SpecError
from riskstream.lab.specfile import write_rule

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "card-velocity.yaml"
    shutil.copy(EXAMPLES / "card-velocity.yaml", path)
    shutil.copytree(EXAMPLES / "lists", tmp_path / "lists")
    return path


def _comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("card_testing", {"when": "card.count(1m) >= 12 and card.avg(1m) < 5", "score": 85}),
        ("brand_new", {"when": "card.count(1h) >= 50", "action": "review", "score": 40}),
    ],
)
def test_only_the_rule_changes_and_comments_are_kept(
    spec_path: Path, name: str, body: dict[str, object]
) -> None:
    before_text = spec_path.read_text()
    expected = yaml.safe_load(before_text)  # the oracle: the old data with the rule updated
    expected["rules"].setdefault(name, {}).update(body)

    spec = write_rule(spec_path, name, body)

    after_text = spec_path.read_text()
    assert yaml.safe_load(after_text) == expected
    assert _comments(after_text) == _comments(before_text)
    assert spec.rules[name].when == body["when"]


def test_an_invalid_rule_leaves_the_file_untouched(spec_path: Path) -> None:
    before = spec_path.read_bytes()
    with pytest.raises(SpecError):
        write_rule(spec_path, "card_testing", {"when": "card.count(1m) >= "})
    assert spec_path.read_bytes() == before
    assert sorted(p.name for p in spec_path.parent.iterdir()) == ["card-velocity.yaml", "lists"]
