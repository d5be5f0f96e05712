"""Build a source from the spec or a ``--source`` URI (file:, stdin:, generator:, kafka://)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from riskstream.errors import UsageError
from riskstream.sources.base import Source
from riskstream.spec.model import PipelineSpec, SourceSpec


def source_spec_from_uri(uri: str) -> SourceSpec:
    """Parse ``file:PATH``, ``stdin:``, ``generator:?events=N&seed=S``, ``kafka://HOST:PORT/TOPIC[?group=G]``."""
    if uri.startswith("file:"):
        path = uri[len("file:") :]
        if path.startswith("//"):
            path = urlparse(uri).path
        if not path:
            raise UsageError("--source file: needs a path, e.g. file:events.jsonl")
        return SourceSpec(kind="file", path=path)
    if uri in ("stdin:", "stdin", "-"):
        return SourceSpec(kind="stdin")
    if uri.startswith("generator:"):
        query = parse_qs(uri.partition("?")[2])
        try:
            events = int(query.get("events", ["100000"])[0])
            seed = int(query.get("seed", ["7"])[0])
        except ValueError:
            raise UsageError(
                f"bad generator source {uri!r}: events and seed are integers"
            ) from None
        return SourceSpec(kind="generator", events=events, seed=seed)
    if uri.startswith("kafka://"):
        parsed = urlparse(uri)
        topics = [t for t in parsed.path.strip("/").split(",") if t]
        if not parsed.netloc or not topics:
            raise UsageError(f"bad kafka source {uri!r}: use kafka://HOST:PORT/TOPIC")
        query = parse_qs(parsed.query)
        group = query.get("group", ["riskstream"])[0]
        return SourceSpec(kind="kafka", brokers=parsed.netloc, topics=topics, group=group)
    raise UsageError(
        f"unknown source {uri!r}: use file:PATH, stdin:, generator:?events=N&seed=S or kafka://HOST:PORT/TOPIC"
    )


def build_source(
    spec: PipelineSpec, src: SourceSpec, *, until_end: bool, **kafka_options: object
) -> Source:
    """Open the source described by ``src``."""
    if src.kind == "file":
        from riskstream.sources.file import FileSource

        if not src.path:
            raise UsageError("source.path is needed for a file source")
        return FileSource(src.path, until_end=until_end, max_line_bytes=spec.event.max_bytes)
    if src.kind == "stdin":
        from riskstream.sources.file import StdinSource

        return StdinSource(max_line_bytes=spec.event.max_bytes)
    if src.kind == "generator":
        from riskstream.synthetic.generator import GeneratorSource

        if "uri" in src.options:
            return GeneratorSource.from_uri(src.options["uri"], until_end=until_end)
        return GeneratorSource(events=src.events or 100_000, seed=src.seed, until_end=until_end)
    from riskstream.sources.kafka import KafkaSource

    source: Source = KafkaSource(spec, src, until_end=until_end, **kafka_options)  # type: ignore[arg-type]
    return source
