"""Decode one event line with msgspec into the very row the batch decoder would make of it.

Only lines the batch :class:`~riskstream.engine.decode.Decoder` decodes without trouble are
taken, with the decoder's own rules (field types by :func:`~riskstream.engine.decode.field_problem`,
lateness, ``max_future``, year 1, depth, repeated keys): integer or finite float times, values of
the declared types, field text formatted as Polars formats it. Anything else (ISO times, a value
of the wrong type, a late event, odd bytes) is left to the batch path, so quarantine reasons and
every edge case stay the decoder's.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from riskstream.engine import guard
from riskstream.engine.decode import MIN_TIME_MS, Decoder, field_problem

#: A decoded JSON scalar as the batch frame holds it.
Value = str | int | float | bool | bytes | None

_SAFE = 2**53
_I64 = 2**63


def polars_text(v: object) -> str | None:
    """``v`` as Polars' NDJSON reader puts a JSON scalar in a String column; None if unsure."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -_I64 <= v < _I64 else None
    if isinstance(v, float):
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
    ) -> tuple[dict[str, Value], int, str | None] | None:
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
        raw_t = obj.get(self.time_field)
        t = _time(raw_t)
        if t is None:
            return None  # ISO text, missing, null or odd: the decoder's business
        if d.too_late(t, watermark) or t > d.latest_time() or t < MIN_TIME_MS:
            return None  # quarantined as too late, too early or before year 1, by the decoder
        out: dict[str, Value] = {self.time_field: polars_text(raw_t)}
        for name, kind in self.fields:
            v = obj.get(name)
            if v is None:
                out[name] = None
                continue
            if field_problem(name, kind, v) is not None:
                return None  # quarantined as wrong_type, by the decoder
            value = _column_value(kind, v)
            if value is None:
                return None
            out[name] = value
        eid: str | None = None
        if d.id_field is not None:
            v = out[d.id_field]
            if v is not None:
                if self._id_kind not in ("str", "any", "int"):
                    return None  # a float or bool id: text as Polars casts it, not guessed here
                eid = str(v)
        return out, t, eid


def _time(raw: object) -> int | None:
    """Epoch ms of a numeric time the decoder floors exactly; None for anything else."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if -_SAFE <= raw <= _SAFE else None
    if isinstance(raw, float) and math.isfinite(raw) and -_SAFE <= raw <= _SAFE:
        return math.floor(raw)
    return None


def _column_value(kind: str, v: object) -> Value:
    """The non-null value of a field of declared ``kind`` (its type already checked) as the
    decoded frame holds it; None when the exact Polars value is not mirrored here."""
    if kind == "float":
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, int):
            return float(v) if -_SAFE <= v <= _SAFE else None
        return None
    if kind in ("int", "bool"):
        return v if isinstance(v, int) else None  # bool is an int too
    return polars_text(v)  # str / any: a String column
