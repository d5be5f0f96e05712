"""The embedded runner: one process drives source -> pipeline -> checkpoint -> sinks.

Exactly-once: right after each batch, its cases (with the throttles and rule hits they
set) are committed to the store's outbox and handed to the sinks (``runners/outbox.py``);
each checkpoint then writes buckets, source positions, ``next_case_seq`` and the
quarantine length in one store transaction on the writer thread. Sinks deliver only
committed cases and resume from their recorded marks; a crash between the two commits is
reconciled at start (``outbox.adopt_orphans``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import polars as pl

from riskstream.core.case import Case
from riskstream.core.checkpoint import Checkpoint
from riskstream.core.events import RawBatch
from riskstream.core.layout import ALWAYS
from riskstream.core.stats import sumsq_expr
from riskstream.core.tiers import parse_duration
from riskstream.engine.decode import one_line
from riskstream.engine.pipeline import Pipeline
from riskstream.errors import SpecError
from riskstream.lab.archive import for_spec as archive_for_spec
from riskstream.lab.archiving import ArchiveLog
from riskstream.models.records import ScoreLog
from riskstream.models.registry import models_root
from riskstream.models.scoring import ModelSet
from riskstream.runners.deadline import BatchDeadline
from riskstream.runners.handoff import Handoff
from riskstream.runners.lock import DataDirLock
from riskstream.runners.outbox import CaseOutbox, adopt_orphans
from riskstream.runners.quarantine import QuarantineFile
from riskstream.runners.reload import SpecWatcher
from riskstream.runners.stats import RunStats
from riskstream.runners.writer import CheckpointWriter
from riskstream.sinks.base import Sink
from riskstream.sources.base import Source
from riskstream.spec.model import PipelineSpec
from riskstream.store.factory import open_store
from riskstream.store.protocol import Store


class EmbeddedRunner:
    """Runs one pipeline over one source into one data dir."""

    def __init__(
        self,
        spec: PipelineSpec,
        source: Source,
        data_dir: Path,
        sinks: Callable[[dict[str, int]], list[Sink]],
        *,
        spec_path: Path | None = None,
        on_batch: Callable[[RunStats], None] | None = None,
        log: Callable[[str], None] | None = None,
        store_dsn: str | None = None,
    ) -> None:
        self.spec = spec
        #: ``--store-dsn``: a PostgreSQL store instead of what the spec names.
        self.store_dsn = store_dsn
        self.source = source
        self.data_dir = data_dir
        self._make_sinks = sinks
        #: The sinks, behind the one hand-off the engine and writer threads share.
        self.handoff = Handoff()
        self.spec_path = spec_path
        self.on_batch = on_batch
        self.log = log or (lambda msg: None)
        self.stats = RunStats()
        self.pipeline = Pipeline(
            spec, spec_path.parent if spec_path else None, models_dir=models_root(data_dir)
        )
        self.score_log = ScoreLog(models_root(data_dir))
        self._stop = False
        #: True from the end of recovery until the loop ends (the API's readiness).
        self.running = False
        self.final_flush_s = 600.0
        self._compact_every_s = parse_duration(spec.checkpoint.compact_every) / 1000
        #: Held while a batch or checkpoint changes state; the HTTP API takes it to read consistently.
        self.lock = threading.RLock()
        self._api_cases: list[Case] = []
        self._spec_watch = SpecWatcher(spec_path)
        # Pending since the last checkpoint; on ``self`` so a source can force a checkpoint
        # from inside ``read_batch`` (Kafka: before a rebalance gives partitions away).
        self._cases: list[Case] = []
        self._quarantined: list[Any] = []
        self._since_events = 0
        self._dirty = False
        self._last_cp = time.monotonic()
        self.writer = CheckpointWriter.idle()
        self._after_commit: list[tuple[dict[str, int], list[Any]]] = []
        self._after_lock = threading.Lock()
        #: Accepted events on their way to the archive (``archive:`` in the spec), else None.
        self.archive: ArchiveLog | None = None
        #: The read timeout, following the arrival rate.
        self.deadline = BatchDeadline()

    @property
    def sinks(self) -> list[Sink]:
        """The run's sinks (set up at recovery)."""
        return self.handoff.sinks

    def request_stop(self, *_: object) -> None:
        """Finish the current batch, checkpoint and stop (SIGTERM/SIGINT)."""
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for (SIGTERM/SIGINT or :meth:`request_stop`)."""
        return self._stop

    def run(self, *, install_signals: bool = True) -> RunStats:
        """Run until the source ends (bounded) or a stop is requested."""
        if install_signals:
            self._install_signals()
        with DataDirLock(self.data_dir):
            store = open_store(self.spec, self.data_dir, self.store_dsn, engine=True, log=self.log)
            try:
                self._recover(store)
            except BaseException:
                store.close()  # the kept connection too, before the one-line error
                raise
            self.running = True
            self._attach_source_hooks()
            self.writer = CheckpointWriter()
            try:
                self._loop(store)
            finally:
                self.writer.close()
                self.running = False
                self.source.close()
                self.quarantine.close()
                self.handoff.close()
                store.close()
        self.stats.finished = time.monotonic()
        return self.stats

    def ingest_api(self, batch: RawBatch) -> list[Case]:
        """Ingest events posted to the API (``/v1/decide?ingest=true``); checkpointed with the stream."""
        with self.lock:
            outcome = self.pipeline.process(batch)
            if self.archive is not None:
                self.archive.add(outcome.frame)
            self._api_cases.extend(outcome.cases)
            self.score_log.add(outcome.model_scores)
            self.stats.events += outcome.events
            for q in outcome.quarantined:
                self.stats.quarantined[q.code] += 1
            self._quarantined.extend(outcome.quarantined)
            self.stats.cases += len(outcome.cases)
            for c in outcome.cases:
                self.stats.cases_by_rule[c.rule] += 1
            return outcome.cases

    def take_api_cases(self) -> list[Case]:
        """Cases raised through the API since the last call (they join the next checkpoint)."""
        with self.lock:
            taken, self._api_cases = self._api_cases, []
            return taken

    def _install_signals(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _attach_source_hooks(self) -> None:
        """Sources that rebalance (Kafka) get a forced checkpoint and a state reload to call."""
        for setter_name, fn in (
            ("set_checkpoint_callback", self.checkpoint_now),
            ("set_reload_callback", self.reload_state),
        ):
            setter = getattr(self.source, setter_name, None)
            if callable(setter):
                setter(fn)
        provider = getattr(self.source, "set_positions_provider", None)
        if self._store.shared and callable(provider):
            # A shared store is the truth: a partition handed over resumes where the store
            # says (its previous owner's last checkpoint), not at Kafka's committed offset.
            provider(lambda: self._store.positions(self.source.name))

    def checkpoint_now(self) -> None:
        """Checkpoint the pending state now (the Kafka source calls it before giving up partitions)."""
        with self.lock:
            self._commit_cases()
            if self._dirty or self._cases or self._quarantined:
                self._checkpoint_pending(self._store)
            self.writer.wait()
            self._source_after_commit()

    def reload_state(self, why: str = "after a partition assignment") -> None:
        """Checkpoint, then reload the pipeline state from the store (new partitions assigned,
        or a spec reload asks for feature state the engine did not keep)."""
        with self.lock:
            self.checkpoint_now()
            self._restore_state(self._store, self._store.meta())
            self.log(f"reloaded pipeline state from the store {why}")

    # ---- recovery ----------------------------------------------------------------------

    def _recover(self, store: Store) -> None:
        store.configure_tiers(self.spec.tiers)
        meta = store.meta()
        archive = archive_for_spec(self.spec, self.data_dir)
        if archive is not None:
            self.archive = ArchiveLog(archive, meta)
            if self.archive.orphans_removed:
                self.log(f"archive: removed {self.archive.orphans_removed} uncommitted files")
        self.quarantine = QuarantineFile(
            self.data_dir / "quarantine.jsonl", int(meta.get("quarantine_bytes", "0"))
        )
        positions = store.positions(self.source.name)
        if positions:
            self.source.seek(positions)
            self.log(f"resuming {self.source.name} at {positions}")
        self.positions = dict(positions)
        self._restore_state(store, meta)
        early = not store.shared
        if early:
            orphans = adopt_orphans(store, self.pipeline, meta)
            if orphans:
                self.log(f"{len(orphans)} cases were committed ahead of the last checkpoint")
        marks = store.sink_marks()
        self.handoff.sinks = self._make_sinks(marks)
        self.handoff.redeliver(store, marks, self.log)
        self.outbox = CaseOutbox(store, self.pipeline, self.source.name, self.handoff, early=early)
        self._store = store
        self._last_compact = time.monotonic()

    def _restore_state(self, store: Store, meta: dict[str, str]) -> None:
        """Watermark, feature tails, throttles and distinct values from the store into the pipeline."""
        tails: dict[tuple[str, str], pl.DataFrame] = {}
        wm = int(meta["watermark"]) if "watermark" in meta else None
        if wm is not None:
            self.pipeline.watermark = wm
            avail = self.pipeline.available_from()
            for (metric, tier), horizon in self.pipeline.feature_slots().items():
                since = max(avail[tier], wm - horizon - 1000)
                rows = store.buckets(metric, tier, None, since, ALWAYS)
                tails[(metric, tier)] = rows.select(
                    "key",
                    pl.col("start").alias("b"),
                    "count",
                    "sum",
                    sumsq_expr().alias("sumsq"),
                    "min",
                    "max",
                )
        throttles = store.throttles()
        values: dict[tuple[str, str], pl.DataFrame] = {}
        if wm is not None:
            for (metric, tier), cutoff in self.pipeline.value_horizons().items():
                values[(metric, tier)] = store.feature_values(
                    metric, tier, max(cutoff, avail[tier])
                )
        self.pipeline.restore(meta, tails, throttles, values)

    # ---- the loop ----------------------------------------------------------------------

    def _loop(self, store: Store) -> None:
        every_s = parse_duration(self.spec.checkpoint.every) / 1000
        every_events = self.spec.checkpoint.events
        self._last_cp = time.monotonic()
        while not self._stop:
            self._maybe_reload()
            self._source_after_commit()
            batch = self.source.read_batch(self.spec.batch_size, timeout_s=self.deadline.timeout())
            if batch is None:
                break
            t_read = time.perf_counter()
            if batch.lines:
                t0 = time.perf_counter()
                with self.lock:
                    outcome = self.pipeline.process(batch)
                    if self.archive is not None:
                        self.archive.add(outcome.frame)
                self.stats.last_batch_s = time.perf_counter() - t0
                self.stats.batches += 1
                self.stats.events += outcome.events
                for q in outcome.quarantined:
                    self.stats.quarantined[q.code] += 1
                self._quarantined.extend(outcome.quarantined)
                self._cases.extend(outcome.cases)
                self.score_log.add(outcome.model_scores)
                for c in outcome.cases:
                    self.stats.cases_by_rule[c.rule] += 1
                self.stats.cases += len(outcome.cases)
                self._since_events += len(batch.lines)
                self._dirty = True
            if not self.writer.busy or self._store.concurrent_commits:
                # A store that cannot commit beside the bulk write in flight (one connection
                # per process at a time) makes the cases wait for it or for the next
                # checkpoint, which commits them first, rather than stall the engine.
                self._commit_cases()
            self.deadline.observe(len(batch.lines), time.perf_counter() - t_read)
            if batch.resume and any(self.positions.get(p) != v for p, v in batch.resume.items()):
                self.positions.update(batch.resume)
                self._dirty = True
            self._source_status()
            if (self._dirty or self._cases) and (
                self._since_events >= every_events or time.monotonic() - self._last_cp >= every_s
            ):
                with self.lock:
                    self._checkpoint_pending(store)
            elif not batch.lines and time.monotonic() - self._last_cp >= every_s:
                # Idle: nothing to checkpoint, but let sinks make what they wrote durable.
                self.writer.wait()
                self.handoff.marks()
                self._last_cp = time.monotonic()
            if self.on_batch:
                self.on_batch(self.stats)
        self._source_status()
        self._commit_cases()
        if self._dirty or self._cases or self._quarantined:
            self._checkpoint_pending(store)
        self.writer.wait()
        self._source_after_commit()
        self.handoff.flush(self.final_flush_s, self.log)
        self._write_marks(store)
        if time.monotonic() - self._last_compact > self._compact_every_s:
            self._compact(store)
        if self.on_batch:
            self.on_batch(self.stats)

    def _source_status(self) -> None:
        """Lag and the partitions a bounded run waits for (said once in the log when it starts)."""
        lag = getattr(self.source, "lag", None)
        if callable(lag):
            self.stats.lag = lag()
        waiting_for = getattr(self.source, "waiting_for", None)
        if callable(waiting_for):
            waiting = list(waiting_for())
            if waiting and waiting != self.stats.waiting:
                self.log(
                    f"waiting for partitions {', '.join(waiting)}: held by another member of "
                    "the consumer group (a bounded run ends only when every partition is read "
                    "to its end offset)"
                )
            self.stats.waiting = waiting

    def _commit_cases(self) -> None:
        """Cases raised since the last call (the stream's and the API's) into the outbox and
        to the sinks now (``runners/outbox.py``); a shared store keeps them for the checkpoint."""
        with self.lock:
            self._cases.extend(self.take_api_cases())
            if self._cases:
                self._cases = self.outbox.commit(self._cases)

    def _checkpoint_pending(self, store: Store) -> None:
        """Checkpoint what is pending on ``self`` and start a new pending set."""
        self._commit_cases()  # every case numbered before the checkpoint is in the outbox first
        cases, quarantined = self._cases, self._quarantined
        self._cases, self._quarantined = [], []
        self.score_log.flush()
        self._checkpoint(store, cases, quarantined)
        self._since_events, self._dirty = 0, False
        self._last_cp = time.monotonic()

    def _checkpoint(self, store: Store, cases: list[Case], quarantined: list[Any]) -> None:
        """Take a checkpoint (engine thread) and write it on the writer thread.

        The writer aggregates, writes, then lets the source commit and the sinks deliver;
        the engine meanwhile processes the next batches. The next checkpoint waits for
        this one (one in flight), so positions, buckets and roll marks stay in order.
        """
        self.writer.wait()
        cp = self.pipeline.take_checkpoint(self.source.name, self.positions, cases, defer=True)
        positions = dict(self.positions)
        archive_job = self.archive.take(cp.meta) if self.archive is not None else None
        self.writer.submit(
            lambda: self._write(store, cp, positions, cases, quarantined, archive_job)
        )

    def _write(
        self,
        store: Store,
        cp: Checkpoint,
        positions: dict[str, int],
        cases: list[Case],
        quarantined: list[Any],
        archive_job: Callable[[], None] | None = None,
    ) -> None:
        t0 = time.perf_counter()
        if cp.prepare is not None:
            cp.prepare()
        if archive_job is not None:
            archive_job()  # files first; the store transaction below commits them
        cp.meta["quarantine_bytes"] = str(self.quarantine.append(quarantined))
        cp.sink_marks = self.handoff.marks()
        store.write_checkpoint(cp)
        # The store holds these positions now: the source may commit them and forward the
        # quarantine, on the engine thread (a Kafka consumer is not to be driven from here
        # while its poll runs a rebalance callback that waits for this checkpoint).
        with self._after_lock:
            self._after_commit.append((positions, quarantined))
        self.outbox.after_checkpoint(cases)  # only cases a shared store took in this checkpoint
        self.stats.checkpoints += 1
        self.stats.last_checkpoint_s = time.perf_counter() - t0
        if time.monotonic() - self._last_compact > self._compact_every_s:
            self._compact(store)

    def _source_after_commit(self) -> None:
        """Let the source act on committed checkpoints (engine thread only)."""
        with self._after_lock:
            done, self._after_commit = self._after_commit, []
        for positions, quarantined in done:
            hook = getattr(self.source, "after_checkpoint", None)
            if callable(hook):
                hook(positions)
            dead_letter = getattr(self.source, "dead_letter", None)
            if quarantined and callable(dead_letter):
                dead_letter(quarantined)

    def _write_marks(self, store: Store) -> None:
        store.write_checkpoint(Checkpoint(source=self.source.name, sink_marks=self.handoff.marks()))

    def _compact(self, store: Store) -> None:
        wm = self.pipeline.watermark
        if wm is not None:
            avail = self.spec.available_from(wm)
            # Nothing is pending right after a checkpoint: new marks apply from the next batch.
            self.pipeline.pending.set_rolled(store.roll_up(wm, self.spec.tiers))
            store.compact_before(avail, self.pipeline.value_horizons())
            if self.archive is not None:
                self.archive.prune(wm)
        store.fold_when_grown()
        self._last_compact = time.monotonic()

    def _maybe_reload(self) -> None:
        old_models = self.pipeline.models
        try:
            new = self._spec_watch.changed(self.spec)
            if new is None:
                return
            self.pipeline.reload(new)
        except SpecError as exc:
            msg = f"spec reload refused, keeping the running rules: {exc}"
            self.stats.reload_errors.append(str(exc))
            self.log(msg)
            return
        self.spec = new
        self._record_promotions(old_models)
        self.stats.reloads += 1
        if self.pipeline.stale_state:
            self.reload_state("for the reloaded spec's new features")
        models = ", ".join(
            f"{e} v{m.version}{' (shadow)' if self.pipeline.models.shadow[e] else ''}"
            for e, m in self.pipeline.models.models.items()
        )
        self.log(
            f"spec reloaded: {len(new.rules)} rules, {len(new.lists)} lists"
            + (f", models {models}" if models else "")
        )

    def _record_promotions(self, old: ModelSet) -> None:
        """A reload that changed a model entry: a version in each reading rule's history."""
        from riskstream.runners import promotion

        changes = promotion.model_changes(old, self.pipeline.models, self.spec)
        for change in changes:
            self.log(f"model change: {change.note} (rules {', '.join(change.rules) or 'none'})")
        store: Store | None = getattr(self, "_store", None)
        if not changes or store is None or store.read_only:
            return
        try:
            with self.lock:
                promotion.record(store, self.spec, changes, models_root(self.data_dir))
        except Exception as exc:  # the history is a record: never stop the engine over it
            self.log(f"model change not recorded in the rule history: {one_line(exc)}")
