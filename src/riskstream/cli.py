"""The ``riskstream`` command line: demo, run, query, generate, validate, serve, backtest,
label, train, models."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import orjson
import typer
from rich.console import Console

from riskstream.errors import RiskstreamError, UsageError

if TYPE_CHECKING:  # the commands import what they need when they run (a fast --help)
    from riskstream.runners.live import LiveEngine
    from riskstream.runners.session import Serve, Served
    from riskstream.spec.model import PipelineSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="riskstream: a real-time risk engine for payment events.",
)
err = Console(stderr=True)
out = Console()

SpecOpt = Annotated[Path, typer.Option("--config", "-c", help="Pipeline spec (YAML).")]
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="Where the store, quarantine and logs live.")
]
StoreDsnOpt = Annotated[
    str | None,
    typer.Option(
        "--store-dsn",
        help="PostgreSQL store DSN (overrides the spec's store; prefer the spec's dsn_env).",
        envvar=None,
        show_default=False,
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"riskstream: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def validate(config: SpecOpt) -> None:
    """Check a spec; errors name the path (rules.card_testing.when: col 1: unknown metric 'crd')."""
    from riskstream.spec.load import load_spec

    spec = load_spec(config)
    out.print(
        f"{config}: ok ({len(spec.metrics)} metrics, {len(spec.rules)} rules, "
        f"{len(spec.lists)} lists, {len(spec.sinks)} sinks)",
        highlight=False,
    )
    if spec.store.kind == "postgres" or spec.source.key is not None:
        from riskstream.spec.check import partial_features

        partial = partial_features(spec)
        key = spec.source.key or "not set"
        if not partial:
            out.print(
                f"several engines (source.key: {key}): every rule feature is exact",
                highlight=False,
            )
        else:
            out.print(f"several engines (source.key: {key}):", highlight=False)
            for line in partial:
                out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def generate(
    events: Annotated[int, typer.Option("--events", "-n", help="How many events.")] = 100_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed: the same seed gives the same stream.")
    ] = 7,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Output JSON lines (.gz compresses).")
    ] = Path("events.jsonl"),
    rate: Annotated[
        float, typer.Option("--rate", help="Average events per second of event time.")
    ] = 200.0,
) -> None:
    """Write the synthetic payment stream (with labelled fraud patterns) as JSON lines."""
    from riskstream.synthetic.generator import write_jsonl

    n = write_jsonl(out_path, events, seed, rate_per_s=rate)
    out.print(f"wrote {n:,} events to {out_path}", highlight=False)


QueryIndexOpt = Annotated[
    bool,
    typer.Option(
        "--query-index/--no-query-index",
        help="With the API: answer range queries of numeric metrics from memory.",
    ),
]


@app.command()
def run(
    config: SpecOpt,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="file:PATH, stdin:, generator:?events=N&seed=S, kafka://HOST:PORT/TOPIC",
        ),
    ] = None,
    data_dir: DataDirOpt = Path("riskstream-data"),
    until_end: Annotated[
        bool, typer.Option("--until-end", help="Stop at the end of a bounded source.")
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Also write the summary as JSON.")
    ] = None,
    from_time: Annotated[
        str | None, typer.Option("--from", help="Replay: first event time (Kafka).")
    ] = None,
    to_time: Annotated[
        str | None, typer.Option("--to", help="Replay: end of the event time range (Kafka).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or summary on the terminal.")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also serve the HTTP API and web UI.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="HTTP port with --serve.")] = 8080,
    query_index: QueryIndexOpt = True,
    store_dsn: StoreDsnOpt = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help="embedded (one process) or spark (Spark Structured Streaming)."
        ),
    ] = "embedded",
    master: Annotated[
        str | None,
        typer.Option(
            "--master",
            help="Spark master with --engine spark (default local[2]; spark-submit's own).",
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir",
            help="Spark checkpoint dir (offsets, aligned carry); default DATA_DIR/spark-checkpoint.",
        ),
    ] = None,
) -> None:
    """Run a pipeline; restarting with the same data dir resumes from the last checkpoint."""
    from riskstream.runners.session import run_pipeline

    if engine not in ("embedded", "spark"):
        raise UsageError(f"--engine {engine!r}: use embedded or spark")
    if engine == "spark":
        if from_time or to_time:
            raise UsageError("--engine spark does not take --from or --to")
        from riskstream.runners.spark.run import run_spark

        summary = run_spark(
            config,
            source_uri=source,
            data_dir=data_dir,
            until_end=until_end,
            master=master,
            checkpoint_dir=checkpoint_dir,
            quiet=quiet,
            console=err,
            store_dsn=store_dsn,
            metrics_port=port if serve else None,
        )
        if summary_json is not None:
            summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        return
    summary = run_pipeline(
        config,
        source_uri=source,
        data_dir=data_dir,
        until_end=until_end,
        from_time=from_time,
        to_time=to_time,
        quiet=quiet,
        serve=_server(port) if serve else None,
        console=err,
        store_dsn=store_dsn,
        query_index=query_index,
    )
    if summary_json is not None:
        summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


@app.command()
def serve(
    config: SpecOpt,
    source: Annotated[
        str | None, typer.Option("--source", help="Override the spec's source.")
    ] = None,
    data_dir: DataDirOpt = Path("riskstream-data"),
    port: Annotated[int, typer.Option("--port", help="HTTP port on 127.0.0.1.")] = 8080,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end", help="Stop ingesting at the end of a bounded source (keep serving)."
        ),
    ] = False,
    query_index: QueryIndexOpt = True,
    store_dsn: StoreDsnOpt = None,
) -> None:
    """Run the pipeline and serve the HTTP API and web UI from the same process."""
    from riskstream.runners.session import run_pipeline

    run_pipeline(
        config,
        source_uri=source,
        data_dir=data_dir,
        until_end=until_end,
        serve=_server(port),
        console=err,
        store_dsn=store_dsn,
        query_index=query_index,
    )


@app.command()
def query(
    config: SpecOpt,
    metric: Annotated[str, typer.Argument(help="Metric name from the spec.")],
    key: Annotated[
        str, typer.Argument(help="Key: the dimension value(s), joined by | for several.")
    ],
    from_time: Annotated[
        str, typer.Option("--from", help="Start (inclusive): epoch ms or ISO-8601.")
    ],
    to_time: Annotated[str, typer.Option("--to", help="End (exclusive): epoch ms or ISO-8601.")],
    data_dir: DataDirOpt = Path("riskstream-data"),
    store_dsn: StoreDsnOpt = None,
) -> None:
    """Print one JSON object: the metric's stats over [from, to), stitched across tiers."""
    from riskstream.core.events import parse_time
    from riskstream.query.range import query_range
    from riskstream.spec.load import load_spec
    from riskstream.store.factory import open_store

    spec = load_spec(config)
    store = open_store(spec, data_dir, store_dsn, read_only=True)
    try:
        result = query_range(spec, store, metric, key, parse_time(from_time), parse_time(to_time))
    finally:
        store.close()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


