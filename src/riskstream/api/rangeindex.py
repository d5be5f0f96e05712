"""The live engine's in-memory range index, as the API uses it (``query.index``).

Loaded once under the engine lock (store and pending state agree then) -- by a warm-up
thread as soon as the engine has recovered, or by the first query -- then read without
a lock. No engine, no index (turned off) or a metric it does not keep: the store answers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from riskstream.api.context import ApiContext
from riskstream.engine.decode import one_line


def from_index(ctx: ApiContext, metric: str, key: str, frm: int, to: int) -> dict[str, Any] | None:
    """The stitched answer from the engine's index, or None when the store must answer."""
    engine = ctx.engine
    if engine is None or engine.state == "starting":
        return None
    index = engine.range_index()
    if index is None or metric not in index.metrics:
        return None
    if not index.loaded:
        with ctx.engine_lock():
            if not index.loaded:
                index.load(ctx.store, engine.pending())
    return index.answer(metric, key, frm, to)


def warm(ctx: ApiContext, poll_s: float = 0.2) -> threading.Thread | None:
    """Load the index in a daemon thread once the engine has recovered (None: nothing to do)."""
    engine = ctx.engine
    index = engine.range_index() if engine is not None else None
    if engine is None or index is None or not index.metrics:
        return None

    def load() -> None:
        while engine.state == "starting":
            time.sleep(poll_s)
        started = time.perf_counter()
        try:
            with ctx.engine_lock():
                if not index.loaded:
                    index.load(ctx.store, engine.pending())
        except Exception as exc:  # queries load it again, or fall back to the store
            ctx.log(f"range index not loaded: {one_line(exc)}")
            return
        ms = (time.perf_counter() - started) * 1000
        ctx.log(f"range index loaded ({index.nbytes() / 2**20:.1f} MiB, {ms:.0f} ms)")

    thread = threading.Thread(target=load, name="range-index-warm", daemon=True)
    thread.start()
    return thread
