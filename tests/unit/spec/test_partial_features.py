"""``validate`` says which rule features would be partial with several engines."""

from __future__ import annotations

import pytest

from riskstream.errors import SpecError
from riskstream.spec.check import check_spec, partial_features
from riskstream.spec.load import parse_spec

BASE = """
name: p
event: {fields: {card_id: str, merchant_id: str, amount: float}}
metrics:
  card: {dimension: [card_id], value: amount, stats: [count, sum]}
  merchant: {dimension: [merchant_id], stats: [count]}
  pair: {dimension: [card_id, merchant_id], stats: [count]}
rules:
  a: {when: card.count(1m) > 3}
  b: {when: merchant.count(5m) > 100 and card.sum(1h) > 10}
  c: {when: pair.count(1m) > 2}
"""


def test_features_keyed_by_the_partition_key_are_exact() -> None:
    spec = parse_spec(BASE.replace("name: p", "name: p\nsource: {kind: file, key: card_id}"))
    lines = partial_features(spec)
    assert len(lines) == 2
    assert lines[0].startswith("rules.b: merchant.count(5m) is partial")
    assert "keyed by merchant_id, the source is partitioned by card_id" in lines[0]
    assert lines[1].startswith("rules.c: pair.count(1m) is partial")
    assert "keyed by card_id+merchant_id" in lines[1]


def test_without_a_partition_key_every_feature_may_be_partial() -> None:
    lines = partial_features(parse_spec(BASE))
    assert [line.split(":")[0] for line in lines] == ["rules.a", "rules.b", "rules.b", "rules.c"]
    assert all("source.key is not set" in line for line in lines)


def test_an_unknown_partition_key_names_the_path() -> None:
    spec = parse_spec(BASE.replace("name: p", "name: p\nsource: {kind: file, key: crd}"))
    with pytest.raises(SpecError, match=r"^source\.key: unknown field 'crd'"):
        check_spec(spec)


def test_store_block_defaults_to_duckdb_and_refuses_unknown_kinds() -> None:
    assert parse_spec(BASE).store.kind == "duckdb"
    spec = parse_spec(BASE + "store: {kind: postgres, schema: risk_1}\n")
    assert (spec.store.kind, spec.store.dsn_env, spec.store.schema_) == (
        "postgres",
        "RISKSTREAM_PG_DSN",
        "risk_1",
    )
    with pytest.raises(SpecError, match=r"store\.kind"):
        parse_spec(BASE + "store: {kind: mysql}\n")
    with pytest.raises(SpecError, match=r"store\.schema"):
        parse_spec(BASE + "store: {kind: postgres, schema: 'x; drop'}\n")
