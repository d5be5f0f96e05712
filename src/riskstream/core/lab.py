"""The rule lab's records as a store keeps them: labels and rule versions."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

#: A label frame: the latest label (1 fraud, 0 legitimate) per event id.
LABEL_SCHEMA = pl.Schema({"event_id": pl.String, "label": pl.Int8})


@dataclass(frozen=True)
class RuleVersion:
    """One version of a rule in the lab's history (``status``: proposed, live, superseded)."""

    rule: str
    version: int
    status: str
    #: The rule as the spec file holds it (``when``, ``action``, ``score`` ...).
    body: dict[str, Any]
    author: str
    at_ms: int
    approved_by: str | None = None
    approved_ms: int | None = None
    #: The author's backtest summary, if any.
    summary: dict[str, Any] | None = None
    diff: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The version as the API shows it (every field, in this order)."""
        return asdict(self)