@app.command()
def demo(
    events: Annotated[
        int, typer.Option("--events", "-n", help="How many generated events.")
    ] = 60_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Keep the demo's store here.")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the API and web UI on the result.")
    ] = False,
    port: Annotated[int, typer.Option("--port")] = 8080,
) -> None:
    """Generate a payment stream with labelled fraud, run the example pipelines, show what they caught."""
    from riskstream.runners.demo import run_demo

    run_demo(
        events=events,
        seed=seed,
        data_dir=data_dir,
        serve=_server(port) if serve else None,
        console=out,
    )


def _server(port: int) -> Serve:
    """Starts the HTTP API on ``port`` for a run (the runners never import the API)."""
    from riskstream.api.server import start_background

    def start(
        spec: PipelineSpec,
        data_dir: Path,
        engine: LiveEngine | None,
        log: Callable[[str], None],
    ) -> Served:
        return start_background(spec, data_dir, engine, port=port, log=log)

    return start


@app.command()
def backtest(
    config: SpecOpt,
    rule: Annotated[
        str | None,
        typer.Option("--rule", help="A rule of the spec (with --when: its new version)."),
    ] = None,
    when: Annotated[str | None, typer.Option("--when", help="A rule condition to test.")] = None,
    from_time: Annotated[
        str | None, typer.Option("--from", help="First event time: epoch ms or ISO-8601.")
    ] = None,
    to_time: Annotated[
        str | None, typer.Option("--to", help="End of the range (exclusive).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Events from a bounded source instead of the archive."),
    ] = None,
    data_dir: DataDirOpt = Path("riskstream-data"),
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the result as JSON.")
    ] = None,
) -> None:
    """Backtest a rule over archived events (or a source): hits, precision, recall, per day."""
    from riskstream.core.events import parse_time
    from riskstream.lab.commands import run_backtest, summary_lines, write_json

    result = run_backtest(
        config,
        rule=rule,
        when=when,
        from_ms=parse_time(from_time) if from_time is not None else None,
        to_ms=parse_time(to_time) if to_time is not None else None,
        source=source,
        data_dir=data_dir,
    )
    for line in summary_lines(result):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if json_path is not None:
        write_json(result, json_path)


