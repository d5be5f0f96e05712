"""One micro-batch through the engine: decode, metrics, features, rules, cases.

The pipeline holds the in-memory state (pending buckets, feature tails, throttles)
and hands a :class:`Checkpoint` to the runner, which writes it to the store.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from riskstream.core import layout
from riskstream.core.case import Case, case_id_for
from riskstream.core.checkpoint import Checkpoint
from riskstream.core.events import RawBatch
from riskstream.core.keys import KEY, gather_keys, keyed
from riskstream.core.tiers import TIER_MS, parse_duration
from riskstream.engine import distinct_features as dfeat
from riskstream.engine import features as feat
from riskstream.engine.decode import (
    EID,
    PREFIX_BYTES,
    RAW,
    SEQ,
    TIME,
    Decoder,
    Quarantined,
    label_expr,
    one_line,
    wall_clock_ms,
)
from riskstream.engine.listener import BatchListener
from riskstream.engine.metrics import CompiledMetric, Pending
from riskstream.models.scoring import BatchScores, ModelSet
from riskstream.rules import CompiledExpr, FeatureRef, ListRegistry, model_column
from riskstream.spec.check import compile_rules, compile_wheres, feature_tier
from riskstream.spec.model import PipelineSpec

_log = logging.getLogger(__name__)
_RECENT_CASE_IDS = 1_000_000


@dataclass
class BatchOutcome:
    """What one batch did."""

    events: int
    quarantined: list[Quarantined]
    cases: list[Case]
    max_time: int | None
    #: The accepted events as decoded (``_id``, ``_t``, ``_seq``, ``_raw`` and the fields read)
    #: plus one column per feature; the archive and the lab's replay read it.
    frame: pl.DataFrame | None = None
    #: every model's score of every event: event_id, event_time, entry, model, version, shadow,
    #: score, label (the spec's label field, when it has one)
    model_scores: pl.DataFrame | None = None


@dataclass(frozen=True)
class _Hit:
    """A rule firing on one event, before throttles and case numbering."""

    event_id: str
    time: int
    throttle_key: str | None
    features: dict[str, Any]
    event: dict[str, Any]
    #: per live model: version, score and top contributing features (None without models)
    models: dict[str, Any] | None = None


@dataclass
class _RuleRuntime:
    name: str
    compiled: CompiledExpr
    action: str
    score: float
    throttle_key: str | None
    throttle_ms: int


@dataclass
class FeatureGroup:
    """Feature requests of one metric at one tier, with the state they slide over."""

    metric: str
    tier: str
    requests: list[feat.Request]
    horizon_ms: int
    tail: list[pl.DataFrame] = field(default_factory=list)
    values: list[pl.DataFrame] = field(default_factory=list)
    new_values: list[pl.DataFrame] = field(default_factory=list)
    #: the stat columns the tail keeps (only those its numeric requests read)
    columns: tuple[str, ...] = ()

    @property
    def numeric(self) -> list[feat.Request]:
        """Requests served by prefix sums and sparse tables."""
        return [r for r in self.requests if r.stat != "distinct"]

    @property
    def distinct(self) -> list[feat.Request]:
        """Requests served by the distinct join."""
        return [r for r in self.requests if r.stat == "distinct"]


class Pipeline:
    """The engine for one spec; call :meth:`process` per batch, :meth:`take_checkpoint` to persist."""

    def __init__(
        self,
        spec: PipelineSpec,
        base_dir: Path | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        models_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        #: the wall clock (epoch ms) that ``event.max_future`` is measured from
        self.clock = clock
        self.base_dir = base_dir or Path.cwd()
        #: ``DATA_DIR/models``: where the spec's ``models:`` are loaded from
        self.models_dir = models_dir
        self.models = ModelSet(spec, models_dir)
        #: extra features computed on every batch (training computes the model's candidates)
        self.extra_features: list[FeatureRef] = []
        #: Set when a reload asks for feature state the engine did not keep (a new window tier
        #: or stat): the runner reloads the tails from the store (:meth:`restore`).
        self.stale_state = False
        self.lists = _registry(spec, self.base_dir)
        wheres = compile_wheres(spec)
        self.metrics = [
            CompiledMetric(name, m, wheres.get(name)) for name, m in spec.metrics.items()
        ]
        self._install_rules(spec)
        self.decoder = self._decoder(spec)
        self.pending = Pending()
        #: Told of each applied batch, checkpoint and reload (the serving process's range index).
        self.listener: BatchListener | None = None
        self.watermark: int | None = None
        self.next_seq = 0
        self.next_case_seq = 1
        self.throttles: dict[tuple[str, str], int] = {}
        self._new_throttles: list[tuple[str, str, int]] = []
        self._rule_hits: dict[str, int] = {}
        self._recent_ids: OrderedDict[str, None] = OrderedDict()
        self.rule_hits_total: dict[str, int] = {}
        #: Batches that failed as a whole and were narrowed down to their failing events.
        self.isolated_batches = 0
        self._committing = False
        self._isolating = False

    # ---- setup -------------------------------------------------------------------------

    def _install_rules(self, spec: PipelineSpec) -> None:
        compiled = compile_rules(spec)
        self.rules = [
            _RuleRuntime(
                name,
                compiled[name],
                r.action,
                r.score,
                r.once_per.key if r.once_per else None,
                parse_duration(r.once_per.within) if r.once_per else 0,
            )
            for name, r in spec.rules.items()
            if r.enabled
        ]
        groups: dict[tuple[str, str], FeatureGroup] = {}
        lateness = parse_duration(spec.event.max_lateness)
        refs = [ref for rule in self.rules for ref in rule.compiled.features]
        refs += self.models.feature_refs + self.extra_features
        for ref in refs:
            tier = feature_tier(spec, ref.window_ms)
            key = (ref.metric, tier)
            horizon = ref.window_ms + min(lateness, spec.retention_ms(tier))
            old = getattr(self, "_groups", {}).get(key)
            group = groups.setdefault(
                key,
                FeatureGroup(
                    ref.metric,
                    tier,
                    [],
                    horizon,
                    old.tail if old else [],
                    old.values if old else [],
                ),
            )
            group.horizon_ms = max(group.horizon_ms, horizon)
            if all(r.name != ref.name for r in group.requests):
                group.requests.append(feat.Request(ref.name, ref.stat, ref.window_ms))
        previous = getattr(self, "_groups", None)
        has_state = previous is not None and getattr(self, "watermark", None) is not None
        for key, group in groups.items():
            group.columns = feat.state_columns(group.numeric)
            old = previous.get(key) if previous is not None else None
            numeric_ok = not group.numeric or (
                old is not None and bool(old.numeric) and set(group.columns) <= set(old.columns)
            )
            distinct_ok = not group.distinct or (old is not None and bool(old.distinct))
            if not numeric_ok:
                group.tail = []  # no old tail, or one without a column the new requests read
            if has_state and not (numeric_ok and distinct_ok):
                # A reload asks for state this engine did not keep: the runner reloads it.
                self.stale_state = True
        self._groups = groups

    def _decoder(self, spec: PipelineSpec) -> Decoder:
        return Decoder(
            time_field=spec.event.time,
            id_field=spec.event.id,
            fields=self._needed_fields(),
            max_bytes=spec.event.max_bytes,
            max_lateness_ms=parse_duration(spec.event.max_lateness),
            max_future_ms=parse_duration(spec.event.max_future),
            max_depth=spec.event.max_depth,
            clock=self.clock,
        )

    def add_features(self, refs: list[FeatureRef]) -> None:
        """Compute these features on every batch too (training asks for its candidates)."""
        self.extra_features = list(dict.fromkeys([*self.extra_features, *refs]))
        self._install_rules(self.spec)

    def _needed_fields(self) -> dict[str, str]:
        declared = self.spec.event.fields or {}
        # Every declared field is type-checked on input, used by a rule or not.
        need: dict[str, str] = dict(declared)

        def add(name: str, default: str) -> None:
            need[name] = declared.get(name, default)

        for m in self.metrics:
            for d in m.spec.dimension:
                add(d, "str")
            if m.spec.value:
                add(m.spec.value, "float" if m.numeric else "str")
        for expr in self._all_expressions():
            for f in expr.fields:
                add(f, "any")
        for r in self.rules:
            if r.throttle_key:
                add(r.throttle_key, "str")
        for f in self.models.fields:
            add(f, "any")
        if self.spec.labels.field:
            add(self.spec.labels.field, "any")
        return need

    def _all_expressions(self) -> list[CompiledExpr]:
        return [r.compiled for r in self.rules] + list(compile_wheres(self.spec).values())

    def reload(self, spec: PipelineSpec) -> None:
        """Switch to ``spec``'s rules, lists and models (metrics, tiers, event shape unchanged).

        A model that cannot be loaded raises ModelError before anything changed: the
        engine keeps its previous rules and models.
        """
        models = ModelSet(spec, self.models_dir, previous=self.models)
        self.models = models
        self.lists = _registry(spec, self.base_dir)
        self.spec = spec
        self._install_rules(spec)
        self.decoder = self._decoder(spec)

    # ---- the batch ---------------------------------------------------------------------

    def evaluate(
        self, lines_batch: RawBatch
    ) -> tuple[pl.DataFrame, list[Quarantined], dict[str, pl.Series]]:
        """Score events against the current state without changing it (``POST /v1/decide``).

        Returns the decoded frame with feature columns, what was quarantined, and per
        rule a boolean Series saying where it fired (throttles are not applied). A one-event
        batch takes the fast path of :mod:`riskstream.engine.single` (same answer).
        """
        if len(lines_batch.lines) == 1:
            from riskstream.engine import single

            fast = single.evaluate_one(self, lines_batch)
            if fast is not None:
                return fast
        return self.evaluate_batch(lines_batch)

    def evaluate_batch(
        self, lines_batch: RawBatch
    ) -> tuple[pl.DataFrame, list[Quarantined], dict[str, pl.Series]]:
        """:meth:`evaluate` with the batch machinery (events of the batch see earlier ones)."""
        decoded = self.decoder.decode(lines_batch, self.next_seq, self.watermark)
        frame = decoded.frame
        if not frame.height:
            return frame, decoded.quarantined, {}
        contribs = {m.name: m.contributions(frame, self.lists) for m in self.metrics}
        features = self._features(frame, contribs)
        full = frame.hstack(features.get_columns()) if features.width else frame
        full, _ = self.score_models(full, observe=False)
        fired = {
            r.name: full.select(r.compiled.expr(self.lists).fill_null(False).alias("f"))["f"]
            for r in self.rules
        }
        return full, decoded.quarantined, fired

    def process(self, lines_batch: RawBatch) -> BatchOutcome:
        """Run one raw batch through every stage, updating state and raising cases.

        Whatever fails on the way (a decoder or Polars error on some odd event, a case body
        that cannot be serialized) is narrowed down by halving the batch: the event that
        fails alone is quarantined ``unprocessable`` with the error's first line, and the
        others are processed as usual. State changes only once a (sub-)batch has passed every
        step that can fail, so a retry never counts anything twice.
        """
        self.lists.refresh()
        try:
            return self._process(lines_batch)
        except (MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if self._committing:
                raise  # a failure while applying state: not one event's fault
            if self._isolating:
                return self._isolate(lines_batch, exc)
            return self._isolate_top(lines_batch, exc)

    def _isolate_top(self, batch: RawBatch, exc: Exception) -> BatchOutcome:
        # Halving is a safety net, not a mode: say so loudly, because a failure that is not
        # one event's (every part passes alone) would otherwise just make the engine slow.
        self.isolated_batches += 1
        self._isolating = True
        try:
            outcome = self._isolate(batch, exc)
        finally:
            self._isolating = False
        if any(q.code == "unprocessable" for q in outcome.quarantined):
            _log.warning(
                "a batch of %d events failed (%s); the failing events were quarantined",
                len(batch.lines),
                one_line(exc),
            )
        else:
            _log.error(
                "a batch of %d events failed (%s) but each part passed alone: an engine bug "
                "that costs throughput (the batch was processed in parts); please report it",
                len(batch.lines),
                one_line(exc),
            )
        return outcome

    def _isolate(self, batch: RawBatch, exc: Exception) -> BatchOutcome:
        n = len(batch.lines)
        if n <= 1:
            self.next_seq += n
            quarantined = [
                Quarantined("unprocessable", one_line(exc), pos, line[:PREFIX_BYTES])
                for line, pos in zip(batch.lines, batch.positions, strict=True)
            ]
            return BatchOutcome(0, quarantined, [], None)
        half = n // 2
        outcomes = [self.process(part) for part in _split(batch, half)]
        times = [o.max_time for o in outcomes if o.max_time is not None]
        frames = [o.frame for o in outcomes if o.frame is not None and o.frame.height]
        scores = [o.model_scores for o in outcomes if o.model_scores is not None]
        return BatchOutcome(
            sum(o.events for o in outcomes),
            [q for o in outcomes for q in o.quarantined],
            [c for o in outcomes for c in o.cases],
            max(times) if times else None,
            pl.concat(frames, how="vertical_relaxed") if frames else None,
            pl.concat(scores) if scores else None,
        )

    def _process(self, lines_batch: RawBatch) -> BatchOutcome:
        self._committing = False
        decoded = self.decoder.decode(lines_batch, self.next_seq, self.watermark)
        frame = decoded.frame
        if not frame.height:
            self.next_seq += len(lines_batch.lines)
            return BatchOutcome(0, decoded.quarantined, [], None)
        contribs = {m.name: m.contributions(frame, self.lists) for m in self.metrics}
        features = self._features(frame, contribs)
        full = frame.hstack(features.get_columns()) if features.width else frame
        full, scored = self.score_models(full)
        fired = self._fired(full, scored)
        max_t = frame[TIME].max()
        assert isinstance(max_t, int)
        # Everything that can fail on odd input is behind us: apply the batch to the state.
        self._committing = True
        self.next_seq += len(lines_batch.lines)
        cases = self._commit_cases(fired)
        for m in self.metrics:
            self.pending.add(m, contribs[m.name], self.spec.tiers)
        self._advance_tails(contribs)
        self.watermark = max_t if self.watermark is None else max(self.watermark, max_t)
        if self.listener is not None:
            self.listener.batch(contribs)
        self._committing = False
        return BatchOutcome(
            frame.height,
            decoded.quarantined,
            cases,
            max_t,
            frame=full,
            model_scores=_score_records(full, scored, self.models, self.spec.labels.field),
        )

    def score_models(
        self, frame: pl.DataFrame, *, observe: bool = True
    ) -> tuple[pl.DataFrame, BatchScores | None]:
        """``frame`` with ``model.NAME`` (null for a shadow) and ``_score.NAME`` columns.

        One feature matrix and one predict call per model; ``observe`` feeds the drift monitor.
        """
        if not self.models:
            return frame, None
        full, scored = self.models.apply(frame, self.lists, observe=observe)
        return full, scored

    def _features(self, frame: pl.DataFrame, contribs: dict[str, pl.DataFrame]) -> pl.DataFrame:
        cols: list[pl.Series] = []
        by_name = {m.name: m for m in self.metrics}
        for (metric, tier), group in self._groups.items():
            m = by_name[metric]
            queries = frame.select(m.key_expr().alias(KEY), pl.col(TIME), pl.col(SEQ))
            avail = self.available_from()[tier]
            if group.numeric:
                # Only the rows of this batch's keys, found by binary search in key-sorted frames.
                state = gather_keys(group.tail, queries[KEY], feat.state_schema(group.columns))
                # Only buckets the store retains count, so a restarted engine sees the same state.
                state = state.filter(pl.col("b") >= avail)
                out = feat.compute(queries, contribs[metric], state, tier, group.numeric)
                cols.extend(out.get_columns())
            if group.distinct:
                vstate = gather_keys(group.values, queries[KEY], dfeat.VALUE_STATE_SCHEMA)
                vstate = vstate.filter(pl.col("b") >= avail)
                out = dfeat.compute_distinct(
                    queries, contribs[metric], vstate, tier, group.distinct
                )
                cols.extend(out.get_columns())
        return pl.DataFrame(cols) if cols else pl.DataFrame()

    def _advance_tails(self, contribs: dict[str, pl.DataFrame]) -> None:
        wm = self.watermark
        avail = self.available_from()
        for (metric, tier), group in self._groups.items():
            # Buckets before the first retained one never count (features read ``b >= avail``,
            # which only moves forward), so the tail keeps the window plus the lateness
            # allowance, cut at the retention: 2 h, not 3 h, of second buckets for 1 h windows.
            cutoff = (
                max(wm - group.horizon_ms - TIER_MS[tier], avail[tier]) if wm is not None else None
            )
            if group.numeric:
                rows = feat.state_rows(contribs[metric], tier, group.columns)
                if rows.height:
                    group.tail.append(keyed(rows))
                if cutoff is not None and len(group.tail) > 16:
                    group.tail = [keyed(pl.concat(group.tail).filter(pl.col("b") >= cutoff))]
            if group.distinct:
                vals = dfeat.value_rows(contribs[metric], tier)
                if vals.height:
                    group.values.append(keyed(vals))
                    group.new_values.append(vals)
                if cutoff is not None and len(group.values) > 16:
                    group.values = [
                        keyed(pl.concat(group.values).filter(pl.col("b") >= cutoff).unique())
                    ]

    def _explain(self, scored: BatchScores | None, rows: pl.Series) -> list[dict[str, Any]] | None:
        """Per row raising a case: each live model's version, score and top features."""
        if scored is None:
            return None
        idx = rows.to_numpy()
        per_entry = {}
        for entry, model in self.models.models.items():
            if self.models.shadow[entry]:
                continue
            top = model.explain(scored.matrices[entry][idx])
            per_entry[entry] = (model, scored.scores[entry][idx], top)
        if not per_entry:
            return None
        return [
            {
                entry: {
                    "model": m.name,
                    "version": m.version,
                    "score": float(s[j]),
                    "top_features": top[j],
                }
                for entry, (m, s, top) in per_entry.items()
            }
            for j in range(len(idx))
        ]

    def _fired(
        self, frame: pl.DataFrame, scored: BatchScores | None = None
    ) -> list[tuple[_RuleRuntime, list[_Hit]]]:
        """Per rule, the events it fired on, with case bodies checked to serialize (no state change)."""
        if not self.rules:
            return []
        exprs = [
            r.compiled.expr(self.lists).fill_null(False).alias(f"__rule_{i}")
            for i, r in enumerate(self.rules)
        ]
        hits = frame.select(pl.int_range(pl.len()).alias("_row"), *exprs)
        out: list[tuple[_RuleRuntime, list[_Hit]]] = []
        for i, rule in enumerate(self.rules):
            rows = hits.filter(pl.col(f"__rule_{i}"))["_row"]
            if rule.throttle_key and rows.len():
                rows = self._unthrottled(rule, frame, rows)
            if not rows.len():
                continue
            feat_names = [f.name for f in rule.compiled.features]
            feat_names += [model_column(m) for m in rule.compiled.models]
            cols = [EID, TIME, RAW, *feat_names]
            if rule.throttle_key:
                cols.append(rule.throttle_key)
            sel = frame[rows].select(list(dict.fromkeys(cols)))
            explained = self._explain(scored, rows)
            found: list[_Hit] = []
            for j, row in enumerate(sel.iter_rows(named=True)):
                event = orjson.loads(row[RAW])
                features = {n: row[n] for n in feat_names}
                Case(
                    case_id="",
                    pipeline=self.spec.name,
                    rule=rule.name,
                    action=rule.action,
                    score=rule.score,
                    event_id=None,
                    event_time=0,
                    features=features,
                    event=event,
                    models=explained[j] if explained is not None else None,
                ).body()  # raises here, on the engine thread, if the body cannot be written
                tkey = str(row[rule.throttle_key]) if rule.throttle_key else None
                found.append(
                    _Hit(
                        str(row[EID]),
                        int(row[TIME]),
                        tkey,
                        features,
                        event,
                        explained[j] if explained is not None else None,
                    )
                )
            out.append((rule, found))
        return out

    def _unthrottled(self, rule: _RuleRuntime, frame: pl.DataFrame, rows: pl.Series) -> pl.Series:
        """The hit rows ``once_per`` lets through, as :meth:`_commit_cases` will decide (no state
        change): a hit inside its key's throttle raises no case, so no case body is built for
        it (with ``once_per``, most hits of a busy key are such)."""
        assert rule.throttle_key is not None
        sel = frame[rows].select(pl.col(TIME), pl.col(rule.throttle_key))
        until: dict[str, int] = {}
        keep: list[int] = []
        for j, (t, k) in enumerate(sel.iter_rows()):
            tkey = str(k)
            end = until.get(tkey)
            if end is None:
                end = self.throttles.get((rule.name, tkey))
            if end is not None and t < end:
                continue
            until[tkey] = t + rule.throttle_ms
            keep.append(j)
        return rows if len(keep) == rows.len() else rows.gather(keep)

    def _commit_cases(self, fired: list[tuple[_RuleRuntime, list[_Hit]]]) -> list[Case]:
        """Throttles, repeated case ids and case numbering applied to the rules' hits."""
        cases: list[Case] = []
        for rule, found in fired:
            for hit in found:
                if hit.throttle_key is not None:
                    until = self.throttles.get((rule.name, hit.throttle_key))
                    if until is not None and hit.time < until:
                        continue
                    end = hit.time + rule.throttle_ms
                    self.throttles[(rule.name, hit.throttle_key)] = end
                    self._new_throttles.append((rule.name, hit.throttle_key, end))
                cid = case_id_for(self.spec.name, rule.name, hit.event_id)
                if cid in self._recent_ids:
                    continue
                self._recent_ids[cid] = None
                if len(self._recent_ids) > _RECENT_CASE_IDS:
                    self._recent_ids.popitem(last=False)
                cases.append(
                    Case(
                        case_id=cid,
                        pipeline=self.spec.name,
                        rule=rule.name,
                        action=rule.action,
                        score=rule.score,
                        event_id=hit.event_id,
                        event_time=hit.time,
                        features=hit.features,
                        event=hit.event,
                        seq=self.next_case_seq,
                        models=hit.models,
                    )
                )
                self.next_case_seq += 1
                self._rule_hits[rule.name] = self._rule_hits.get(rule.name, 0) + 1
                self.rule_hits_total[rule.name] = self.rule_hits_total.get(rule.name, 0) + 1
        return cases

    # ---- persistence -------------------------------------------------------------------

    def take_checkpoint(
        self, source: str, positions: dict[str, int], cases: list[Case], *, defer: bool = False
    ) -> Checkpoint:
        """Everything pending, as one checkpoint; the pending state starts afresh.

        With ``defer`` the buckets are aggregated by ``cp.prepare()`` (on the checkpoint
        writer's thread) instead of here; the engine goes on with a new pending set.
        """
        taken = self.pending
        self.pending = Pending(rolled=dict(taken.rolled))
        values = {k: g.new_values for k, g in self._groups.items() if g.new_values}
        for group in self._groups.values():
            group.new_values = []
        cp = Checkpoint(
            source=source,
            positions=dict(positions),
            cases=list(cases),
            throttles=list(self._new_throttles),
            rule_hits=dict(self._rule_hits),
            meta={"next_case_seq": str(self.next_case_seq), "pipeline": self.spec.name},
        )
        if self.watermark is not None:
            cp.meta["watermark"] = str(self.watermark)
        self._new_throttles.clear()
        self._rule_hits.clear()
        if self.listener is not None:
            self.listener.checkpointed(self.watermark)

        def prepare() -> None:
            cp.partials, cp.sketches, cp.distributions = taken.frames()
            cp.feature_values = {k: pl.concat(v).unique() for k, v in values.items()}
            cp.prepare = None

        cp.prepare = prepare
        if not defer:
            prepare()
        return cp

    def take_case_state(self) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
        """Throttles and rule hits set by the cases raised since the last take, handed to the
        case outbox commit (``runners.outbox``) that writes them with those cases; the next
        :meth:`take_checkpoint` then carries none of them."""
        throttles, hits = list(self._new_throttles), dict(self._rule_hits)
        self._new_throttles.clear()
        self._rule_hits.clear()
        return throttles, hits

    def adopt_cases(self, cases: list[Case]) -> None:
        """Cases already in the outbox beyond the restored state (committed ahead of a bucket
        write that never landed): a replay that raises them again is dropped by case id, and
        new cases are numbered after them."""
        for c in cases:
            self._recent_ids[c.case_id] = None
            self.next_case_seq = max(self.next_case_seq, c.seq + 1)
        while len(self._recent_ids) > _RECENT_CASE_IDS:
            self._recent_ids.popitem(last=False)

    def restore(
        self,
        meta: dict[str, str],
        tails: dict[tuple[str, str], pl.DataFrame],
        throttles: dict[tuple[str, str], int],
        values: dict[tuple[str, str], pl.DataFrame] | None = None,
    ) -> None:
        """Load state saved by earlier runs (watermark, case numbering, feature tails, throttles)."""
        if "watermark" in meta:
            # A watermark moved far ahead by an older engine (no max_future then) is pulled back.
            latest = self.clock() + parse_duration(self.spec.event.max_future)
            self.watermark = min(int(meta["watermark"]), latest)
        self.next_case_seq = int(meta.get("next_case_seq", "1"))
        self.pending.set_rolled(layout.marks_from_meta(meta))
        for key, rows in tails.items():
            if key in self._groups and rows.height:
                group = self._groups[key]
                group.tail = [rows.select(list(feat.state_schema(group.columns)))]
        self.stale_state = False
        for key, rows in (values or {}).items():
            if key in self._groups and rows.height:
                self._groups[key].values = [rows]
        self.throttles.update(throttles)
        if self.listener is not None:
            self.listener.reset()

    def pending_rule_hits(self) -> dict[str, int]:
        """Rule hits counted since the last checkpoint (not yet in the store)."""
        return dict(self._rule_hits)

    @property
    def feature_groups(self) -> Mapping[tuple[str, str], FeatureGroup]:
        """(metric, tier) -> the feature requests at that tier and the state they slide over.

        The same mapping object until the rules change (a reload), so readers may cache by it;
        read-only for them: only the pipeline advances the tails.
        """
        return self._groups

    def available_from(self) -> dict[str, int]:
        """First retained bucket start per tier at the current watermark."""
        return self.spec.available_from(self.watermark)

    def value_horizons(self) -> dict[tuple[str, str], int]:
        """(metric, tier) -> oldest bucket start distinct features still need."""
        wm = self.watermark or 0
        return {k: wm - g.horizon_ms - TIER_MS[k[1]] for k, g in self._groups.items() if g.distinct}

    def feature_slots(self) -> dict[tuple[str, str], int]:
        """(metric, tier) -> horizon in ms, for loading feature tails from the store."""
        return {k: g.horizon_ms for k, g in self._groups.items()}


