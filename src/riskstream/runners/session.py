"""Wire a run together from the command line: spec, source, sinks, runner, progress, API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.runners.live import LiveEngine
from riskstream.runners.progress import Progress, summary_table
from riskstream.sinks.base import Sink
from riskstream.spec.load import load_spec
from riskstream.spec.model import PipelineSpec


class Served(Protocol):
    """A running HTTP API (``riskstream.api.server.ServerHandle``)."""

    @property
    def url(self) -> str:
        """Base URL."""
        ...

    def wait(self, stop: Callable[[], bool] | None = None) -> None:
        """Block until a signal, ``stop()`` is true or the server stops; then stop it."""


#: Starts the HTTP API over a spec, a data dir and the live engine (None: the store only).
#: The runners never import the API: ``cli.py`` passes one bound to the port.
Serve = Callable[[PipelineSpec, Path, LiveEngine | None, Callable[[str], None]], Served]


def sink_factory(spec: PipelineSpec, data_dir: Path) -> Callable[[dict[str, int]], list[Sink]]:
    """Builds the spec's sinks once the store's delivery marks are known."""
    from riskstream.sinks.factory import build_sink

    def make(marks: dict[str, int]) -> list[Sink]:
        sinks = []
        for s in spec.sinks:
            conf = s.model_dump()
            names = _sink_names(conf)
            resume = max(marks.get(n, 0) for n in names)
            sinks.append(build_sink(conf, data_dir, spec.name, resume_seq=resume))
        return sinks

    return make


def run_pipeline(
    config: Path,
    *,
    source_uri: str | None,
    data_dir: Path,
    until_end: bool,
    from_time: str | None = None,
    to_time: str | None = None,
    quiet: bool = False,
    serve: Serve | None = None,
    console: Console | None = None,
    store_dsn: str | None = None,
    query_index: bool = True,
) -> dict[str, Any]:
    """Run the pipeline in ``config`` and return the summary (serving the API with ``serve``;
    ``query_index``: the engine keeps the API's in-memory range index)."""
    from riskstream.sources.uri import build_source, source_spec_from_uri

    console = console or Console(stderr=True)
    spec = load_spec(config)
    src_spec = source_spec_from_uri(source_uri) if source_uri else spec.source
    kafka_opts: dict[str, Any] = {}
    if from_time or to_time:
        from riskstream.core.events import parse_time

        kafka_opts["from_ms"] = parse_time(from_time) if from_time else None
        kafka_opts["to_ms"] = parse_time(to_time) if to_time else None
    bounded = until_end or bool(from_time or to_time)
    source = build_source(spec, src_spec, until_end=bounded, **kafka_opts)
    sinks = sink_factory(spec, data_dir)

    def log(msg: str) -> None:
        if not quiet:
            console.print(
                f"riskstream: {msg}", style="dim", markup=False, highlight=False, soft_wrap=True
            )

    runner = EmbeddedRunner(
        spec, source, data_dir, sinks, spec_path=config, log=log, store_dsn=store_dsn
    )
    live = EmbeddedLive(runner, index=query_index) if serve is not None else None
    server = serve(spec, data_dir, live, log) if serve is not None else None
    with Progress(console, enabled=not quiet) as progress:
        runner.on_batch = progress.update
        stats = runner.run()
    summary = stats.summary()
    if not quiet:
        console.print(summary_table(summary))
    if server is not None:
        # One SIGTERM / Ctrl-C ends everything: if it stopped the ingestion (drained and
        # checkpointed above), the API goes too; if the source ended, the API serves until one.
        server.wait(stop=lambda: runner.stop_requested)
    return summary


def _sink_names(conf: dict[str, Any]) -> list[str]:
    """Each sink's ``name`` (the key of its delivery mark in the store), then former names."""
    kind = conf.get("kind")
    if kind == "file":
        return [f"file:{conf.get('path')}"]
    if kind == "webhook":
        from riskstream.sinks.webhook import redact_url

        url = str(conf.get("url"))
        return [f"webhook:{redact_url(url)}", f"webhook:{url}"]
    if kind == "kafka":
        return [f"kafka:{conf.get('topic')}"]
    return [str(kind)]
