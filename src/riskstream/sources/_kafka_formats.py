"""Batch helpers of the Kafka source: Avro -> JSON bytes, and the event-time filter of replays."""

from __future__ import annotations

import decimal
import io
from pathlib import Path
from typing import Any

import msgspec
import orjson
import polars as pl

# The decoder's accepted ISO-8601 layouts: the replay filter must read times exactly as it does.
from riskstream.core.events import time_expr as _time_expr
from riskstream.errors import SourceError


class AvroToJson:
    """Decodes schemaless Avro values (one record per message) into JSON object bytes.

    The decoder downstream then sees ordinary JSON lines. A value that does not decode
    is passed on unchanged, so it is quarantined (as not JSON) with its position instead of
    stopping the run. ``confluent_header`` strips the 5-byte Schema Registry framing
    (magic byte 0 + schema id); the schema file must then match the writer's schema.
    """

    def __init__(self, schema_path: str | Path, *, confluent_header: bool = False) -> None:
        import fastavro

        path = Path(schema_path).expanduser()
        if not path.is_file():
            raise SourceError(f"source.avro_schema: no such file {str(path)!r}")
        try:
            self.schema = fastavro.schema.load_schema(str(path))
        except Exception as exc:  # fastavro raises SchemaParseException, JSON errors, KeyError ...
            raise SourceError(f"source.avro_schema: {path}: {exc}") from None
        self._read = fastavro.schemaless_reader
        self._skip = 5 if confluent_header else 0
        self.failed = 0

    def convert(self, values: list[bytes]) -> list[bytes]:
        """One JSON object per value, in order."""
        out: list[bytes] = []
        read, schema, skip = self._read, self.schema, self._skip
        for value in values:
            try:
                if skip and (len(value) < skip or value[0] != 0):
                    raise ValueError("no Schema Registry header")
                record = read(io.BytesIO(value[skip:] if skip else value), schema, None)
                out.append(orjson.dumps(record, default=_json_default, option=orjson.OPT_UTC_Z))
            except Exception:  # truncated or foreign bytes: the decoder quarantines them
                self.failed += 1
                out.append(value)
        return out


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1")  # Avro's own JSON encoding of bytes
    if isinstance(value, memoryview):
        return bytes(value).decode("latin-1")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class TimeFilter:
    """Keeps events whose event time is in ``[from_ms, to_ms)`` (either bound may be open).

    Only the time field is read (one vectorised ``read_ndjson`` of that column per batch;
    a per-line fallback when some line is not a JSON object). An event whose time cannot be
    read is kept: the decoder quarantines it with the reason.
    """

    def __init__(self, time_field: str, from_ms: int | None, to_ms: int | None) -> None:
        self.field = time_field
        self.from_ms = from_ms
        self.to_ms = to_ms
        self._schema: dict[str, pl.DataType] = {time_field: pl.String()}
        self._decoder = msgspec.json.Decoder()
        self.skipped = 0

    def times(self, lines: list[bytes]) -> pl.Series:
        """Event time in epoch ms per line (null when unreadable), parsed as the decoder does."""
        frame: pl.DataFrame | None = None
        if all(line.strip() for line in lines):
            try:
                frame = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=self._schema)
            except Exception:  # Polars' ComputeError & co. for a line that is not an object
                frame = None
            if frame is not None and frame.height != len(lines):
                frame = None
        if frame is None:
            frame = pl.DataFrame({self.field: [self._one(line) for line in lines]}, self._schema)
        return frame.select(time_expr(self.field).alias("t"))["t"]

    def _one(self, line: bytes) -> str | None:
        try:
            obj = self._decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if not isinstance(obj, dict):
            return None
        t = obj.get(self.field)
        if isinstance(t, bool) or not isinstance(t, int | float | str):
            return None
        return str(t)

    def keep(self, lines: list[bytes]) -> list[int] | None:
        """Indexes of the lines to keep, or None when every line is kept."""
        if not lines or (self.from_ms is None and self.to_ms is None):
            return None
        t = pl.col("t")
        inside = pl.lit(True)
        if self.from_ms is not None:
            inside = inside & (t >= self.from_ms)
        if self.to_ms is not None:
            inside = inside & (t < self.to_ms)
        mask = self.times(lines).to_frame().select((t.is_null() | inside).alias("k"))["k"].to_list()
        if all(mask):
            return None
        kept = [i for i, k in enumerate(mask) if k]
        self.skipped += len(lines) - len(kept)
        return kept


def time_expr(field: str) -> pl.Expr:
    """Epoch ms from a String column: a number (ms, floored) or one of the ISO-8601 layouts (UTC)."""
    return _time_expr(pl.col(field))
