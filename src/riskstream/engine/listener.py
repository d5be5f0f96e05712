"""What the pipeline tells an observer of its bucket state (the serving process's range index).

The engine cannot import the layers above it, so it declares the calls it makes; an
observer (``query.index.RangeIndex``) implements them. All calls come on the engine's
thread with the runner's lock held, in the order the state changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import polars as pl


class BatchListener(Protocol):
    """Told of each batch's metric contributions, each checkpoint and each state reload."""

    def batch(self, contributions: Mapping[str, pl.DataFrame]) -> None:
        """A batch was applied: per metric, its rows ``key``, ``_t`` (event ms), ``v``, ``c``."""
        ...

    def checkpointed(self, watermark: int | None) -> None:
        """A checkpoint was taken carrying ``watermark`` (None: the stored one is kept)."""
        ...

    def reset(self) -> None:
        """The state was reloaded from the store: forget everything derived so far."""
        ...
