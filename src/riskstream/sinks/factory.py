"""Build a sink from one entry of a spec's ``sinks:`` list, checking its kind-specific keys."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riskstream import __version__
from riskstream.core.tiers import parse_duration
from riskstream.errors import SinkError
from riskstream.sinks.base import Sink
from riskstream.sinks.file import FileSink
from riskstream.sinks.stdout import StdoutSink
from riskstream.sinks.webhook import WebhookSink, redact_url

_KEYS: dict[str, frozenset[str]] = {
    "file": frozenset({"path"}),
    "stdout": frozenset(),
    "webhook": frozenset(
        {
            "url",
            "secret_env",
            "timeout",
            "concurrency",
            "queue_size",
            "max_attempts",
            "dead_letter",
            "delivery_log",
        }
    ),
}


def build_sink(
    spec: Mapping[str, Any], data_dir: Path, pipeline: str, *, resume_seq: int = 0
) -> Sink:
    """The sink for ``spec`` (``{kind: file|stdout|webhook, ...}``); SinkError with one line if not.

    ``resume_seq`` is the mark the engine persisted for this sink (see ``Sink.delivered_seq``).
    Relative paths are relative to the current directory; the webhook's dead-letter file and
    delivery log default to ``data_dir``.
    """
    kind = spec.get("kind")
    if kind == "kafka":
        return _build_kafka(spec, data_dir, pipeline)
    if kind not in _KEYS:
        raise SinkError(f"unknown sink kind {kind!r} (expected file, stdout, webhook or kafka)")
    unknown = sorted(set(spec) - _KEYS[kind] - {"kind"})
    if unknown:
        allowed = ", ".join(sorted(_KEYS[kind])) or "none"
        raise SinkError(f"{kind} sink: unknown key {unknown[0]!r} (allowed: {allowed})")
    if kind == "file":
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise SinkError("file sink: 'path' must be a file path")
        return FileSink(path, resume_seq)  # the name keeps the spec's text
    if kind == "stdout":
        return StdoutSink(resume_seq=resume_seq)
    return _build_webhook(spec, data_dir, pipeline, resume_seq)


def _build_webhook(
    spec: Mapping[str, Any], data_dir: Path, pipeline: str, resume_seq: int
) -> WebhookSink:
    """A webhook sink; the secret comes from the environment variable named by ``secret_env``."""
    raw = spec.get("url")
    if not isinstance(raw, str) or not raw:
        raise SinkError("webhook sink: 'url' is required (https://...)")
    url = redact_url(raw)  # for messages: credentials never shown
    secret: bytes | None = None
    secret_env = spec.get("secret_env")
    if secret_env is not None:
        if not isinstance(secret_env, str) or not secret_env:
            raise SinkError(f"webhook sink {url}: 'secret_env' must name an environment variable")
        value = os.environ.get(secret_env)
        if not value:
            raise SinkError(
                f"webhook sink {url}: environment variable {secret_env} (secret_env) is not set"
            )
        secret = value.encode()
    return WebhookSink(
        raw,
        secret,
        timeout_s=_seconds(spec.get("timeout", 5.0), url),
        concurrency=_positive_int(spec.get("concurrency", 4), "concurrency", url),
        queue_size=_positive_int(spec.get("queue_size", 1000), "queue_size", url),
        max_attempts=(
            None
            if spec.get("max_attempts") is None
            else _positive_int(spec["max_attempts"], "max_attempts", url)
        ),
        dead_letter_path=_path(spec, "dead_letter", url, data_dir / "webhook-dead-letter.jsonl"),
        delivery_log_path=_path(spec, "delivery_log", url, data_dir / "webhook-deliveries.jsonl"),
        resume_seq=resume_seq,
        user_agent=f"riskstream/{__version__} ({pipeline})",
    )


def _build_kafka(spec: Mapping[str, Any], data_dir: Path, pipeline: str) -> Sink:
    """Delegate to ``riskstream.sinks.kafka.build_kafka_sink`` (kept apart: it needs librdkafka)."""
    try:
        module = importlib.import_module("riskstream.sinks.kafka")
        builder = module.build_kafka_sink
    except (ImportError, AttributeError) as exc:
        raise SinkError(f"kafka sink is not available: {exc}") from None
    sink: Sink = builder(spec, data_dir, pipeline)
    return sink


def _path(spec: Mapping[str, Any], key: str, where: str, default: Path | None = None) -> Path:
    """A path option (``~`` expanded); required when there is no default."""
    value = spec.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, str | Path) or not str(value):
        raise SinkError(f"{where} sink: '{key}' must be a file path")
    return Path(value).expanduser()


def _seconds(value: Any, where: str) -> float:
    """A timeout given as seconds (``5``, ``0.5``) or a duration (``5s``, ``500ms``)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value) / 1000.0
        except ValueError as exc:
            raise SinkError(f"webhook sink {where}: timeout: {exc}") from None
    raise SinkError(f"webhook sink {where}: timeout must be positive seconds or a duration like 5s")


def _positive_int(value: Any, key: str, where: str) -> int:
    """A positive integer option (``true`` is not 1)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise SinkError(f"webhook sink {where}: {key} must be a positive integer, got {value!r}")
