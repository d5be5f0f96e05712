"""Score a few events against the live state, each one alone: the ``POST /v1/decide`` fast path.

:meth:`Pipeline.evaluate` on a batch pays fixed Polars costs sized for 20k-row batches (eight
ISO formats tried on every time, joins, sorts, prefix sums): about 10 ms even for one event.
Here each event is scored as if it were a batch of its own, in three steps:

1. **decode** with msgspec, accepting only what the :class:`~riskstream.engine.decode.Decoder`
   would decode to the very same row (integer or finite float times, values of the declared
   types, field text formatted as Polars formats it). Anything else (ISO times, a value of the
   wrong type, a late event, odd bytes) goes through the batch path alone, so quarantine
   reasons and every edge case stay the decoder's;
2. **features** per (metric, tier) group from the feature tails (Polars frames sorted by the
   key hash ``_h``): the key's rows are found by binary search on cached NumPy columns, checked
   against the key text, and the window's buckets summed (``math.fsum``, so a sum does not
   depend on which other keys share a batch) or their values counted (distinct);
3. **metric inputs and rules** with the compiled Polars expressions over one frame holding all
   the events of the call (rows never interact: expressions are row-wise), so the Polars
   overhead is paid once per call, not per event.

Equality with the batch path is property-tested (``tests/unit/engine/test_single.py``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core import keys as corekeys
from riskstream.core import stats
from riskstream.core.events import RawBatch
from riskstream.core.keys import KEY, key_of
from riskstream.core.stats import CATEGORY
from riskstream.core.tiers import TIER_MS, bucket_start
from riskstream.engine import features as feat
from riskstream.engine import guard
from riskstream.engine.decode import (
    EID,
    MIN_TIME_MS,
    POS,
    PREFIX_BYTES,
    RAW,
    SEQ,
    TIME,
    Decoder,
    Quarantined,
    one_line,
)
from riskstream.engine.metrics import CompiledMetric
from riskstream.rules.pyeval import python_predicate

_SAFE = 2**53
_I64 = 2**63


@dataclass
class EventScore:
    """One event scored against the state: its decoded row, feature values and fired rules."""

    position: str
    #: the decoded row as the batch path's frame holds it (decoder columns, ``_t``, ``_id`` ...)
    row: dict[str, Any]
    #: feature name -> value (int for count and distinct, float or None otherwise)
    features: dict[str, Any]
    #: one flag per ``pipeline.rules`` entry, in that order
    fired: list[bool]


# ---- 1. decode -----------------------------------------------------------------------------------


def _text(v: Any) -> str | None:
    """``v`` as Polars' NDJSON reader puts a JSON scalar in a String column; None if unsure."""
    tv = type(v)
    if tv is str:
        return str(v)
    if tv is bool:
        return "true" if v else "false"
    if tv is int:
        return str(v) if -_I64 <= v < _I64 else None
    if tv is float:
        if not math.isfinite(v):
            return None
        return np.format_float_positional(v, unique=True, trim="-")
    return None


