"""Write a rule into the spec file (the source of truth), checked before it replaces the file.

The file is edited as a round-trip YAML document (ruamel.yaml), so the analysts' comments,
key order and quoting outside the changed rule are kept; it is validated as a whole spec
first and replaced atomically, so a running engine hot-reloads either the old or the new
file, never half of one.
"""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError as RoundTripError

from riskstream.errors import SpecError
from riskstream.spec.load import load_spec
from riskstream.spec.model import PipelineSpec, RuleSpec

BODY_KEYS = ("when", "action", "score")


def rule_body(rule: RuleSpec) -> dict[str, Any]:
    """What a version records of a rule."""
    return {"when": rule.when, "action": rule.action, "score": rule.score}


def diff_text(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A unified diff of two rule bodies (YAML lines)."""
    a = yaml.safe_dump(old, sort_keys=False).splitlines() if old else []
    b = yaml.safe_dump(new, sort_keys=False).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "live", "proposed", lineterm=""))


def write_rule(path: Path, name: str, body: dict[str, Any]) -> PipelineSpec:
    """Set rule ``name`` to ``body`` in the spec file at ``path``; returns the new spec.

    Raises SpecError (nothing written) when the result is not a valid spec.
    """
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never fold a long rule expression onto two lines
    try:
        data = rt.load(path.read_text())
    except (OSError, RoundTripError) as exc:
        raise SpecError("", f"cannot read the spec file {str(path)!r}: {exc}") from None
    if not isinstance(data, CommentedMap):
        raise SpecError("", f"the spec file {str(path)!r} is not a mapping")
    rules = data.get("rules")
    if not isinstance(rules, CommentedMap):
        rules = CommentedMap()
        data["rules"] = rules
    current = rules.get(name)
    if not isinstance(current, CommentedMap):
        current = CommentedMap()
        rules[name] = current
    for key in BODY_KEYS:  # in place: the rule keeps its other keys and its comments
        if key in body:
            current[key] = body[key]
    out = io.StringIO()
    rt.dump(data, out)
    text = out.getvalue()
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    try:
        spec = load_spec(tmp)  # the whole spec, checked with the file's directory as base
    except SpecError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return spec
