"""API key configuration, lookup, scopes and masking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import HTTPException

from riskstream.api.auth import (
    OPEN_SCOPES,
    KeyConfigError,
    KeyRing,
    Principal,
    authorize,
    mask,
    masked,
)
from riskstream.errors import UsageError


def test_parse_inline_keys() -> None:
    ring = KeyRing.parse("k1=read+decide, k2=analyst")
    assert not ring.open
    assert ring.lookup("k1") == Principal("key1", frozenset({"read", "decide"}))
    assert ring.lookup("k2") == Principal("key2", frozenset({"analyst"}))
    assert ring.lookup("k3") is None
    assert ring.lookup(None) is None and ring.lookup("") is None


def test_keys_file_and_env_merge(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# analysts\nk1 = analyst\n\nk9=read+sensitive\n")
    ring = KeyRing.from_env(
        {"RISKSTREAM_API_KEYS": "k1=read", "RISKSTREAM_API_KEYS_FILE": str(path)}
    )
    assert ring.lookup("k1") is not None and ring.lookup("k1").scopes == {"read", "analyst"}  # type: ignore[union-attr]
    assert ring.lookup("k9").sensitive  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1", "expected key=scope1+scope2"),
        ("=read", "expected key=scope1+scope2"),
        ("k1=", "expected key=scope1+scope2"),
        ("k1=read+admin", "unknown scope 'admin'"),
    ],
)
def test_bad_config_is_one_line_without_the_key(text: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=re.escape(message)) as err:
        KeyRing.parse(text)
    assert isinstance(err.value, UsageError)
    assert "k1" not in str(err.value)


def test_missing_keys_file(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="cannot read RISKSTREAM_API_KEYS_FILE"):
        KeyRing.from_env({"RISKSTREAM_API_KEYS_FILE": str(tmp_path / "nope")})


def test_open_ring_grants_all_but_sensitive() -> None:
    ring = KeyRing.from_env({})
    assert ring.open
    who = ring.lookup(None)
    assert who is not None and who.scopes == OPEN_SCOPES and not who.sensitive


def test_authorize_401_403() -> None:
    ring = KeyRing.parse("k1=read")
    assert authorize(ring, "k1", "read").label == "key1"
    with pytest.raises(HTTPException) as e401:
        authorize(ring, None, "read")
    assert e401.value.status_code == 401 and e401.value.detail == "missing API key"
    with pytest.raises(HTTPException) as bad:
        authorize(ring, "k2", "read")
    assert bad.value.status_code == 401 and bad.value.detail == "unknown API key"
    with pytest.raises(HTTPException) as e403:
        authorize(ring, "k1", "decide")
    assert e403.value.status_code == 403


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("4111111111111234", "************1234"),
        (4111111111111234, "************1234"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("", ""),
        (None, None),
    ],
)
def test_mask(value: object, shown: object) -> None:
    assert mask(value) == shown


def test_masked_copies_and_respects_scope() -> None:
    event = {"card_number": "4111111111111234", "amount": 3}
    plain = Principal("a", frozenset({"read"}))
    full = Principal("b", frozenset({"read", "sensitive"}))
    assert masked(event, ["card_number", "iban"], plain) == {
        "card_number": "************1234",
        "amount": 3,
    }
    assert masked(event, ["card_number"], full) == event
    assert event["card_number"] == "4111111111111234"  # the original is untouched
