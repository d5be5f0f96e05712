"""Kafka source helpers without a broker: timestamp alignment, replay time filter, Avro to JSON."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import time
from pathlib import Path

import fastavro
import pytest

from riskstream.errors import SourceError
from riskstream.kafka.config import client_config, part_name, split_part
from riskstream.sources._kafka_align import Aligner
from riskstream.sources._kafka_formats import AvroToJson, TimeFilter


def test_aligner_merges_by_timestamp_and_keeps_each_partition_in_order() -> None:
    al = Aligner()
    for off, ts in enumerate([10, 30, 20, 50]):  # not sorted within the partition
        al.add("t/0", ts, off, f"a{off}".encode())
    for off, ts in enumerate([15, 25, 60]):
        al.add("t/1", ts, off, f"b{off}".encode())
    al.at_end("t/0")
    al.at_end("t/1")
    out = al.take(100, {"t/0", "t/1"})
    assert [v for _, (_, _, v) in out] == [b"a0", b"b0", b"b1", b"a1", b"a2", b"a3", b"b2"]
    assert [o for p, (_, o, _) in out if p == "t/0"] == [0, 1, 2, 3]


def test_aligner_waits_for_a_partition_that_is_behind() -> None:
    al = Aligner(wait_s=60)
    al.add("t/0", 100, 0, b"x")
    al.add("t/0", 200, 1, b"y")
    assert al.take(10, {"t/0", "t/1"}) == []  # t/1 has not delivered yet: it may hold older events
    al.add("t/1", 150, 0, b"z")
    out = al.take(10, {"t/0", "t/1"})
    # t/1 is empty again after its 150: nothing newer than 150 leaves until it delivers more.
    assert [v for _, (_, _, v) in out] == [b"x", b"z"]
    al.at_end("t/1")  # ... or until it is known to be at its end
    assert [v for _, (_, _, v) in al.take(10, {"t/0", "t/1"})] == [b"y"]


def test_aligner_stops_waiting_for_a_silent_partition() -> None:
    al = Aligner(wait_s=0.05)
    al.add("t/0", 100, 0, b"x")
    assert al.take(10, {"t/0", "t/1"}) == []
    time.sleep(0.1)
    assert len(al.take(10, {"t/0", "t/1"})) == 1
    al.drop(["t/0"])
    assert al.size("t/0") == 0


def test_aligner_respects_max_items() -> None:
    al = Aligner()
    for i in range(10):
        al.add("t/0", i, i, b"")
    al.at_end("t/0")
    assert len(al.take(4, {"t/0"})) == 4
    assert al.size("t/0") == 6


def test_time_filter_reads_times_like_the_decoder() -> None:
    lines = [
        b'{"ts": 1000, "a": 1}',
        b'{"ts": 1999.9}',
        b'{"ts": "1970-01-01T00:00:02.500Z"}',
        b'{"ts": "1970-01-01T00:00:03Z"}',
        b'{"ts": "noon"}',
        b'{"other": 1}',
    ]
    f = TimeFilter("ts", 1500, 2600)
    assert f.times(lines).to_list() == [1000, 1999, 2500, 3000, None, None]
    # Outside [from, to) dropped; unreadable times kept for the decoder to quarantine.
    assert f.keep(lines) == [1, 2, 4, 5]
    assert f.skipped == 2


def test_time_filter_falls_back_per_line_on_bad_json() -> None:
    f = TimeFilter("ts", None, 2000)
    lines = [b"not json", b"[1, 2]", b"", b'{"ts": 5000}', b'{"ts": 10}']
    assert f.keep(lines) == [0, 1, 2, 4]
    assert TimeFilter("ts", None, None).keep(lines) is None


SCHEMA = {
    "type": "record",
    "name": "P",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "blob", "type": "bytes"},
        {"name": "tag", "type": ["null", "string"], "default": None},
    ],
}


def _encode(record: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMA), record)
    return buf.getvalue()


def test_avro_to_json(tmp_path: Path) -> None:
    path = tmp_path / "p.avsc"
    path.write_text(json.dumps(SCHEMA))
    conv = AvroToJson(path)
    when = dt.datetime(2026, 1, 5, 8, 0, 0, 123000, tzinfo=dt.UTC)
    good = _encode(
        {
            "id": "e1",
            "t": when,
            "amount": decimal.Decimal("12.34"),
            "blob": b"\x00\xff",
            "tag": None,
        }
    )
    out = conv.convert([good, b"\x09garbage"])
    assert json.loads(out[0]) == {
        "id": "e1",
        "t": "2026-01-05T08:00:00.123000Z",
        "amount": 12.34,
        "blob": "\x00\xff",
        "tag": None,
    }
    assert out[1] == b"\x09garbage" and conv.failed == 1  # passed on: the decoder quarantines it
    framed = AvroToJson(path, confluent_header=True)
    got = framed.convert([b"\x00\x00\x00\x00\x07" + good, good])
    assert json.loads(got[0])["id"] == "e1" and got[1] == good


def test_avro_schema_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        AvroToJson(tmp_path / "missing.avsc")
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
    with pytest.raises(SourceError, match="avro_schema"):
        AvroToJson(bad)


def test_client_config_passes_kafka_settings_and_reads_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KPASS", "s3cret")
    conf = client_config(
        "b:9092",
        {
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.password_env": "KPASS",
            "dead_letter_topic": "x",
        },
        error=SourceError,
    )
    assert conf == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "s3cret",
    }
    with pytest.raises(SourceError, match="NOPE"):
        client_config("b:9092", {"kafka.sasl.password_env": "NOPE"}, error=SourceError)
    with pytest.raises(SourceError, match="brokers"):
        client_config(None, {}, error=SourceError)
    assert split_part(part_name("pay.ments-1", 12)) == ("pay.ments-1", 12)
