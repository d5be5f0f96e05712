"""Raw event bytes -> a typed Polars batch; malformed events -> quarantine records.

Fast path: one ``polars.read_ndjson`` over the whole batch with an explicit schema
(strict for numbers and booleans). Only when that fails (rare: some line is bad)
does a per-line validator find the bad lines, which are quarantined, and the good
lines are parsed again in one call.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import polars as pl

from riskstream.core.events import RawBatch, iso_time_expr
from riskstream.engine import guard

#: Polars dtypes per declared field type; ``str``/``any`` accept any JSON value as text.
_DTYPES: dict[str, pl.DataType] = {
    "float": pl.Float64(),
    "int": pl.Int64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
    "any": pl.String(),
}


TIME = "_t"
SEQ = "_seq"
POS = "_pos"
RAW = "_raw"
EID = "_id"

#: Bytes of an oversized event kept in quarantine (with its full length in the detail).
PREFIX_BYTES = 4096
#: Earliest event time accepted (0001-01-01T00:00:00Z): bucket arithmetic stays far from overflow.
MIN_TIME_MS = -62_135_596_800_000
_I64 = 2**63


def wall_clock_ms() -> int:
    """The wall clock in epoch milliseconds (``event.max_future`` is measured from it)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Quarantined:
    """One rejected event: a reason code, a readable reason, where it came from, its bytes."""

    code: str
    reason: str
    position: str
    raw: bytes

    def record(self) -> dict[str, Any]:
        """The JSON line written to ``quarantine.jsonl``."""
        return {
            "reason": self.code,
            "detail": self.reason,
            "position": self.position,
            "raw": self.raw.decode("utf-8", errors="backslashreplace"),
        }


@dataclass
class Decoded:
    """A decoded batch: typed columns plus ``_t`` (ms), ``_seq``, ``_pos``, ``_raw``, ``_id``."""

    frame: pl.DataFrame
    quarantined: list[Quarantined]


