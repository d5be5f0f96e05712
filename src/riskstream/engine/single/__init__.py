"""Score a few events against the live state, each one alone: the ``POST /v1/decide`` fast path.

:meth:`Pipeline.evaluate` on a batch pays fixed Polars costs sized for 20k-row batches (eight
ISO formats tried on every time, joins, sorts, prefix sums): about 10 ms even for one event.
Here each event is scored as if it were a batch of its own, in three steps:

1. **decode** (:mod:`.fastdecode`) with msgspec, taking only what the batch decoder would
   decode to the very same row, by the decoder's own rules; anything else goes through the
   batch path alone, so quarantine reasons and every edge case stay the decoder's;
2. **features** (:mod:`.lookup`) per (metric, tier) group from the feature tails, by binary
   search on the key hash, each stat by its scalar form in :mod:`riskstream.core.stats`;
3. **metric inputs and rules** (:mod:`.plan`, :mod:`.scorer`) by the rules' plain-Python
   backend when the spec is covered, else by the Polars expressions over one frame holding all
   the events of the call.

The pipeline is read through the :class:`~.view.ScoringView` protocol only. Equality with the
batch path is property-tested (``tests/unit/engine/test_single.py``).
"""

from __future__ import annotations

from riskstream.engine.single.fastdecode import FastDecoder
from riskstream.engine.single.scorer import EventScore, SingleScorer, evaluate_one, scorer_for
from riskstream.engine.single.view import ScoringView

__all__ = ["EventScore", "FastDecoder", "ScoringView", "SingleScorer", "evaluate_one", "scorer_for"]
