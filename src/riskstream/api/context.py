"""What the API serves: the spec, the store, the live runner (optional) and the API keys."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from riskstream.api.auth import KeyRing
from riskstream.spec.model import PipelineSpec
from riskstream.store.protocol import Store

if TYPE_CHECKING:
    from riskstream.runners.embedded import EmbeddedRunner


#: Serializes the API's store connections when no runner (and its lock) is in the process.
_STORE_LOCK = threading.RLock()


def _no_log(msg: str) -> None:
    """Discard a log line."""


@dataclass
class ApiContext:
    """Everything the routes need; ``runner=None`` serves a store read-only (no decide/ingest)."""

    spec: PipelineSpec
    data_dir: Path
    store: Store
    runner: EmbeddedRunner | None = None
    keys: KeyRing = field(default_factory=KeyRing)
    log: Callable[[str], None] = _no_log
    #: Score concurrent decide requests together (same answers, far higher throughput).
    decide_batching: bool = True

    @property
    def sensitive(self) -> list[str]:
        """Event fields masked for keys without the ``sensitive`` scope."""
        return list(self.spec.event.sensitive)

    def live_spec(self) -> PipelineSpec:
        """The spec in force (the runner's, which follows live reloads of rules and lists)."""
        return self.runner.spec if self.runner is not None else self.spec

    @contextmanager
    def engine_lock(self) -> Iterator[None]:
        """Hold this before touching the store or reading engine state.

        With a runner it is the runner's lock: engine state and store then agree, and no
        DuckDB connection of the API opens or closes while a checkpoint's does (DuckDB
        refuses two instances of one file in a process: "Unique file handle conflict").
        Refuses (503) while the runner is still recovering from the store without its lock.
        """
        lock: Any = self.runner.lock if self.runner is not None else _STORE_LOCK
        with lock:
            if runner_state(self.runner) == "starting":
                raise HTTPException(
                    503, "the engine is starting (recovering from the store); try again shortly"
                )
            if self.runner is not None:
                # A checkpoint in flight is in neither the store nor the pending state yet.
                self.runner.writer.wait(reraise=False)
            yield


def runner_state(runner: EmbeddedRunner | None) -> str:
    """``none``, ``starting`` (not recovered yet), ``running`` or ``finished``."""
    if runner is None:
        return "none"
    flag = getattr(runner, "running", None)
    if isinstance(flag, bool):  # a future explicit flag wins over the heuristic below
        return (
            "running" if flag else ("finished" if runner.stats.finished is not None else "starting")
        )
    if runner.stats.finished is not None:
        return "finished"
    # ``positions`` is set once the runner has recovered its state from the store.
    return "running" if hasattr(runner, "positions") else "starting"