class Decoder:
    """Decodes raw batches into the columns the pipeline reads (and only those)."""

    def __init__(
        self,
        *,
        time_field: str,
        id_field: str | None,
        fields: Mapping[str, str],
        max_bytes: int,
        max_lateness_ms: int,
        max_future_ms: int = 5 * 60_000,
        max_depth: int = 64,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.time_field = time_field
        self.id_field = id_field
        self.fields = {k: v for k, v in fields.items() if k != time_field}
        if id_field and id_field not in self.fields:
            self.fields[id_field] = "str"
        self.max_bytes = max_bytes
        self.max_lateness_ms = max_lateness_ms
        self.max_future_ms = max_future_ms
        self.max_depth = max_depth
        self.clock = clock
        self.schema: dict[str, pl.DataType] = {time_field: pl.String()}
        for name, kind in self.fields.items():
            self.schema[name] = _DTYPES[kind]
        self._decoder = msgspec.json.Decoder()

    def decode(self, batch: RawBatch, seq0: int, watermark: int | None) -> Decoded:
        """Decode ``batch``; ``seq0`` numbers events in ingestion order; ``watermark`` is the max time seen."""
        lines, positions = batch.lines, batch.positions
        bad: list[Quarantined] = []
        keep = list(range(len(lines)))
        cut = batch.truncated or {}
        if cut or (lines and max(map(len, lines)) > self.max_bytes):
            sizes = {i: cut.get(i, len(line)) for i, line in enumerate(lines)}
            keep = [i for i in keep if sizes[i] <= self.max_bytes]
            bad += [
                oversized(sizes[i], self.max_bytes, positions[i], lines[i])
                for i in range(len(lines))
                if sizes[i] > self.max_bytes
            ]
        hostile = guard.check([lines[i] for i in keep], self.max_depth)
        if hostile:
            bad += [
                Quarantined(*hostile[j], positions[keep[j]], lines[keep[j]])
                for j in sorted(hostile)
            ]
            keep = [i for j, i in enumerate(keep) if j not in hostile]
        frame = self._read(lines, keep)
        if frame is None:
            good: list[int] = []
            for i in keep:
                problem = self._validate(lines[i])
                if problem is None:
                    good.append(i)
                else:
                    bad.append(Quarantined(problem[0], problem[1], positions[i], lines[i]))
            keep = good
            frame = self._read(lines, keep)
            if frame is None:  # the validator and Polars disagree: fall back to one line at a time
                frame, keep, more = self._read_one_by_one(lines, positions, keep)
                bad += more
        frame = frame.with_columns(
            pl.Series(SEQ, np.asarray(keep, dtype=np.int64) + seq0, dtype=pl.Int64),
            pl.Series(POS, [positions[i] for i in keep], dtype=pl.String),
            pl.Series(RAW, [lines[i] for i in keep], dtype=pl.Binary),
        )
        frame, more_bad = self._times(frame, watermark)
        bad += more_bad
        return Decoded(frame, bad)

    def _read(self, lines: list[bytes], keep: list[int]) -> pl.DataFrame | None:
        if not keep:
            return pl.DataFrame(schema=self.schema)
        kept = lines if len(keep) == len(lines) else [lines[i] for i in keep]
        buf = b"\n".join(kept)
        if _has_blank(kept, buf):
            return (
                None  # empty lines would be skipped silently by Polars; let the validator see them
            )
        try:
            frame = pl.read_ndjson(io.BytesIO(buf), schema=self.schema)
        except Exception:  # Polars raises ComputeError/SchemaError subclasses for bad input
            return None
        return frame if frame.height == len(keep) else None

    def _read_one_by_one(
        self, lines: list[bytes], positions: list[str], keep: list[int]
    ) -> tuple[pl.DataFrame, list[int], list[Quarantined]]:
        frames, good, bad = [], [], []
        for i in keep:
            one = self._read(lines, [i]) if lines[i].strip() else None
            if one is None or one.height != 1:
                bad.append(
                    Quarantined("not_json", "not parsable as a JSON object", positions[i], lines[i])
                )
            else:
                frames.append(one)
                good.append(i)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=self.schema)
        return frame, good, bad

    def _validate(self, line: bytes) -> tuple[str, str] | None:
        if not line.strip():
            return "not_json", "empty line"
        try:
            obj = self._decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return "not_json", f"not JSON: {str(exc).splitlines()[0]}"
        if not isinstance(obj, dict):
            return "not_object", f"not a JSON object but {type(obj).__name__}"
        t = obj.get(self.time_field)
        if t is None:
            return "missing_time", f"missing time field {self.time_field!r}"
        if isinstance(t, bool) or not isinstance(t, int | float | str):
            return "bad_time", f"unparsable time {_short(t)}"
        for name, kind in self.fields.items():
            v = obj.get(name)
            if v is None:
                continue
            problem = field_problem(name, kind, v)
            if problem is not None:
                return "wrong_type", problem
        return None

    @property
    def frame_schema(self) -> dict[str, pl.DataType]:
        """Columns of a decoded frame, in order: the read fields, then ``_seq _pos _raw _t _id``."""
        return {
            **self.schema,
            SEQ: pl.Int64(),
            POS: pl.String(),
            RAW: pl.Binary(),
            TIME: pl.Int64(),
            EID: pl.String(),
        }

    def latest_time(self) -> int:
        """The latest event time accepted now (wall clock + ``max_future``); later is too early."""
        return self.clock() + self.max_future_ms

    def too_late(self, t: int, seen: int | None) -> bool:
        """Whether time ``t`` is older than ``max_lateness`` behind ``seen`` (the max time before it)."""
        return seen is not None and t < seen - self.max_lateness_ms

    def _times(
        self, frame: pl.DataFrame, watermark: int | None
    ) -> tuple[pl.DataFrame, list[Quarantined]]:
        raw_t = pl.col(self.time_field)
        as_number = raw_t.cast(pl.Float64, strict=False)
        numbers = frame.select(as_number.alias("n"))["n"]
        if not numbers.null_count() and numbers.is_finite().all():
            # Epoch milliseconds throughout (the common case): no ISO parsing at all.
            frame = frame.with_columns(numbers.floor().cast(pl.Int64, strict=False).alias(TIME))
            return self._ids_and_checks(frame, watermark)
        as_iso = iso_time_expr(raw_t)
        frame = frame.with_columns(
            pl.when(as_number.is_not_null() & as_number.is_finite())
            .then(as_number.floor().cast(pl.Int64, strict=False))
            .otherwise(as_iso)
            .alias(TIME)
        )
        return self._ids_and_checks(frame, watermark)

    def _ids_and_checks(
        self, frame: pl.DataFrame, watermark: int | None
    ) -> tuple[pl.DataFrame, list[Quarantined]]:
        id_expr = (
            pl.col(self.id_field).cast(pl.String) if self.id_field else pl.lit(None, pl.String)
        )
        frame = frame.with_columns(pl.coalesce([id_expr, pl.col(POS)]).alias(EID))
        bad: list[Quarantined] = []
        missing = frame.filter(pl.col(TIME).is_null())
        if missing.height:
            for row in missing.select(self.time_field, POS, RAW).iter_rows():
                code = "missing_time" if row[0] is None else "bad_time"
                why = (
                    f"missing time field {self.time_field!r}"
                    if row[0] is None
                    else f"unparsable time {_short(row[0])}"
                )
                bad.append(Quarantined(code, why, row[1], row[2]))
            frame = frame.filter(pl.col(TIME).is_not_null())
        # Too early: later than the wall clock + max_future (it would blind lateness for good),
        # or before year 1: such times never reach the watermark or the bucket arithmetic.
        latest = self.latest_time()
        early_mask = frame.select(
            ((pl.col(TIME) > latest) | (pl.col(TIME) < MIN_TIME_MS)).alias("e")
        )["e"]
        if early_mask.any():
            for pos, raw, t in frame.filter(early_mask).select(POS, RAW, TIME).iter_rows():
                if t > latest:
                    why = f"event time {t} is later than the wall clock + max_future ({latest})"
                    bad.append(Quarantined("too_early", why, pos, raw))
                else:
                    bad.append(
                        Quarantined("bad_time", f"event time {t} is before year 1", pos, raw)
                    )
            frame = frame.filter(~early_mask)
        # Lateness is judged against the max time seen before each event, in ingestion order.
        seen = pl.col(TIME).cum_max()
        if watermark is not None:
            seen = pl.max_horizontal(seen, pl.lit(watermark, pl.Int64))
        late_mask = frame.select((pl.col(TIME) < seen - self.max_lateness_ms).alias("late"))["late"]
        if late_mask.any():
            late = frame.filter(late_mask)
            for pos, raw, t in late.select(POS, RAW, TIME).iter_rows():
                bad.append(
                    Quarantined("too_late", f"event time {t} is older than max_lateness", pos, raw)
                )
            frame = frame.filter(~late_mask)
        return frame, bad


