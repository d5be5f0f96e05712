"""Property-based fuzzing of every operation in /openapi.json of a live server: never a 5xx.

Runs against its own engine (generated events may be ingested with ``?ingest=true``),
with positive and negative data, at most 50 examples per operation and mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.integration.api._live import ADMIN, Live, start_live

MAX_EXAMPLES = 50
BUDGET_S = 90.0


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    """A separate live system: fuzzing may ingest events and record decisions."""
    system = start_live(
        Path(tmp_path_factory.mktemp("api-fuzz")), n=300, seed=5, server=http_server
    )
    yield system
    system.stop()


def _fuzz(
    url: str, headers: dict[str, str], operation: Any, mode: GenerationMode, examples: int
) -> int:
    """Run ``examples`` generated cases of one operation; returns how many were sent."""
    sent = 0
    checks = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        response = case.call(base_url=url, headers=headers, timeout=30)
        case.validate_response(response, checks=checks)
        sent += 1

    try:
        run()
    except Unsatisfiable:
        # Nothing to negate (no parameters or body), e.g. GET /healthz.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


def test_no_operation_answers_5xx(fuzzed: Live) -> None:
    headers = fuzzed.headers(ADMIN)
    schema = schemathesis.openapi.from_url(
        f"{fuzzed.url}/openapi.json", headers=headers, timeout=30
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert "POST /v1/decide" in labels and "GET /v1/metrics/{metric}/{key}/series" in labels
    deadline = time.monotonic() + BUDGET_S
    seen: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            budget = max(5, min(MAX_EXAMPLES, int((deadline - time.monotonic()) * 2)))
            seen[operation.label] = seen.get(operation.label, 0) + _fuzz(
                fuzzed.url, headers, operation, mode, budget
            )
    assert all(seen[label] > 0 for label in labels), seen
    assert time.monotonic() < deadline + 30, "fuzzing took far longer than its budget"
