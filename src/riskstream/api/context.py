"""What the API serves: the spec, the store, the live engine (optional) and the API keys."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException

from riskstream.api.auth import KeyRing
from riskstream.runners.live import LiveEngine
from riskstream.spec.model import PipelineSpec
from riskstream.store.protocol import Store

#: Serializes the API's store connections when no engine (and its lock) is in the process.
_STORE_LOCK = threading.RLock()


def _no_log(msg: str) -> None:
    """Discard a log line."""


@dataclass
class ApiContext:
    """Everything the routes need; ``engine=None`` serves a store read-only (no decide/ingest)."""

    spec: PipelineSpec
    data_dir: Path
    store: Store
    engine: LiveEngine | None = None
    keys: KeyRing = field(default_factory=KeyRing)
    log: Callable[[str], None] = _no_log
    #: Score concurrent decide requests together (same answers, far higher throughput).
    decide_batching: bool = True

    @property
    def sensitive(self) -> list[str]:
        """Event fields masked for keys without the ``sensitive`` scope."""
        return list(self.spec.event.sensitive)

    def live_spec(self) -> PipelineSpec:
        """The spec in force (the engine's, which follows live reloads of rules and lists)."""
        return self.engine.spec if self.engine is not None else self.spec

    @contextmanager
    def engine_lock(self) -> Iterator[None]:
        """Hold this before touching the store or reading engine state.

        With an engine it holds the engine still (``LiveEngine.settled``): engine state and
        store then agree, and no DuckDB connection of the API opens or closes while a
        checkpoint's does (DuckDB refuses two instances of one file in a process: "Unique
        file handle conflict"). Refuses (503) while the engine is still recovering from the
        store.
        """
        if self.engine is None:
            with _STORE_LOCK:
                yield
            return
        with self.engine.settled():
            if self.engine.state == "starting":
                raise HTTPException(
                    503, "the engine is starting (recovering from the store); try again shortly"
                )
            yield


def engine_state(engine: LiveEngine | None) -> str:
    """``none``, ``starting`` (not recovered yet), ``running`` or ``finished``."""
    return "none" if engine is None else engine.state
