"""Case factories shared by the sink tests."""

from __future__ import annotations

from riskstream.core.case import Case, case_id_for


def make_case(seq: int, *, pipeline: str = "test", pad: int = 0, **event: object) -> Case:
    """A deterministic case for ``seq``; ``pad`` grows the body to vary line lengths."""
    event_id = f"evt-{seq}"
    return Case(
        case_id=case_id_for(pipeline, "card_testing", event_id),
        pipeline=pipeline,
        rule="card_testing",
        action="review",
        score=80.0,
        event_id=event_id,
        event_time=1_700_000_000_000 + seq,
        features={"card.count(1m)": seq % 17, "card.avg(1m)": 1.5},
        event={"event_id": event_id, "card_id": f"card-{seq % 7}", "note": "x" * pad, **event},
        seq=seq,
    )


def make_cases(seqs: list[int] | range, pad: int = 0) -> list[Case]:
    """Cases for the given seqs, in order."""
    return [make_case(s, pad=pad) for s in seqs]
