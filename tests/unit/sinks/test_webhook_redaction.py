"""Issue 12.7: a webhook sink is named without the credentials of its URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskstream.errors import SinkError
from riskstream.sinks.factory import build_sink
from riskstream.sinks.webhook import WebhookSink, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@h.example/x?token=abc&b=2", "https://***@h.example/x?token=***&b=***"),
        ("https://h.example:8443/hook", "https://h.example:8443/hook"),
        ("https://onlyuser@h.example/", "https://***@h.example/"),
        ("http://h.example/p?secretvalue", "http://h.example/p?***"),
        ("http://h.example/p#frag-token", "http://h.example/p#***"),
        # Slack and Discord put the credential in the path.
        (
            "https://hooks.slack.com/services/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",
            "https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/***",
        ),
        (
            "https://discord.com/api/webhooks/123456789012345678/"
            "Ab3dEfGh1jKlMn0pQrStUvWxYz_-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab",
            "https://discord.com/api/webhooks/123456789012345678/***",
        ),
        # Readable names stay readable, however long.
        (
            "https://risk.example/v1/cases/incoming-webhook",
            "https://risk.example/v1/cases/incoming-webhook",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_sink_name_and_errors_hide_credentials(tmp_path: Path) -> None:
    url = "http://bob:hunter2-pw@127.0.0.1:9/hook?api_key=k-secret-99"
    sink = WebhookSink(url, dead_letter_path=tmp_path / "dead.jsonl")
    try:
        assert sink.name == "webhook:http://***@127.0.0.1:9/hook?api_key=***"
        assert "hunter2-pw" not in sink.scrub(f"ConnectError: cannot reach {url}")
        assert "k-secret-99" not in sink.scrub("Invalid header k-secret-99")
    finally:
        sink.close()
    token = "xK9pL2mQ7rT4vW8yZ1aB3cD5"
    sink = WebhookSink(
        f"http://127.0.0.1:9/services/T0/B0/{token}", dead_letter_path=tmp_path / "d2"
    )
    try:
        assert token not in sink.name
        assert token not in sink.scrub(f"ConnectError: POST /services/T0/B0/{token} failed")
    finally:
        sink.close()
    with pytest.raises(SinkError) as err:
        build_sink({"kind": "webhook", "url": url, "timeout": -1}, tmp_path, "p")
    assert "hunter2-pw" not in str(err.value) and "k-secret-99" not in str(err.value)


def test_a_mark_stored_under_the_old_name_is_moved(tmp_path: Path) -> None:
    from riskstream.store.duckdb import Store

    store = Store(tmp_path / "data")
    old = "webhook:http://bob:hunter2-pw@h/x"
    new = "webhook:http://***@h/x"
    with store.connect() as con:
        con.execute("INSERT INTO sink_marks VALUES (?, ?)", [old, 41])
    store.rename_sink_mark(old, new)
    assert store.sink_marks() == {new: 41}