class FastDecoder:
    """The rows the batch :class:`Decoder` makes of the lines it decodes without trouble."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.fields = list(decoder.fields.items())
        self.time_field = decoder.time_field
        self._json = msgspec.json.Decoder()
        #: quoted names whose repetition in a line would make duplicate keys possible
        self._quoted = [msgspec.json.encode(n) for n in [self.time_field, *decoder.fields]]
        self._id_kind = decoder.fields.get(decoder.id_field) if decoder.id_field else None

    def row(
        self, line: bytes, watermark: int | None, *, unique_keys: bool = False
    ) -> tuple[dict[str, Any], int, str | None] | None:
        """``(columns, time, id)`` of the one-line batch ``line``; None leaves it to the batch path.

        ``unique_keys``: the caller knows the object has no repeated key (it was serialized from
        a dict); otherwise a line with a backslash or a repeated field name is left to the batch
        path (msgspec keeps the last of repeated keys, Polars the first).
        """
        d = self.decoder
        if len(line) > d.max_bytes or b"\n" in line or b"\r" in line:
            return None
        if line.count(b"{") + line.count(b"[") > d.max_depth:
            return None  # maybe too deep: the decoder's business (before any recursive parse)
        if not unique_keys and (b"\\" in line or any(line.count(q) > 1 for q in self._quoted)):
            return None
        try:
            obj = self._json.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if type(obj) is not dict:
            return None
        if not unique_keys and guard.check_one(line, d.max_depth, obj) is not None:
            return None  # a repeated key: quarantined by the decoder
        raw_t: Any = obj.get(self.time_field)
        tt = type(raw_t)
        if tt is int:
            if not -_SAFE <= raw_t <= _SAFE:
                return None
            t = int(raw_t)
        elif tt is float:
            if not (math.isfinite(raw_t) and -_SAFE <= raw_t <= _SAFE):
                return None
            t = math.floor(raw_t)
        else:
            return None  # ISO text, missing, null or odd: the decoder's business
        if watermark is not None and t < watermark - d.max_lateness_ms:
            return None  # quarantined as too late, by the decoder
        if t > d.clock() + d.max_future_ms or t < MIN_TIME_MS:
            return None  # quarantined as too early (or before year 1), by the decoder
        out: dict[str, Any] = {self.time_field: _text(raw_t)}
        for name, kind in self.fields:
            v = obj.get(name)
            if v is None:
                out[name] = None
                continue
            tv = type(v)
            if kind == "float":
                if tv is float:
                    if not math.isfinite(v):
                        return None
                elif tv is int and -_SAFE <= v <= _SAFE:
                    v = float(v)
                else:
                    return None
            elif kind == "int":
                if tv is not int or not -_I64 <= v < _I64:
                    return None
            elif kind == "bool":
                if tv is not bool:
                    return None
            else:  # str / any: a String column
                v = _text(v)
                if v is None:
                    return None
            out[name] = v
        eid: str | None = None
        if d.id_field is not None:
            v = out[d.id_field]
            if v is not None:
                if self._id_kind not in ("str", "any", "int"):
                    return None  # a float or bool id: text as Polars casts it, not guessed here
                eid = str(v)
        return out, t, eid


# ---- 2. features ---------------------------------------------------------------------------------

_F64 = npt.NDArray[np.float64]
_I64A = npt.NDArray[np.int64]


class _Sorted:
    """One state frame sorted by key hash, with the NumPy columns the lookups read."""

    def __init__(self, frame: pl.DataFrame, distinct: bool) -> None:
        if corekeys.HASH not in frame.columns or not frame[corekeys.HASH].flags["SORTED_ASC"]:
            frame = corekeys.keyed(frame)
        self.frame = frame
        self.h = frame[corekeys.HASH].to_numpy()
        self.b: _I64A = frame["b"].to_numpy().astype(np.int64, copy=False)
        self.key = frame[KEY]
        if distinct:
            self.cat = frame[CATEGORY]
        else:
            self.count: _I64A = frame["count"].to_numpy().astype(np.int64, copy=False)
            self.sum: _F64 = frame["sum"].fill_null(0.0).to_numpy().astype(np.float64, copy=False)
            self.sumsq: _F64 = (
                frame["sumsq"].fill_null(0.0).to_numpy().astype(np.float64, copy=False)
            )
            self.min: _F64 = frame["min"].fill_null(math.inf).to_numpy().astype(np.float64)
            self.max: _F64 = frame["max"].fill_null(-math.inf).to_numpy().astype(np.float64)

    def rows(self, lo: int, hi: int, key: str) -> slice | list[int]:
        """Rows in ``[lo, hi)`` (those of the key's hash) whose key really is ``key``."""
        keys = self.key.slice(lo, hi - lo).to_list()
        if keys.count(key) == len(keys):
            return slice(lo, hi)
        return [lo + i for i, k in enumerate(keys) if k == key]


class _FrameCache:
    """:class:`_Sorted` views of the tail frames, kept while the frames are in the state."""

    def __init__(self) -> None:
        self._views: dict[int, tuple[pl.DataFrame, _Sorted]] = {}

    def views(self, frames: Sequence[pl.DataFrame], distinct: bool) -> list[_Sorted]:
        out: list[_Sorted] = []
        for frame in frames:
            if not frame.height:
                continue
            hit = self._views.get(id(frame))
            if hit is None or hit[0] is not frame:
                hit = (frame, _Sorted(frame, distinct))
                self._views[id(frame)] = hit
            out.append(hit[1])
        return out

    def prune(self, live: set[int]) -> None:
        for k in [k for k in self._views if k not in live]:
            del self._views[k]


def _bucket(t: int, tier: str) -> int:
    return bucket_start(t, tier)


@dataclass
class _Query:
    """One event's view of one metric: its key (and hash), bucket and own contribution."""

    key: str | None
    b: int
    counts: bool
    v: float | None
    c: str | None


def _numeric(
    views: list[_Sorted],
    hits: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]],
    j: int,
    q: _Query,
    avail: int,
    width: int,
    requests: Sequence[feat.Request],
) -> dict[str, Any]:
    """The numeric features of event ``j`` (one batch row alone: it is in order, rank 1)."""
    out: dict[str, Any] = {}
    if q.key is None:
        for req in requests:
            out[req.name] = 0 if req.stat == "count" else (0.0 if req.stat == "sum" else None)
        return out
    max_steps = max(req.window_ms // width for req in requests)
    first = max(avail, q.b - (max_steps - 1) * width)
    last = q.b
    # (bucket, count, sum, sumsq, min, max) of the key's state rows in the widest window
    found: list[tuple[int, int, float, float, float, float]] = []
    for view, (los, his) in zip(views, hits, strict=True):
        lo, hi = int(los[j]), int(his[j])
        if hi <= lo:
            continue
        sel = view.rows(lo, hi, q.key)
        found.extend(
            r
            for r in zip(
                view.b[sel].tolist(),
                view.count[sel].tolist(),
                view.sum[sel].tolist(),
                view.sumsq[sel].tolist(),
                view.min[sel].tolist(),
                view.max[sel].tolist(),
                strict=True,
            )
            if first <= r[0] <= last
        )
    own_v = (0.0 if q.v is None else q.v) if q.counts else None
    for req in requests:
        low = max(avail, q.b - (req.window_ms // width - 1) * width)
        rows = [r for r in found if r[0] >= low] if low > first else found
        cnt = sum(r[1] for r in rows)
        sums = [r[2] for r in rows]
        sqs = [r[3] for r in rows]
        mins = [r[4] for r in rows] if req.stat == "min" else []
        maxs = [r[5] for r in rows] if req.stat == "max" else []
        if own_v is not None:
            cnt += 1
            sums.append(own_v)
            sqs.append(own_v * own_v)
            mins.append(own_v)
            maxs.append(own_v)
        out[req.name] = _stat(req.stat, cnt, sums, sqs, mins, maxs)
    return out


def _stat(
    stat: str, cnt: int, sums: list[float], sqs: list[float], mins: list[float], maxs: list[float]
) -> Any:
    """The feature value from one event's window rows (the stat's scalar form in core.stats)."""
    if stat == "count":
        return cnt
    tot = math.fsum(sums)
    lo = min(mins) if mins else math.nan
    hi = max(maxs) if maxs else math.nan
    p = stats.Partial(
        cnt,
        tot,
        lo if math.isfinite(lo) else None,
        hi if math.isfinite(hi) else None,
        stats.m2_of_sums(cnt, tot, math.fsum(sqs)),
    )
    out = stats.value(stat, p)
    return None if stat in ("min", "max") and out is None else out


def _distinct(
    views: list[_Sorted],
    hits: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]],
    j: int,
    q: _Query,
    avail: int,
    requests: Sequence[feat.Request],
) -> dict[str, Any]:
    """Distinct values of the key in each window (state rows, plus the event's own value)."""
    if q.key is None:
        return {req.name: 0 for req in requests}
    max_w = max(req.window_ms for req in requests)
    seen: list[tuple[int, Any]] = []  # (bucket, value)
    for view, (los, his) in zip(views, hits, strict=True):
        lo, hi = int(los[j]), int(his[j])
        if hi <= lo:
            continue
        sel = view.rows(lo, hi, q.key)
        b = view.b[sel].tolist()
        if isinstance(sel, slice):
            cats = view.cat.slice(lo, hi - lo).to_list()
        else:
            cats = view.cat.gather(sel).to_list()
        seen.extend(
            (bj, c)
            for bj, c in zip(b, cats, strict=True)
            if bj >= avail and bj <= q.b and bj > q.b - max_w
        )
    if q.counts:
        seen.append((q.b, q.c))
    return {req.name: len({c for b, c in seen if b > q.b - req.window_ms}) for req in requests}


# ---- 3. the scorer -------------------------------------------------------------------------------


class _MetricPy:
    """How one metric reads an event, in Python (dimension, value and category of declared types)."""

    def __init__(self, m: CompiledMetric, kinds: dict[str, str], where: Any) -> None:
        self.name = m.name
        self.dims = list(m.spec.dimension)
        self.value = m.spec.value
        self.numeric = m.numeric
        self.where = where
        self.value_kind = kinds.get(self.value) if self.value else None

    def read(self, row: dict[str, Any]) -> tuple[str | None, bool, float | None, str | None]:
        """Key, whether the event counts, numeric value, category (as ``contributions``)."""
        key = key_of([row[d] for d in self.dims])
        v: float | None = None
        c: str | None = None
        if self.value is not None:
            raw = row[self.value]
            if raw is not None:
                if self.numeric:
                    v = float(raw)
                c = raw if type(raw) is str else str(raw)
        ok = key is not None
        if ok and self.where is not None:
            ok = self.where(row)
        if ok and self.value is not None:
            ok = (v if self.numeric else c) is not None
        return key, ok, v, c


def _py_metric(m: CompiledMetric, kinds: dict[str, str], where: Any, distinct: bool) -> bool:
    """Whether :class:`_MetricPy` reads ``m`` exactly as Polars does."""
    if m.where is not None and where is None:
        return False
    if any(kinds.get(d) not in ("str", "any", "int") for d in m.spec.dimension):
        return False
    if m.spec.value is None:
        return True
    vk = kinds.get(m.spec.value)
    if m.numeric:
        # a float value's text (the category) is Polars' float formatting: only for distinct
        return vk == "int" or (vk == "float" and not distinct)
    return vk in ("str", "any", "int")


@dataclass
class _Plan:
    """The pipeline's rules and metric inputs prepared for scoring, until rules or lists change."""

    stamp: tuple[object, ...]
    inputs: list[pl.Expr]
    rules: list[pl.Expr]
    #: Python forms when every rule and metric input has one, else None (Polars is used)
    py_rules: list[Callable[[Mapping[str, Any]], bool]] | None
    py_metrics: list[_MetricPy] | None


class SingleScorer:
    """Scores events alone against one pipeline's state (read each call: reloads are seen)."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = weakref.ref(pipeline)
        self._decoders: tuple[Decoder, FastDecoder] | None = None
        self._cache = _FrameCache()
        self._plan: _Plan | None = None
        self._hashes: dict[str, int] = {}
        self._avail: tuple[int | None, dict[str, int]] | None = None
        #: whether the Python evaluator may be used (tests turn it off to check both forms)
        self.python = True

    @property
    def pipeline(self) -> Any:
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

    def plan(self) -> _Plan:
        """Metric inputs and rule flags (Polars and, where possible, Python), cached."""
        p = self.pipeline
        lists = p.lists
        stamp: tuple[object, ...] = (
            p.rules,
            p.models,
            p.metrics,
            p._groups,
            p.decoder,
            lists,
            *(lists[n] for n in lists),
        )
        old = self._plan
        if (
            old is not None
            and len(old.stamp) == len(stamp)
            and all(a is b for a, b in zip(old.stamp, stamp, strict=True))
        ):
            return old
        metrics = self._metrics()
        inputs: list[pl.Expr] = []
        for i, m in enumerate(metrics):
            inputs.extend(_metric_inputs(m, lists, i))
        rules = [
            r.compiled.expr(lists).fill_null(False).alias(f"__rule_{i}")
            for i, r in enumerate(p.rules)
        ]
        # the time field is decoded as text, whatever its declared type: Polars casts it
        opaque = (p.decoder.time_field,)
        # with models, rules read model columns: the Polars form scores them in one call
        py_rules: list[Callable[[Mapping[str, Any]], bool]] | None = None if p.models else []
        for r in p.rules if py_rules is not None else []:
            fn = python_predicate(r.compiled, lists, opaque_fields=opaque)
            if fn is None or py_rules is None:
                py_rules = None
                break
            py_rules.append(fn)
        kinds = dict(p.decoder.fields)
        with_distinct = {metric for (metric, _), g in p._groups.items() if g.distinct}
        py_metrics: list[_MetricPy] | None = []
        for m in metrics:
            where = (
                python_predicate(m.where, lists, opaque_fields=opaque)
                if m.where is not None
                else None
            )
            if py_metrics is None or not _py_metric(m, kinds, where, m.name in with_distinct):
                py_metrics = None
                break
            py_metrics.append(_MetricPy(m, kinds, where))
        self._plan = _Plan(stamp, inputs, rules, py_rules, py_metrics)
        return self._plan

    def _metrics(self) -> list[CompiledMetric]:
        p = self.pipeline
        used = {metric for metric, _ in p._groups}
        return [m for m in p.metrics if m.name in used]

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
        rows: list[_Row] = []
        for i, line in enumerate(lines):
            got = fast.row(line, p.watermark, unique_keys=unique_keys)
            if got is None:
                results[i] = self._slow(line, positions[i])
            else:
                rows.append(_row(p, i, got, lines[i], positions[i]))
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
            frame, quarantined, fired = p._evaluate_batch(
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
        names = set(_feature_names(p))
        row = frame.row(0, named=True)
        return EventScore(
            position,
            {c: v for c, v in row.items() if c not in names},
            {c: v for c, v in row.items() if c in names},
            [bool(fired[r.name][0]) for r in p.rules],
        )

    # ---- Python: no Polars call on the way (but key hashes not seen before) ----------------------

    def _score_py(self, plan: _Plan, rows: list[_Row]) -> list[EventScore]:
        assert plan.py_metrics is not None and plan.py_rules is not None
        per_metric: dict[str, tuple[list[Any], list[Any], list[Any], list[Any], Any]] = {}
        for m in plan.py_metrics:
            read = [m.read(r.cols) for r in rows]
            keys = [k for k, _, _, _ in read]
            per_metric[m.name] = (
                keys,
                [ok for _, ok, _, _ in read],
                [v for _, _, v, _ in read],
                [c for _, _, _, c in read],
                self._hash(keys),
            )
        names, columns = self._feature_values(per_metric, [r.t for r in rows])
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

    def _score_polars(self, rows: list[_Row]) -> list[EventScore]:
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

    def frame_of(self, rows: list[_Row]) -> pl.DataFrame:
        """The decoded frame the batch path would make of each row's line alone, stacked."""
        d: Decoder = self.pipeline.decoder
        schema = _frame_schema(d)
        return pl.DataFrame({c: [r.cols[c] for r in rows] for c in schema}, schema=schema)

    def scored_frame(self, rows: list[_Row]) -> tuple[pl.DataFrame, list[str], list[list[Any]]]:
        """The decoded rows with their feature columns, the feature names, and per rule its flags."""
        plan = self.plan()
        frame = self.frame_of(rows)
        ins = frame.select(plan.inputs) if plan.inputs else pl.DataFrame()
        per_metric: dict[str, tuple[list[Any], list[Any], list[Any], list[Any], Any]] = {}
        for i, m in enumerate(self._metrics()):
            kseries = ins[f"__k{i}"]
            per_metric[m.name] = (
                kseries.to_list(),
                ins[f"__ok{i}"].to_list(),
                ins[f"__v{i}"].to_list(),
                ins[f"__c{i}"].to_list(),
                kseries.hash().to_numpy(),
            )
        names, columns = self._feature_values(per_metric, [r.t for r in rows])
        features = [
            pl.Series(name, col, dtype=self._dtype(name))
            for name, col in zip(names, columns, strict=True)
        ]
        full = frame.hstack(features) if features else frame
        full, _ = self.pipeline.score_models(full, observe=False)
        fired: list[list[Any]] = []
        if plan.rules:
            flags = full.select(plan.rules)
            fired = [flags[f"__rule_{k}"].to_list() for k in range(len(plan.rules))]
        return full, names, fired

    def _dtype(self, name: str) -> type[pl.DataType]:
        for g in self.pipeline._groups.values():
            for req in g.requests:
                if req.name == name:
                    return pl.Int64 if req.stat in ("count", "distinct") else pl.Float64
        return pl.Float64

    # ---- features ----------------------------------------------------------------------------------

    def _available(self) -> dict[str, int]:
        p = self.pipeline
        if self._avail is None or self._avail[0] != p.watermark:
            self._avail = (p.watermark, p.available_from())
        return self._avail[1]

    def _feature_values(
        self,
        per_metric: dict[str, tuple[list[Any], list[Any], list[Any], list[Any], Any]],
        times: list[int],
    ) -> tuple[list[str], list[list[Any]]]:
        """Per feature (in the batch path's column order) its value for each row."""
        p = self.pipeline
        avail_all = self._available()
        n = len(times)
        names: list[str] = []
        columns: list[list[Any]] = []
        live: set[int] = set()
        for (metric, tier), group in p._groups.items():
            keys, ok, vs, cs, hashes = per_metric[metric]
            width = TIER_MS[tier]
            avail = avail_all[tier]
            queries = [
                _Query(keys[j], _bucket(times[j], tier), bool(ok[j]), vs[j], cs[j])
                for j in range(n)
            ]
            todo: list[tuple[list[feat.Request], Sequence[pl.DataFrame], bool]] = []
            if group.numeric:
                todo.append((group.numeric, group.tail, False))
            if group.distinct:
                todo.append((group.distinct, group.values, True))
            for requests, frames, distinct in todo:
                live.update(id(f) for f in frames)
                views = self._cache.views(frames, distinct)
                hits = [
                    (
                        np.searchsorted(v.h, hashes, side="left"),
                        np.searchsorted(v.h, hashes, side="right"),
                    )
                    for v in views
                ]
                values: list[dict[str, Any]] = [
                    _distinct(views, hits, j, queries[j], avail, requests)
                    if distinct
                    else _numeric(views, hits, j, queries[j], avail, width, requests)
                    for j in range(n)
                ]
                for req in requests:
                    names.append(req.name)
                    columns.append([v[req.name] for v in values])
        self._cache.prune(live)
        return names, columns


@dataclass
class _Row:
    """A line the fast decoder took: its index in the call, decoded columns and time."""

    index: int
    position: str
    #: every column of the batch path's decoded frame (fields, ``_seq``, ``_pos``, ``_raw``, ``_t``, ``_id``)
    cols: dict[str, Any]
    t: int


def _row(
    p: Any, index: int, got: tuple[dict[str, Any], int, str | None], line: bytes, position: str
) -> _Row:
    cols, t, eid = got
    cols[SEQ] = p.next_seq  # each event is alone in its batch: its first row
    cols[POS] = position
    cols[RAW] = line
    cols[TIME] = t
    cols[EID] = eid if eid is not None else position
    return _Row(index, position, cols, t)


def _frame_schema(d: Decoder) -> dict[str, pl.DataType]:
    """Columns of a decoded frame, in the batch path's order."""
    return {
        **d.schema,
        SEQ: pl.Int64(),
        POS: pl.String(),
        RAW: pl.Binary(),
        TIME: pl.Int64(),
        EID: pl.String(),
    }


def _feature_names(pipeline: Any) -> list[str]:
    return [r.name for g in pipeline._groups.values() for r in [*g.numeric, *g.distinct]]


def _metric_inputs(m: CompiledMetric, lists: Any, i: int) -> list[pl.Expr]:
    """What :meth:`CompiledMetric.contributions` reads of each row, as columns ``__k/ok/v/c{i}``."""
    key = m.key_expr()
    value = m.spec.value
    if value is not None and m.numeric:
        v = pl.col(value).cast(pl.Float64, strict=False)
    else:
        v = pl.lit(None, pl.Float64)
    c = pl.col(value).cast(pl.String) if value is not None else pl.lit(None, pl.String)
    ok = key.is_not_null()
    if m.where is not None:
        ok = ok & m.where.expr(lists).fill_null(False)
    if value is not None:
        ok = ok & (v.is_not_null() if m.numeric else c.is_not_null())
    return [key.alias(f"__k{i}"), ok.alias(f"__ok{i}"), v.alias(f"__v{i}"), c.alias(f"__c{i}")]


_SCORERS: weakref.WeakKeyDictionary[Any, SingleScorer] = weakref.WeakKeyDictionary()


def scorer_for(pipeline: Any) -> SingleScorer:
    """The pipeline's scorer (its caches live as long as the pipeline)."""
    s = _SCORERS.get(pipeline)
    if s is None:
        s = _SCORERS[pipeline] = SingleScorer(pipeline)
    return s


def evaluate_one(
    pipeline: Any, batch: RawBatch
) -> tuple[pl.DataFrame, list[Quarantined], dict[str, pl.Series]] | None:
    """:meth:`Pipeline.evaluate` of a one-line batch, or None when the batch path must do it."""
    scorer = scorer_for(pipeline)
    line, position = batch.lines[0], batch.positions[0]
    got = scorer.fast_decoder().row(line, pipeline.watermark)
    if got is None:
        return None
    row = _row(pipeline, 0, got, line, position)
    full, _, flags = scorer.scored_frame([row])
    fired = {
        r.name: pl.Series("f", [bool(f[0])], dtype=pl.Boolean)
        for r, f in zip(pipeline.rules, flags, strict=True)
    }
    return full, [], fired
