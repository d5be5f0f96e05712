"""Versioned models under the store: ``DATA_DIR/models/NAME/vN/`` and what each version holds.

A version directory holds ``model.txt`` (the LightGBM booster), ``meta.json`` (feature list,
training range, spec fingerprint, metrics, calibration, drift reference) and the report
(``report.html`` with its PNG plots). Versions are written to a temporary directory and
renamed into place, so a reader never sees half a version.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from riskstream.errors import RiskstreamError, SpecError
from riskstream.rules import CompiledExpr, RuleContext, compile_expression
from riskstream.rules.parser import ExpressionError
from riskstream.spec.check import feature_tier, rule_context
from riskstream.spec.model import PipelineSpec

MODEL_FILE = "model.txt"
META_FILE = "meta.json"
_VERSION = re.compile(r"^v([0-9]+)$")


class ModelError(SpecError):
    """A model cannot be used: ``model 'fraud' (v3): <reason>`` in one line.

    A :class:`SpecError` so that a refused model refuses the spec: the engine does not start,
    and a hot reload keeps the running spec and its models.
    """

    def __init__(self, name: str, reason: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        self.reason = reason
        where = f" (v{version})" if version is not None else ""
        super().__init__("", f"model {name!r}{where}: {reason}")


class NotEnoughLabels(RiskstreamError):
    """Too few labelled events to train: the message carries the counts."""


def models_root(data_dir: Path) -> Path:
    """Where every model's versions live."""
    return data_dir / "models"


def versions(root: Path, name: str) -> list[int]:
    """The complete versions of ``name``, oldest first."""
    base = root / name
    if not base.is_dir():
        return []
    out = []
    for child in base.iterdir():
        m = _VERSION.match(child.name)
        if m and child.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def resolve(root: Path, name: str, version: int | str) -> int:
    """The version number ``latest``/``N`` names; ModelError when there is none."""
    have = versions(root, name)
    if not have:
        raise ModelError(
            name,
            f"no trained version under {root / name} "
            f"(train one: riskstream train -c SPEC --model {name})",
        )
    if version == "latest":
        return have[-1]
    assert isinstance(version, int)
    if version not in have:
        listed = ", ".join(f"v{v}" for v in have)
        raise ModelError(name, f"version {version} not found (have {listed})", version)
    return version


def version_dir(root: Path, name: str, version: int) -> Path:
    """The directory of one version."""
    return root / name / f"v{version}"


def compile_features(
    spec: PipelineSpec, features: list[str], ctx: RuleContext | None = None
) -> list[CompiledExpr]:
    """Check each model feature (a numeric rule expression) against ``spec``.

    Returns the compiled expressions; raises ValueError naming the first feature that the
    spec cannot compute (unknown metric, stat, field or window, or text instead of a number).
    """
    ctx = ctx or rule_context(spec)
    ctx = RuleContext(fields=ctx.fields, metrics=ctx.metrics, lists=ctx.lists)  # no model.X
    out = []
    for text in features:
        try:
            compiled = compile_expression(text, ctx, expect_bool=False)
        except ExpressionError as exc:
            raise ValueError(f"feature {text!r} is not in this spec: {exc.message}") from None
        if compiled.result_type == "str":
            raise ValueError(f"feature {text!r} is text, not a number")
        for ref in compiled.features:
            try:
                feature_tier(spec, ref.window_ms)
            except ValueError as exc:
                raise ValueError(f"feature {text!r}: {exc}") from None
        out.append(compiled)
    return out


def fingerprint(spec: PipelineSpec, features: list[str]) -> str:
    """What the features mean in ``spec``: pipeline name, the metrics and fields they read, tiers.

    Rules, lists and other models are left out: changing them does not change a feature's
    value, so a model stays valid across rule edits and promotions.
    """
    compiled = compile_features(spec, features)
    metrics = sorted({ref.metric for c in compiled for ref in c.features})
    fields = sorted({f for c in compiled for f in c.fields})
    declared = spec.event.fields or {}
    doc = {
        "pipeline": spec.name,
        "time": spec.event.time,
        "metrics": {m: spec.metrics[m].model_dump(mode="json") for m in metrics},
        "fields": {f: declared.get(f, "any") for f in fields},
        "tiers": list(spec.tiers),
        "retention": {t: spec.retention[t] for t in spec.tiers},
        "features": list(features),
    }
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class StoredModel:
    """One version as found on disk (the booster is loaded by the scorer)."""

    name: str
    version: int
    path: Path
    meta: dict[str, Any]

    @property
    def features(self) -> list[str]:
        """The feature expressions, in the booster's column order."""
        return list(self.meta["features"])


def read_version(root: Path, name: str, version: int | str) -> StoredModel:
    """Meta and files of one version, checked; ModelError (one line) on anything wrong."""
    number = resolve(root, name, version)
    vdir = version_dir(root, name, number)
    meta_path = vdir / META_FILE
    model_path = vdir / MODEL_FILE
    if not meta_path.is_file():
        raise ModelError(name, f"missing {meta_path}", number)
    if not model_path.is_file():
        raise ModelError(name, f"missing model file {model_path}", number)
    try:
        meta = orjson.loads(meta_path.read_bytes())
        assert isinstance(meta, dict) and isinstance(meta["features"], list)
    except (orjson.JSONDecodeError, AssertionError, KeyError):
        raise ModelError(name, f"corrupt {meta_path} (not the JSON train writes)", number) from None
    digest = meta.get("model_sha256")
    if digest and sha256_file(model_path) != digest:
        raise ModelError(
            name, f"corrupt model file {model_path} (checksum differs from meta.json)", number
        )
    return StoredModel(name, number, vdir, meta)


def check_against_spec(stored: StoredModel, spec: PipelineSpec, entry: str) -> None:
    """Refuse a model whose features the spec cannot compute, or trained for another spec."""
    try:
        compile_features(spec, stored.features)
    except ValueError as exc:
        raise ModelError(entry, str(exc), stored.version) from None
    trained_for = stored.meta.get("spec_name")
    if trained_for != spec.name:
        raise ModelError(
            entry,
            f"trained for spec {trained_for!r}, not {spec.name!r} (train it on this spec)",
            stored.version,
        )
    now = fingerprint(spec, stored.features)
    if stored.meta.get("fingerprint") != now:
        raise ModelError(
            entry,
            f"trained for another definition of its features (spec fingerprint "
            f"{stored.meta.get('fingerprint')} at training, {now} now): retrain it",
            stored.version,
        )


def write_version(root: Path, name: str, files: dict[str, bytes], meta: dict[str, Any]) -> int:
    """Write a new version atomically (temp dir + rename); returns its number."""
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    tmp = base / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    for fname, data in files.items():
        (tmp / fname).write_bytes(data)
    while True:
        number = (versions(root, name) or [0])[-1] + 1
        meta = {**meta, "name": name, "version": number}
        (tmp / META_FILE).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        try:
            tmp.rename(version_dir(root, name, number))
            return number
        except OSError:  # another trainer took that number: try the next one
            if version_dir(root, name, number).exists():
                continue
            raise