@app.command()
def label(
    config: SpecOpt,
    file: Annotated[Path, typer.Option("--file", help="CSV of event_id,label (1 fraud, 0 legit).")],
    data_dir: DataDirOpt = Path("riskstream-data"),
) -> None:
    """Import late labels (e.g. chargebacks); unknown ids and malformed rows are counted, not fatal."""
    from riskstream.lab.labels import import_labels
    from riskstream.spec.load import load_spec

    report = import_labels(load_spec(config), data_dir, file)
    out.print(report.line(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def train(
    config: SpecOpt,
    model: Annotated[str, typer.Option("--model", help="Model name (DATA_DIR/models/NAME/vN).")],
    from_time: Annotated[
        str | None, typer.Option("--from", help="First event time of the training range.")
    ] = None,
    to_time: Annotated[
        str | None, typer.Option("--to", help="End (exclusive) of the training range.")
    ] = None,
    features: Annotated[
        str,
        typer.Option("--features", help="auto, or feature expressions: card.count(1h),amount,..."),
    ] = "auto",
    source: Annotated[
        str | None,
        typer.Option("--source", help="Train on these events instead of the archive (file:PATH)."),
    ] = None,
    data_dir: DataDirOpt = Path("riskstream-data"),
    trees: Annotated[int, typer.Option("--trees", help="Boosting rounds.")] = 200,
    threads: Annotated[int, typer.Option("--threads", help="LightGBM threads.")] = 1,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the model's meta as JSON.")
    ] = None,
) -> None:
    """Train a model on the labelled events: a versioned model and its report."""
    from riskstream.core.events import parse_time
    from riskstream.models.registry import models_root
    from riskstream.spec.load import load_spec
    from riskstream.training.commands import run_train
    from riskstream.training.train import Params

    spec = load_spec(config)
    if not model.isidentifier():
        _fail(f"--model {model!r}: use a plain name (letters, digits, _)")
    if trees < 1 or threads < 1:
        _fail("--trees and --threads must be at least 1")
    trained = run_train(
        spec,
        model=model,
        data_dir=data_dir,
        source_uri=source,
        from_ms=parse_time(from_time) if from_time else None,
        to_ms=parse_time(to_time) if to_time else None,
        features=features,
        params=Params(trees=trees, threads=threads),
    )
    m = trained.meta["metrics"]
    par = ", ".join(f"{r}%: {p:.3f}" for r, p in m["precision_at_recall"].items())
    out.print(
        f"model {model} v{trained.version}: {len(trained.meta['features'])} features, "
        f"test {m['events']:,} events ({m['fraud']:,} fraud) "
        f"{trained.meta['test_range']['from']} – {trained.meta['test_range']['to']}\n"
        f"  AUC-PR {m['auc_pr']:.4f}; precision at recall {par}\n"
        f"  report: {trained.path / 'report.html'}\n"
        f"  use it: models: {{{model}: {{version: {trained.version}}}}} in the spec "
        f"(data dir {models_root(data_dir).parent})",
        highlight=False,
    )
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(trained.meta, option=orjson.OPT_INDENT_2))


models_app = typer.Typer(no_args_is_help=True, help="Trained models: list, compare.")
app.add_typer(models_app, name="models")


@models_app.command("compare")
def models_compare(
    config: SpecOpt,
    name: Annotated[str, typer.Argument(help="The model (its champion and shadow entries).")],
    data_dir: DataDirOpt = Path("riskstream-data"),
) -> None:
    """Champion vs challenger on the same labelled events since the challenger started (JSON)."""
    from riskstream.spec.load import load_spec
    from riskstream.training.commands import compare

    result = compare(load_spec(config), data_dir, name)
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


@models_app.command("list")
def models_list(data_dir: DataDirOpt = Path("riskstream-data")) -> None:
    """Every stored model version with its test metrics (JSON)."""
    from riskstream.training.commands import list_models

    sys.stdout.write(
        orjson.dumps(list_models(data_dir), option=orjson.OPT_INDENT_2).decode() + "\n"
    )


def _die(message: str, code: int = 2) -> NoReturn:
    err.print(f"riskstream: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every known error becomes one line on stderr and exit status 2."""
    import click

    try:
        rc = app(args=argv, standalone_mode=False)
    except RiskstreamError as exc:
        _die(str(exc))
    except click.ClickException as exc:
        _die(exc.format_message())
    except (click.Abort, KeyboardInterrupt):
        _die("interrupted", 130)
    except Exception as exc:  # a bug: still one line, with the type to report it by
        _die(f"internal error: {type(exc).__name__}: {exc}", code=1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
