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

    def body(self) -> bytes:
        """The JSON delivered to sinks (one line in a file, the webhook POST body)."""
        return _ENCODER.encode(
            {
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
        )


_ENCODER = msgspec.json.Encoder()


def case_id_for(pipeline: str, rule: str, event_id: str) -> str:
    """Deterministic case id: the same pipeline, rule and event always give the same id."""
    digest = hashlib.sha256(f"{pipeline}\x1f{rule}\x1f{event_id}".encode()).hexdigest()
    return digest[:32]
