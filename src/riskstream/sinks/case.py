"""Moved: the case lives in :mod:`riskstream.core.case` (kept importable here)."""

from riskstream.core.case import Case, case_id_for

__all__ = ["Case", "case_id_for"]
