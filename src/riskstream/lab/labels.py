"""Late labels from a CSV (``riskstream label``): ``event_id,label`` rows into the store.

A label is ``1``/``0`` (also ``true``/``false``, ``fraud``/``legit``, ``yes``/``no``).
A header row ``event_id,label`` is optional. Rows with the wrong number of fields, an
empty id or an unreadable label are *malformed*; ids found neither in the archive nor
among the store's cases are *unknown*. Both are counted and reported (the first few
with their line numbers); every other row is imported.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from riskstream.errors import UsageError
from riskstream.lab.archive import for_spec
from riskstream.lab.replay import committed_seq
from riskstream.spec.model import PipelineSpec
from riskstream.store.duckdb import DB_NAME, Store

_VALUES = {
    "1": 1,
    "0": 0,
    "true": 1,
    "false": 0,
    "fraud": 1,
    "legit": 0,
    "yes": 1,
    "no": 0,
    "confirmed_fraud": 1,
    "false_positive": 0,
}
_SHOW = 5


@dataclass
class LabelImport:
    """What one import did."""

    imported: int = 0
    fraud: int = 0
    unknown: int = 0
    malformed: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "imported": self.imported,
            "fraud": self.fraud,
            "unknown": self.unknown,
            "malformed": self.malformed,
            "problems": self.problems,
        }

    def line(self) -> str:
        """One line for the terminal."""
        text = (
            f"imported {self.imported} labels ({self.fraud} fraud); "
            f"{self.unknown} unknown event ids, {self.malformed} malformed rows"
        )
        return text + (f" ({'; '.join(self.problems)})" if self.problems else "")


def parse_csv(path: Path) -> tuple[pl.DataFrame, LabelImport]:
    """Readable rows as (event_id, label, line) and the malformed-row count."""
    report = LabelImport()
    ids: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    try:
        handle = path.open(newline="", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read label file {str(path)!r}: {exc.strerror}") from None
    with handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if number == 1 and [c.strip().lower() for c in row] == ["event_id", "label"]:
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            problem = None
            if len(row) != 2:
                problem = f"line {number}: {len(row)} fields, expected event_id,label"
            elif not row[0].strip():
                problem = f"line {number}: empty event_id"
            elif row[1].strip().lower() not in _VALUES:
                problem = f"line {number}: label {row[1].strip()[:20]!r} is not 1/0"
            if problem is not None:
                report.malformed += 1
                if len(report.problems) < _SHOW:
                    report.problems.append(problem)
                continue
            ids.append(row[0].strip())
            labels.append(_VALUES[row[1].strip().lower()])
            lines.append(number)
    frame = pl.DataFrame(
        {"event_id": ids, "label": labels, "line": lines},
        schema={"event_id": pl.String, "label": pl.Int8, "line": pl.Int64},
    )
    return frame, report


def import_labels(spec: PipelineSpec, data_dir: Path, path: Path) -> LabelImport:
    """Import ``path`` into the store of ``data_dir``; see the module docstring."""
    frame, report = parse_csv(path)
    if not (data_dir / DB_NAME).exists():
        raise UsageError(f"no store in {str(data_dir)!r} (run the pipeline with --data-dir first)")
    store = Store(data_dir)
    cases = store.case_hits(None, None).select("event_id")
    known = [cases]
    archive = for_spec(spec, data_dir)
    if archive is not None:
        known.append(archive.scan(committed_seq(data_dir)).select("event_id").collect())
    ids = pl.concat(known).unique()
    found = frame.join(ids, on="event_id", how="semi")
    missing = frame.join(ids, on="event_id", how="anti").sort("line")
    report.unknown = missing.height
    for eid, line in missing.select("event_id", "line").head(_SHOW).iter_rows():
        if len(report.problems) < 2 * _SHOW:
            report.problems.append(f"line {line}: unknown event id {eid[:40]!r}")
    report.imported = store.add_labels(
        found.select("event_id", "label"), f"file:{path.name}", int(time.time() * 1000)
    )
    report.fraud = int(found["label"].sum() or 0)
    return report
