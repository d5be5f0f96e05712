"""The single-event scorer: each event scored as if it were a batch of its own.

Events the fast decoder takes are scored with the plan (:mod:`riskstream.engine.single.plan`):
features from the tails (:mod:`riskstream.engine.single.lookup`), then rules and metric inputs
in plain Python when the spec is covered, else with the Polars expressions over one frame
holding all the events of the call (rows never interact: expressions are row-wise), so the
Polars overhead is paid once per call, not per event. Every other line goes through the batch
path alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core.events import RawBatch
from riskstream.engine.decode import (
    EID,
    POS,
    PREFIX_BYTES,
    RAW,
    SEQ,
    TIME,
    Decoder,
    Quarantined,
    one_line,
)
from riskstream.engine.single.fastdecode import FastDecoder, Value
from riskstream.engine.single.lookup import FeatureValue, FrameCache, MetricColumns, feature_values
from riskstream.engine.single.plan import Plan, build_plan, stamp_of
from riskstream.engine.single.view import ScoringView


@dataclass
class EventScore:
    """One event scored against the state: its decoded row, feature values and fired rules."""

    position: str
    #: the decoded row as the batch path's frame holds it (decoder columns, ``_t``, ``_id`` ...)
    row: dict[str, Value]
    #: feature name -> value (int for count and distinct, float or None otherwise)
    features: dict[str, FeatureValue]
    #: one flag per ``pipeline.rules`` entry, in that order
    fired: list[bool]


@dataclass
class Row:
    """A line the fast decoder took: its index in the call, decoded columns and time."""

    index: int
    position: str
    #: every column of the batch path's decoded frame (fields, ``_seq``, ``_pos``, ``_raw``, ``_t``, ``_id``)
    cols: dict[str, Value]
    t: int


def make_row(
    p: ScoringView,
    index: int,
    got: tuple[dict[str, Value], int, str | None],
    line: bytes,
    position: str,
) -> Row:
    """The decoded columns of a line alone in its batch (its first row)."""
    cols, t, eid = got
    cols[SEQ] = p.next_seq
    cols[POS] = position
    cols[RAW] = line
    cols[TIME] = t
    cols[EID] = eid if eid is not None else position
    return Row(index, position, cols, t)


class SingleScorer:
    """Scores events alone against one pipeline's state (read each call: reloads are seen)."""

    def __init__(self, pipeline: ScoringView) -> None:
        self._pipeline = weakref.ref(pipeline)
        self._decoders: tuple[Decoder, FastDecoder] | None = None
        self._cache = FrameCache()
        self._plan: Plan | None = None
        self._hashes: dict[str, int] = {}
        self._avail: tuple[int | None, dict[str, int]] | None = None
        #: whether the Python evaluator may be used (tests turn it off to check both forms)
        self.python = True

    @property
    def pipeline(self) -> ScoringView:
        """The pipeline scored against."""
        p = self._pipeline()
        assert p is not None, "the pipeline is gone"
        return p

    def fast_decoder(self) -> FastDecoder:
        """The fast decoder for the pipeline's current decoder."""
        d = self.pipeline.decoder
        if self._decoders is None or self._decoders[0] is not d:
            self._decoders = (d, FastDecoder(d))
        return self._decoders[1]

    def plan(self) -> Plan:
        """Metric inputs and rule flags (Polars and, where possible, Python), cached."""
        stamp = stamp_of(self.pipeline)
        old = self._plan
        if (
            old is not None
            and len(old.stamp) == len(stamp)
            and all(a is b for a, b in zip(old.stamp, stamp, strict=True))
        ):
            return old
        self._plan = build_plan(self.pipeline)
        return self._plan

    def score(
        self, lines: Sequence[bytes], positions: Sequence[str], *, unique_keys: bool = False
    ) -> list[EventScore | Quarantined]:
        """Each line scored alone against the current state (which is not changed).

        The answer for a line is the batch path's for the one-line batch ``[line]``: lines do
        not see each other. ``unique_keys`` is passed to :meth:`FastDecoder.row`.
        """
        p = self.pipeline
        fast = self.fast_decoder()
        results: list[EventScore | Quarantined | None] = [None] * len(lines)
        rows: list[Row] = []
        for i, line in enumerate(lines):
            got = fast.row(line, p.watermark, unique_keys=unique_keys)
            if got is None:
                results[i] = self._slow(line, positions[i])
            else:
                rows.append(make_row(p, i, got, lines[i], positions[i]))
        if rows:
            plan = self.plan()
            if self.python and plan.py_rules is not None and plan.py_metrics is not None:
                scored = self._score_py(plan, rows)
            else:
                scored = self._score_polars(rows)
            for row, s in zip(rows, scored, strict=True):
                results[row.index] = s
        return [r for r in results if r is not None]

    def _slow(self, line: bytes, position: str) -> EventScore | Quarantined:
        """The batch path on the one-line batch: exact for whatever the fast decoder refused."""
        p = self.pipeline
        try:
            frame, quarantined, fired = p.evaluate_batch(
                RawBatch(lines=[line], positions=[position])
            )
        except (MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # any failure on one event: refused, never a crash
            return Quarantined("unprocessable", one_line(exc), position, line[:PREFIX_BYTES])
        if quarantined or not frame.height:
            if quarantined:
                first: Quarantined = quarantined[0]
                return first
            return Quarantined("rejected", "event refused", position, line)
        names = {r.name for g in p.feature_groups.values() for r in [*g.numeric, *g.distinct]}
        row = frame.row(0, named=True)
        return EventScore(
            position,
            {c: v for c, v in row.items() if c not in names},
            {c: v for c, v in row.items() if c in names},
            [bool(fired[r.name][0]) for r in p.rules],
        )

    # ---- Python: no Polars call on the way (but key hashes not seen before) ----------------------

    def _score_py(self, plan: Plan, rows: list[Row]) -> list[EventScore]:
        assert plan.py_metrics is not None and plan.py_rules is not None
        per_metric: dict[str, MetricColumns] = {}
        for m in plan.py_metrics:
            read = [m.read(r.cols) for r in rows]
            keys = [k for k, _, _, _ in read]
            per_metric[m.name] = MetricColumns(
                keys,
                [ok for _, ok, _, _ in read],
                [v for _, _, v, _ in read],
                [c for _, _, _, c in read],
                self._hash(keys),
            )
        names, columns = self._features(per_metric, [r.t for r in rows])
        out: list[EventScore] = []
        for j, r in enumerate(rows):
            feats = {name: col[j] for name, col in zip(names, columns, strict=True)}
            env = {**r.cols, **feats}
            out.append(EventScore(r.position, r.cols, feats, [f(env) for f in plan.py_rules]))
        return out

    def _hash(self, keys: list[str | None]) -> npt.NDArray[np.uint64]:
        """Polars' hash of each key (as ``core.keys.keyed`` makes ``_h``), remembered per key text."""
        known = self._hashes
        missing = [k for k in keys if k is not None and k not in known]
        if missing:
            if len(known) > 500_000:
                known.clear()
            got = pl.Series(missing, dtype=pl.String).hash().to_list()
            known.update(zip(missing, got, strict=True))
        return np.array([0 if k is None else known[k] for k in keys], dtype=np.uint64)

    # ---- Polars: rules and metric inputs as the batch path computes them ------------------------

    def _score_polars(self, rows: list[Row]) -> list[EventScore]:
        full, fnames, fired = self.scored_frame(rows)
        names = full.columns
        cvals = [full[c].to_list() for c in names]
        feats = set(fnames)
        out: list[EventScore] = []
        for j, r in enumerate(rows):
            out.append(
                EventScore(
                    r.position,
                    {c: vals[j] for c, vals in zip(names, cvals, strict=True) if c not in feats},
                    {c: vals[j] for c, vals in zip(names, cvals, strict=True) if c in feats},
                    [bool(f[j]) for f in fired],
                )
            )
        return out

    def frame_of(self, rows: list[Row]) -> pl.DataFrame:
        """The decoded frame the batch path would make of each row's line alone, stacked."""
        schema = self.pipeline.decoder.frame_schema
        return pl.DataFrame({c: [r.cols[c] for r in rows] for c in schema}, schema=schema)

    def scored_frame(self, rows: list[Row]) -> tuple[pl.DataFrame, list[str], list[list[bool]]]:
        """The decoded rows with their feature columns, the feature names, and per rule its flags."""
        plan = self.plan()
        frame = self.frame_of(rows)
        ins = frame.select(plan.inputs) if plan.inputs else pl.DataFrame()
        per_metric: dict[str, MetricColumns] = {}
        for i, m in enumerate(plan.metrics):
            kseries = ins[f"__k{i}"]
            per_metric[m.name] = MetricColumns(
                kseries.to_list(),
                ins[f"__ok{i}"].to_list(),
                ins[f"__v{i}"].to_list(),
                ins[f"__c{i}"].to_list(),
                kseries.hash().to_numpy(),
            )
        names, columns = self._features(per_metric, [r.t for r in rows])
        integral = {
            r.name
            for g in self.pipeline.feature_groups.values()
            for r in [*g.numeric, *g.distinct]
            if r.stat in ("count", "distinct")
        }
        features = [
            pl.Series(name, col, dtype=pl.Int64 if name in integral else pl.Float64)
            for name, col in zip(names, columns, strict=True)
        ]
        full = frame.hstack(features) if features else frame
        full, _ = self.pipeline.score_models(full, observe=False)
        fired: list[list[bool]] = []
        if plan.rules:
            flags = full.select(plan.rules)
            fired = [flags[f"__rule_{k}"].to_list() for k in range(len(plan.rules))]
        return full, names, fired

    def _features(
        self, per_metric: dict[str, MetricColumns], times: list[int]
    ) -> tuple[list[str], list[list[FeatureValue]]]:
        p = self.pipeline
        if self._avail is None or self._avail[0] != p.watermark:
            self._avail = (p.watermark, p.available_from())
        return feature_values(p.feature_groups, self._avail[1], self._cache, per_metric, times)


_SCORERS: weakref.WeakKeyDictionary[ScoringView, SingleScorer] = weakref.WeakKeyDictionary()


def scorer_for(pipeline: ScoringView) -> SingleScorer:
    """The pipeline's scorer (its caches live as long as the pipeline)."""
    s = _SCORERS.get(pipeline)
    if s is None:
        s = _SCORERS[pipeline] = SingleScorer(pipeline)
    return s


def evaluate_one(
    pipeline: ScoringView, batch: RawBatch
) -> tuple[pl.DataFrame, list[Quarantined], dict[str, pl.Series]] | None:
    """``Pipeline.evaluate`` of a one-line batch, or None when the batch path must do it."""
    scorer = scorer_for(pipeline)
    line, position = batch.lines[0], batch.positions[0]
    got = scorer.fast_decoder().row(line, pipeline.watermark)
    if got is None:
        return None
    row = make_row(pipeline, 0, got, line, position)
    full, _, flags = scorer.scored_frame([row])
    fired = {
        r.name: pl.Series("f", [bool(f[0])], dtype=pl.Boolean)
        for r, f in zip(pipeline.rules, flags, strict=True)
    }
    return full, [], fired
