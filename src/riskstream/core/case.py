"""The case: what a rule raises for an event, as delivered to every sink."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """One case. ``seq`` orders the outbox; it is not part of the delivered body."""

    case_id: str
    pipeline: str
    rule: str
    action: str
    score: float
    event_id: str | None
    event_time: int
    features: dict[str, Any]
    event: dict[str, Any]
    seq: int = 0
    #: per model the case's event was scored with: model, version, score, top features
    models: dict[str, Any] | None = None

    def body(self) -> bytes:
        """The JSON delivered to sinks (one line in a file, the webhook POST body)."""
        body: dict[str, Any] = {
            "case_id": self.case_id,
            "pipeline": self.pipeline,
            "rule": self.rule,
            "action": self.action,
            "score": self.score,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "features": self.features,
            "event": self.event,
        }
        if self.models is not None:
            body["models"] = self.models
        return _ENCODER.encode(body)


_ENCODER = msgspec.json.Encoder()


def case_id_for(pipeline: str, rule: str, event_id: str) -> str:
    """Deterministic case id: the same pipeline, rule and event always give the same id."""
    digest = hashlib.sha256(f"{pipeline}\x1f{rule}\x1f{event_id}".encode()).hexdigest()
    return digest[:32]


#: Decisions that set a case's status (others, like ``note``, are only recorded).
STATUS_OF_DECISION: dict[str, str] = {
    "confirmed_fraud": "confirmed_fraud",
    "false_positive": "false_positive",
}


class StoredCase(msgspec.Struct, frozen=True, kw_only=True):
    """A case as the store keeps it in the queue: outbox order, review status, the delivered body."""

    seq: int
    case_id: str
    rule: str
    action: str
    score: float
    event_id: str | None
    event_time: int
    created_ms: int
    status: str
    #: The JSON delivered to sinks (:meth:`Case.body`).
    body: str


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """An analyst's decision on a case."""

    decision: str
    note: str | None
    analyst: str
    at_ms: int


class CaseQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of the case queue; None means any. Times bound the event time, ``[from, to)``."""

    rule: str | None = None
    action: str | None = None
    status: str | None = None
    event_time_from: int | None = None
    event_time_to: int | None = None