#: Bytes ``bytes.strip`` removes: a line made of them only is blank.
_BLANKS = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)


def _has_blank(lines: list[bytes], joined: bytes) -> bool:
    """Whether some line is empty or blanks only (``joined``: the lines joined by newlines).

    Vectorized: only lines that start with a blank byte get the exact ``strip`` test."""
    if not lines:
        return False
    lens = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    if not lens.min():
        return True
    starts = np.zeros(len(lines), dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=starts[1:])
    first = np.frombuffer(joined, dtype=np.uint8)[starts]
    suspect = np.flatnonzero(np.isin(first, _BLANKS))
    return any(not lines[i].strip() for i in suspect)


def field_problem(name: str, kind: str, v: object) -> str | None:
    """Why the non-null JSON value ``v`` does not fit field ``name`` of declared ``kind``, or None.

    The ``wrong_type`` detail of the batch decoder; the single-event decoder refuses the same values.
    """
    if kind == "float" and (isinstance(v, bool) or not isinstance(v, int | float)):
        return f"field {name!r} should be a number, got {_short(v)}"
    if kind == "int" and (isinstance(v, bool) or not isinstance(v, int)):
        return f"field {name!r} should be an integer, got {_short(v)}"
    if kind == "int" and not -_I64 <= v < _I64:  # type: ignore[operator]
        return f"field {name!r} is an integer beyond 64 bits: {_short(v)}"
    if kind == "bool" and not isinstance(v, bool):
        return f"field {name!r} should be true or false, got {_short(v)}"
    return None


def oversized(size: int, max_bytes: int, position: str, line: bytes) -> Quarantined:
    """An event over ``max_bytes``: quarantined with its first bytes and its full length."""
    kept = line[:PREFIX_BYTES]
    detail = f"event of {size} bytes exceeds max_bytes {max_bytes}"
    if len(kept) < size:
        detail += f" (first {len(kept)} bytes kept)"
    return Quarantined("oversized", detail, position, kept)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters (for ``unprocessable``)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def label_expr(field: str | None) -> pl.Expr:
    """0/1 from the event's label field (``true``/``false``/``1``/``0``), else null."""
    if field is None:
        return pl.lit(None, pl.Int8)
    text = pl.col(RAW).cast(pl.String).str.json_path_match(f"$.{field}").str.to_lowercase()
    return (
        pl.when(text.is_in(["true", "1", "1.0"]))
        .then(pl.lit(1, pl.Int8))
        .when(text.is_in(["false", "0", "0.0"]))
        .then(pl.lit(0, pl.Int8))
        .otherwise(pl.lit(None, pl.Int8))
    )
