"""Score concurrent ``POST /v1/decide`` events together, each as if it were alone.

A worker thread drains the requests that arrived while it was busy and scores them in one
call of the single-event path (:mod:`riskstream.engine.single`): every event is scored
against the state alone (events never see each other), so sharing a call changes no
answer and pays the per-call costs once. ``?ingest=true`` items are scored and ingested
alone, in arrival order relative to the others.

:class:`Planner` is the older rule for which events may share one *batch*
``Pipeline.evaluate`` call and still get their alone answers (tests keep it honest):

* their keys differ for every metric a rule reads as a feature (features of an
  event include earlier rows of its key in the same batch), keys being compared
  as the engine makes them (strings; integers as their text; anything else solo);
* their event times are integers within ``max_lateness`` of each other (lateness is
  judged against the max time seen before each row, batch rows included).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from riskstream.core.case import Case
from riskstream.core.events import RawBatch
from riskstream.core.tiers import parse_duration
from riskstream.engine.decode import Quarantined
from riskstream.models.scoring import score_column
from riskstream.runners.live import LiveEngine

#: The strongest action wins.
ACTION_RANK: dict[str, int] = {"allow": 0, "tag": 1, "review": 2, "block": 3}
MAX_BATCH = 256
_SAFE_INT = 2**53
_positions = itertools.count(1)


class Quarantine(Exception):
    """The decoder refused the event (code and one-line reason)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Scored:
    """The decision on one event (plus the cases raised when it was ingested)."""

    body: dict[str, Any]
    cases: list[Case] = field(default_factory=list)


@dataclass
class Item:
    """One request waiting for the worker."""

    event: dict[str, Any]
    line: bytes
    ingest: bool
    future: Future[Scored] = field(default_factory=Future)
    position: str = field(default_factory=lambda: f"api#{next(_positions)}")


def _key_part(value: Any) -> str | None:
    """The engine's text for a dimension value; raises TypeError when unsure."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError("not batchable")


class Planner:
    """Splits drained items into groups that ``evaluate`` may score together."""

    def __init__(self, engine: LiveEngine) -> None:
        spec = engine.spec
        self.time_field = spec.event.time
        self.lateness = parse_duration(spec.event.max_lateness)
        used = engine.feature_metrics()  # rules' and models' features
        self.dims = {m: list(spec.metrics[m].dimension) for m in sorted(used) if m in spec.metrics}

    def keys(self, event: dict[str, Any]) -> list[tuple[str, str]] | None:
        """(metric, key) pairs the event's features read; None when it must be scored alone."""
        out: list[tuple[str, str]] = []
        try:
            for metric, dims in self.dims.items():
                parts = [_key_part(event.get(d)) for d in dims]
                if all(p is not None for p in parts):
                    out.append((metric, "|".join(p for p in parts if p is not None)))
        except TypeError:
            return None
        return out

    def plan(self, items: Sequence[Item]) -> list[list[Item]]:
        """Groups in a safe order: ingest items alone, in arrival order relative to the rest."""
        groups: list[list[Item]] = []
        open_groups: list[tuple[list[Item], set[tuple[str, str]], list[int]]] = []
        for item in items:
            t = item.event.get(self.time_field)
            keys = self.keys(item.event)
            if (
                item.ingest
                or keys is None
                or not isinstance(t, int)
                or isinstance(t, bool)
                or abs(t) > _SAFE_INT
            ):
                groups.append([item])
                open_groups = []  # later items must not be scored before an ingest
                continue
            for members, used, span in open_groups:
                lo, hi = min(span[0], t), max(span[1], t)
                if used.isdisjoint(keys) and hi - lo <= self.lateness:
                    members.append(item)
                    used.update(keys)
                    span[:] = [lo, hi]
                    break
            else:
                group: list[Item] = [item]
                groups.append(group)
                open_groups.append((group, set(keys), [t, t]))
        return groups


def score(
    engine: LiveEngine, id_field: str | None, items: Sequence[Item]
) -> list[Scored | Quarantine]:
    """Score each of ``items`` alone, in one call (the caller holds ``engine.locked()``); ingest
    when asked.

    The single-event path (:mod:`riskstream.engine.single`) answers exactly as
    ``Pipeline.evaluate`` on a one-event batch, so any items may share a call.
    """
    rules = engine.rules()
    models = engine.models()
    # Item.line is orjson's serialization of a dict: no repeated keys.
    results = engine.scorer().score(
        [it.line for it in items], [it.position for it in items], unique_keys=True
    )
    names = list(dict.fromkeys(name for rule in rules for name in rule.features))
    out: list[Scored | Quarantine] = []
    for result in results:
        if isinstance(result, Quarantined):
            out.append(Quarantine(result.code, result.reason))
            continue
        rules_fired: list[dict[str, Any]] = [
            {"rule": rule.name, "action": rule.action, "score": float(rule.score)}
            for rule, hit in zip(rules, result.fired, strict=True)
            if hit
        ]
        rules_fired.sort(key=lambda r: (-ACTION_RANK.get(r["action"], 0), -r["score"], r["rule"]))
        event_id = result.row.get(id_field) if id_field else None
        out.append(
            Scored(
                {
                    "event_id": None if event_id is None else str(event_id),
                    "action": rules_fired[0]["action"] if rules_fired else "allow",
                    "score": max((r["score"] for r in rules_fired), default=0.0),
                    "rules_fired": rules_fired,
                    "features": {n: result.features[n] for n in names if n in result.features},
                    "models": {m: result.row.get(score_column(m)) for m in models},
                    "ingested": False,
                }
            )
        )
    for it, done in zip(items, out, strict=True):
        if it.ingest and isinstance(done, Scored):
            done.cases = engine.ingest(RawBatch(lines=[it.line], positions=[it.position]))
            done.body["ingested"] = True
    return out


def runs(items: Sequence[Item]) -> list[list[Item]]:
    """Items in calls for :func:`score`: runs of scoring-only items, each ingest item alone."""
    groups: list[list[Item]] = []
    for item in items:
        if item.ingest or not groups or groups[-1][-1].ingest:
            groups.append([item])
        else:
            groups[-1].append(item)
    return groups


class DecideWorker:
    """A daemon thread scoring queued items in safe batches under the engine's lock."""

    def __init__(self, engine: LiveEngine, id_field: str | None, *, batching: bool = True) -> None:
        self.engine = engine
        self.id_field = id_field
        self.batching = batching
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="riskstream-decide", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Scored]:
        """Queue ``item``; its future resolves to :class:`Scored` or raises :class:`Quarantine`."""
        self._queue.put(item)
        return item.future

    def stop(self) -> None:
        """Finish queued work and end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = [first], False
            while self.batching and len(items) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            for group in runs(items):
                self._settle(group)
            if stop:
                return

    def _settle(self, group: list[Item]) -> None:
        try:
            with self.engine.locked():
                results = score(self.engine, self.id_field, group)
        except Exception as exc:
            if len(group) > 1:  # one odd event must not fail its neighbours: retry alone
                for item in group:
                    self._settle([item])
                return
            group[0].future.set_exception(exc)
            return
        for item, result in zip(group, results, strict=True):
            if isinstance(result, Quarantine):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
