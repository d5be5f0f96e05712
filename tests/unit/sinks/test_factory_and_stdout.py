"""build_sink: kinds, defaults and one-line errors; StdoutSink lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from riskstream.errors import SinkError
from riskstream.sinks.base import HasStats
from riskstream.sinks.factory import build_sink
from riskstream.sinks.file import FileSink
from riskstream.sinks.stdout import StdoutSink
from riskstream.sinks.webhook import WebhookSink

from ._cases import make_cases


def test_file_sink_path_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = build_sink({"kind": "file", "path": "out/cases.jsonl"}, tmp_path / "data", "p")
    assert isinstance(sink, FileSink) and sink.name == "file:out/cases.jsonl"
    sink.deliver(make_cases([1]))
    sink.close()
    assert (tmp_path / "out" / "cases.jsonl").read_bytes() == make_cases([1])[0].body() + b"\n"


def test_file_sink_resume_seq_is_passed_through(tmp_path: Path) -> None:
    sink = build_sink(
        {"kind": "file", "path": str(tmp_path / "c.jsonl")}, tmp_path, "p", resume_seq=7
    )
    assert sink.delivered_seq() == 7
    sink.close()


def test_webhook_defaults_and_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "abc")
    spec = {
        "kind": "webhook",
        "url": "https://cases.example/api",
        "secret_env": "HOOK_SECRET",
        "timeout": "500ms",
        "concurrency": 2,
    }
    sink = build_sink(spec, tmp_path, "payments-risk")
    try:
        assert isinstance(sink, WebhookSink) and sink.name == "webhook:https://cases.example/api"
        assert sink._secret == b"abc" and sink._timeout_s == 0.5 and len(sink._workers) == 2
        assert sink._dead.path == tmp_path / "webhook-dead-letter.jsonl"
        assert sink._log is not None and sink._log.path == tmp_path / "webhook-deliveries.jsonl"
        assert "payments-risk" in sink._headers["User-Agent"]
        assert isinstance(sink, HasStats)
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kind": "webhook", "url": "https://x/y", "secret_env": "NO_SUCH_VAR_RS"},
            r"environment variable NO_SUCH_VAR_RS \(secret_env\) is not set",
        ),
        ({"kind": "webhook"}, "'url' is required"),
        ({"kind": "webhook", "url": "https://x/y", "timeout": "soon"}, "timeout: bad duration"),
        ({"kind": "webhook", "url": "https://x/y", "timeout": -1}, "timeout must be positive"),
        ({"kind": "webhook", "url": "https://x/y", "concurrency": True}, "concurrency must be"),
        ({"kind": "webhook", "url": "https://x/y", "secret-env": "X"}, "unknown key 'secret-env'"),
        ({"kind": "file"}, "'path' must be a file path"),
        ({"kind": "stdout", "path": "x"}, "unknown key 'path' \\(allowed: none\\)"),
        ({"kind": "email"}, "unknown sink kind 'email'"),
    ],
)
def test_bad_specs_are_one_line_sink_errors(
    tmp_path: Path, spec: dict[str, object], message: str
) -> None:
    with pytest.raises(SinkError, match=message) as info:
        build_sink(spec, tmp_path, "p")
    assert "\n" not in str(info.value)


def test_stdout_sink_writes_lines(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = build_sink({"kind": "stdout"}, Path("."), "p")
    cases = make_cases([3, 4])
    sink.deliver(cases)
    sink.close()
    assert capsysbinary.readouterr().out == b"".join(c.body() + b"\n" for c in cases)
    assert sink.delivered_seq() == 4


def test_stdout_sink_to_a_stream() -> None:
    buf = io.BytesIO()
    sink = StdoutSink(buf)
    sink.deliver([])
    assert sink.delivered_seq() == 0
    sink.deliver(make_cases([9]))
    assert buf.getvalue().count(b"\n") == 1 and sink.stats().delivered == 1
