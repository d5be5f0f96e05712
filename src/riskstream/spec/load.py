"""Load a YAML spec into a validated :class:`PipelineSpec`, or refuse it with the error's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from riskstream.errors import SpecError
from riskstream.spec.model import PipelineSpec


def load_spec(path: str | Path) -> PipelineSpec:
    """Read, parse and validate the spec at ``path`` (structure and rule expressions)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("", f"cannot read spec {str(p)!r}: {exc.strerror or exc}") from None
    spec = parse_spec(text, source=str(p))
    from riskstream.spec.check import check_spec

    check_spec(spec, base_dir=p.parent)
    return spec


def parse_spec(text: str, *, source: str = "<spec>") -> PipelineSpec:
    """Parse YAML text into a structurally valid spec (expressions are checked separately)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(
            "", f"{source}: a spec is a YAML mapping (name, source, metrics, rules ...)"
        )
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def _first_error(exc: ValidationError) -> SpecError:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
    # pydantic adds the union/literal tag to the location; keep only user-visible keys.
    loc = [part for part in loc if part not in {"str", "int", "float", "literal['file']"}]
    path = ".".join(loc)
    kind = err["type"]
    given: Any = err.get("input")
    if kind == "extra_forbidden":
        parent, _, key = path.rpartition(".")
        return SpecError(parent or key, f"unknown key {key!r}")
    if kind == "missing":
        parent, _, key = path.rpartition(".")
        return SpecError(parent or key, f"missing required key {key!r}")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return SpecError(path, f"{given!r} is not one of {expected}")
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return SpecError(path, message)