def _score_records(
    frame: pl.DataFrame, scored: BatchScores | None, models: ModelSet, label_field: str | None
) -> pl.DataFrame | None:
    """Every model's score of every event of the batch (long form), for the score records."""
    if scored is None or not scored.scores:
        return None
    # with_columns broadcasts: without a label field the label is one literal null, which a
    # select would return as a single row (a ShapeError on every batch of more than one event)
    label = frame.with_columns(label_expr(label_field).cast(pl.Float64).alias("_label"))["_label"]
    parts = []
    for entry, s in scored.scores.items():
        m = models.models[entry]
        parts.append(
            pl.DataFrame(
                {
                    "event_id": frame[EID],
                    "event_time": frame[TIME],
                    "entry": pl.repeat(entry, frame.height, eager=True, dtype=pl.String),
                    "model": pl.repeat(m.name, frame.height, eager=True, dtype=pl.String),
                    "version": pl.repeat(m.version, frame.height, eager=True, dtype=pl.Int64),
                    "shadow": pl.repeat(
                        models.shadow[entry], frame.height, eager=True, dtype=pl.Boolean
                    ),
                    "score": pl.Series(np.asarray(s), dtype=pl.Float64),
                    "label": label,
                }
            )
        )
    return pl.concat(parts)


def _registry(spec: PipelineSpec, base_dir: Path) -> ListRegistry:
    inline = {n: lst.values for n, lst in spec.lists.items() if lst.values is not None}
    files = {n: lst.file for n, lst in spec.lists.items() if lst.file is not None}
    return ListRegistry(inline, files, base_dir=base_dir)


def _split(batch: RawBatch, at: int) -> list[RawBatch]:
    """``batch`` cut in two at ``at`` (the first part without a resume position)."""
    cut = batch.truncated or {}
    parts = []
    for lo, hi in ((0, at), (at, len(batch.lines))):
        parts.append(
            RawBatch(
                lines=batch.lines[lo:hi],
                positions=batch.positions[lo:hi],
                resume=batch.resume if hi == len(batch.lines) else {},
                received_ms=batch.received_ms[lo:hi] if batch.received_ms else None,
                truncated={i - lo: n for i, n in cut.items() if lo <= i < hi} or None,
            )
        )
    return parts
