"""``riskstream run --engine spark``: wire the spec, the Kafka input, sinks and progress to the
Spark runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from riskstream.errors import UsageError
from riskstream.runners.progress import Progress, summary_table
from riskstream.runners.session import sink_factory
from riskstream.runners.spark.job import KafkaInput, SparkRunner
from riskstream.spec.load import load_spec
from riskstream.spec.model import PipelineSpec


def kafka_input(spec: PipelineSpec, source_uri: str | None) -> KafkaInput:
    """The Kafka topics to read: ``--source kafka://HOST:PORT/TOPIC`` or the spec's source."""
    from riskstream.sources.uri import source_spec_from_uri

    src = source_spec_from_uri(source_uri) if source_uri else spec.source
    if src.kind != "kafka" or not src.brokers or not src.topics:
        raise UsageError(
            f"--engine spark reads Kafka (spark-sql-kafka); the source is {src.kind!r}: "
            "use --source kafka://HOST:PORT/TOPIC or a kafka source in the spec"
        )
    # Options for Spark's Kafka source: the spec's ``kafka.*`` client settings (security).
    opts = {k: v for k, v in src.options.items() if k.startswith("kafka.")}
    return KafkaInput(src.brokers, list(src.topics), opts)


def run_spark(
    config: Path,
    *,
    source_uri: str | None,
    data_dir: Path,
    until_end: bool,
    master: str | None,
    checkpoint_dir: Path | None,
    quiet: bool = False,
    console: Console | None = None,
    store_dsn: str | None = None,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """Run the pipeline in ``config`` on Spark and return the summary.

    With ``metrics_port`` (``--serve --port``), Prometheus ``/metrics`` is served there.
    """
    from riskstream.runners.spark.session import check_pyspark

    check_pyspark()
    console = console or Console(stderr=True)
    spec = load_spec(config)
    source = kafka_input(spec, source_uri)

    def log(msg: str) -> None:
        if not quiet:
            console.print(
                f"riskstream: {msg}", style="dim", markup=False, highlight=False, soft_wrap=True
            )

    runner = SparkRunner(
        spec,
        source,
        data_dir,
        checkpoint_dir or data_dir / "spark-checkpoint",
        sink_factory(spec, data_dir),
        master=master,
        until_end=until_end,
        spec_path=config,
        log=log,
        store_dsn=store_dsn,
    )
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=runner.metrics.registry)
        log(f"Prometheus metrics on http://127.0.0.1:{metrics_port}/metrics")
    with Progress(console, enabled=not quiet) as progress:
        runner.on_batch = progress.update
        stats = runner.run()
    summary = stats.summary()
    summary["spark"] = runner.metrics_summary()
    if not quiet:
        console.print(summary_table(summary))
    return summary
