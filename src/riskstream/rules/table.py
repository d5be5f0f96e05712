"""The operator table both rule backends are generated from: operators plus named functions.

``OPS[name]`` is an :class:`~riskstream.rules.ops.Op`: typing rule, Polars form, Python form.
"""

from __future__ import annotations

from riskstream.rules.functions import FUNCTIONS
from riskstream.rules.ops import OPERATORS, Op

#: Every operator and function of the language, by the name a typed node's ``op`` holds.
OPS: dict[str, Op] = {**OPERATORS, **FUNCTIONS}
