"""Issue 12 item 14: every YAML spec in README.md, docs/ and examples/ validates.

A ```yaml block of a Markdown file is a whole spec when it has a top-level ``name``; otherwise
it is a fragment (the Kafka source and sinks, say) and is validated inside a minimal spec.
List files are resolved against ``examples/`` (where the README's ``lists/...`` files live).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riskstream.spec.check import check_spec
from riskstream.spec.load import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[3]
_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)


def _markdown_files() -> list[Path]:
    found = [ROOT / "README.md"]
    found += sorted((ROOT / "docs").rglob("*.md")) if (ROOT / "docs").is_dir() else []
    found += sorted((ROOT / "examples").rglob("*.md"))
    return [p for p in found if p.is_file()]


def _blocks() -> list[tuple[str, str]]:
    out = []
    for path in _markdown_files():
        for i, block in enumerate(_BLOCK.findall(path.read_text(encoding="utf-8"))):
            out.append((f"{path.relative_to(ROOT)}#{i + 1}", block))
    return out


BLOCKS = _blocks()
EXAMPLES = sorted((ROOT / "examples").rglob("*.y*ml"))


def test_the_documents_hold_specs_to_check() -> None:
    assert any(name.startswith("README.md") for name, _ in BLOCKS)
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize(("name", "block"), BLOCKS, ids=[n for n, _ in BLOCKS])
def test_every_yaml_block_in_the_docs_validates(name: str, block: str) -> None:
    whole = re.search(r"^name:", block, re.M) is not None
    spec = parse_spec(block if whole else "name: fragment\n" + block, source=name)
    check_spec(spec, base_dir=ROOT / "examples")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_spec_validates(path: Path) -> None:
    load_spec(path)
