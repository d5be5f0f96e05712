"""Cases out ahead of the bulk write: a small outbox commit per batch, then the sinks.

Latency (issue 17): a case used to wait for the checkpoint that wrote its batch's buckets
(hundreds of milliseconds at 14k events/s). Now, right after a batch, its cases, the
throttles they set and the rule hits they count are committed in one small store
transaction and handed to the sinks; the bucket checkpoint (positions, buckets, watermark,
``next_case_seq``) follows on the writer thread.

Why a crash in between stays exactly-once: the store then holds cases (*orphans*) whose
events the restored state has not seen: their seq is at or past the stored
``next_case_seq``. On start (:func:`adopt_orphans`) the pipeline learns their ids and
numbers new cases after them; the source replays from the stored positions, so:

* a replay that raises the same case (same pipeline, rule, event id) drops it by id: it is
  neither delivered nor counted twice (its rule hit and throttle were committed with it);
* a replay that raises a case the crashed run did not (a replay is not bound to read
  several partitions in the same interleaving) numbers it after the orphans: delivered,
  never lost under an orphan's seq;
* throttles committed with the orphans keep the replay from raising a second case for a
  key inside ``once_per``.

Every case with seq below a bucket checkpoint's ``next_case_seq`` is committed before that
checkpoint (outbox commits run on the engine thread before it takes the checkpoint), so
a stored ``next_case_seq`` never runs ahead of the outbox.

Shared stores (PostgreSQL, several engines) keep cases inside the bucket checkpoint.
"""

from __future__ import annotations

from riskstream.core.case import Case
from riskstream.core.checkpoint import Checkpoint
from riskstream.engine.pipeline import Pipeline
from riskstream.runners.handoff import Handoff
from riskstream.store.protocol import Store


class CaseOutbox:
    """Commits cases as they are raised (``early``) or leaves them to the bucket checkpoint."""

    def __init__(
        self, store: Store, pipeline: Pipeline, source: str, handoff: Handoff, *, early: bool
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.source = source
        self.handoff = handoff
        #: Commit cases ahead of the bucket checkpoint (not for shared stores).
        self.early = early
        #: Outbox commits so far (tests and progress).
        self.commits = 0

    def commit(self, cases: list[Case]) -> list[Case]:
        """Commit ``cases`` with the throttles and hits they set, then hand them to the sinks.

        Returns what is left for the bucket checkpoint: nothing when committed here, else
        ``cases`` (and the sinks get them after that checkpoint, :meth:`after_checkpoint`).
        """
        if not self.early or not cases:
            return cases
        throttles, hits = self.pipeline.take_case_state()
        self.store.write_checkpoint(
            Checkpoint(source=self.source, cases=cases, throttles=throttles, rule_hits=hits)
        )
        self.commits += 1
        self.handoff.deliver(cases)
        return []

    def after_checkpoint(self, cases: list[Case]) -> None:
        """Cases that travelled in a bucket checkpoint, now committed, go to the sinks."""
        self.handoff.deliver(cases)


def adopt_orphans(store: Store, pipeline: Pipeline, meta: dict[str, str]) -> list[Case]:
    """Cases committed ahead of a bucket checkpoint that never landed: the pipeline numbers
    after them and drops a replay's repeat of them (see the module docstring)."""
    orphans = store.cases_after(int(meta.get("next_case_seq", "1")) - 1)
    pipeline.adopt_cases(orphans)
    return orphans
