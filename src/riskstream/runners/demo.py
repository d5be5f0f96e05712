"""``riskstream demo``: a labelled payment stream through the example pipelines, then what they caught."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from riskstream.errors import UsageError
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.runners.progress import Progress, summary_table
from riskstream.runners.session import Serve
from riskstream.sinks.base import Sink
from riskstream.sinks.file import FileSink
from riskstream.sources.file import FileSource
from riskstream.spec.load import load_spec
from riskstream.synthetic.generator import GeneratorSource, generate_frames
from riskstream.training.demo import DEMO_MODEL, train_demo_model

EXAMPLES = ("card-velocity.yaml", "risky-products.yaml")
#: Events per second of event time: slow enough that minute-long fraud episodes complete.
DEMO_RATE = 50.0


def find_examples() -> Path:
    """The repository's ``examples/`` folder (next to ``src/``), or one in the current directory."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = base / "examples"
        if all((candidate / name).is_file() for name in EXAMPLES):
            return candidate
    raise UsageError(
        "cannot find examples/card-velocity.yaml; run the demo from the riskstream repository"
    )


def run_demo(
    *, events: int, seed: int, data_dir: Path | None, serve: Serve | None, console: Console
) -> None:
    """Run both example pipelines over the same generated stream and report detection quality;
    then, with ``serve``, serve the API over the first one's store."""
    examples = find_examples()
    root = data_dir or Path(tempfile.mkdtemp(prefix="riskstream-demo-"))
    console.rule("[bold]riskstream demo")
    console.print(
        f"Generating {events:,} payment events (seed {seed}) with labelled fraud patterns, and running "
        f"{', '.join(EXAMPLES)} over them. Data: {root}",
        highlight=False,
    )
    all_cases: list[pl.DataFrame] = []
    last_runner: EmbeddedRunner | None = None
    for name in EXAMPLES:
        spec = load_spec(examples / name)
        out = root / spec.name
        out.mkdir(parents=True, exist_ok=True)
        cases_path = out / "cases.jsonl"
        source = GeneratorSource(events=events, seed=seed, rate_per_s=DEMO_RATE)
        runner = EmbeddedRunner(
            spec, source, out / "data", _file_sink(cases_path), spec_path=examples / name
        )
        console.print(
            f"\n[bold]{spec.name}[/]: {len(spec.metrics)} metrics, {len(spec.rules)} rules"
        )
        with Progress(console, enabled=True) as progress:
            runner.on_batch = progress.update
            stats = runner.run(install_signals=False)
        console.print(summary_table(stats.summary()))
        if cases_path.stat().st_size:
            all_cases.append(
                pl.read_ndjson(cases_path).select(
                    "case_id", "rule", "action", "score", "event_id", "features", "event"
                )
            )
        last_runner = runner
    labels = pl.concat(
        [
            f.select("event_id", "card_id", "shop_id", "label", "pattern")
            for f in generate_frames(events, seed, rate_per_s=DEMO_RATE)
        ]
    )
    cases = pl.concat(all_cases, how="diagonal_relaxed") if all_cases else pl.DataFrame()
    _report(console, labels, cases)
    first = load_spec(examples / EXAMPLES[0])
    trained = train_demo_model(first, root / first.name / "data", console)
    console.print(
        f"\nQuery any metric over any range, e.g.:\n  riskstream query -c {examples / EXAMPLES[0]} card <card_id> --from 2026-01-05T00:00:00Z --to 2026-01-06T00:00:00Z --data-dir {root / 'card-velocity' / 'data'}",
        highlight=False,
    )
    if serve is not None and last_runner is not None:
        _serve_live(root, examples, serve, console, with_model=trained is not None)
    elif data_dir is None:
        shutil.rmtree(root, ignore_errors=True)


def _serve_live(
    root: Path, examples: Path, serve: Serve, console: Console, *, with_model: bool = False
) -> None:
    """Serve the first pipeline with a live engine, so the rule lab can take rules live.

    The engine reads ``ROOT/inbox.jsonl`` (append events to feed it, or POST them to
    ``/v1/decide?ingest=true``) and hot-reloads a copy of the example spec under ``ROOT/spec``:
    approved rules are written there, never into the repository's examples.
    """
    spec_dir = root / "spec"
    shutil.copytree(examples, spec_dir, dirs_exist_ok=True)
    spec_path = spec_dir / EXAMPLES[0]
    if with_model:  # the demo's model, scored as a shadow (the Models page shows its drift)
        with spec_path.open("a") as f:
            f.write(f"models: {{{DEMO_MODEL}: {{version: latest, shadow: true}}}}\n")
    spec = load_spec(spec_path)
    inbox = root / "inbox.jsonl"
    inbox.touch()
    out = root / spec.name
    runner = EmbeddedRunner(
        spec,
        FileSource(inbox, until_end=False),
        out / "data",
        _file_sink(out / "cases.jsonl"),
        spec_path=spec_path,
    )
    server = serve(spec, out / "data", EmbeddedLive(runner), console.print)
    console.print(
        f"Serving the API and web UI at {server.url} with a live engine: it follows {inbox} "
        f"and hot-reloads {spec_path} (Ctrl-C to stop)",
        highlight=False,
    )
    runner.run()
    server.wait()


def _file_sink(path: Path) -> Callable[[dict[str, int]], list[Sink]]:
    def make(marks: dict[str, int]) -> list[Sink]:
        return [FileSink(path, marks.get(f"file:{path}", 0))]

    return make


def _report(console: Console, labels: pl.DataFrame, cases: pl.DataFrame) -> None:
    fraud = labels.filter(pl.col("label") == 1)
    table = Table(
        title="Detection quality against the generator's labels (events, then cards or shops)",
        title_justify="left",
    )
    for col in (
        "pattern",
        "fraud events",
        "caught events",
        "recall (events)",
        "fraud cards/shops",
        "caught",
        "recall (entities)",
    ):
        table.add_column(col, justify="right" if col != "pattern" else "left")
    flagged = set(cases["event_id"].to_list()) if cases.height else set()
    flagged_labels = labels.filter(pl.col("event_id").is_in(list(flagged)))
    for pattern in sorted(set(fraud["pattern"].to_list())):
        ev = fraud.filter(pl.col("pattern") == pattern)
        caught = ev.filter(pl.col("event_id").is_in(list(flagged)))
        entity = "shop_id" if pattern in ("blacklisted_shop", "risky_product") else "card_id"
        ents = set(ev[entity].to_list())
        caught_ents = ents & set(flagged_labels[entity].to_list())
        table.add_row(
            pattern,
            f"{ev.height:,}",
            f"{caught.height:,}",
            f"{caught.height / ev.height:.0%}",
            f"{len(ents):,}",
            f"{len(caught_ents):,}",
            f"{len(caught_ents) / len(ents):.0%}" if ents else "-",
        )
    console.print(table)
    if not cases.height:
        return
    per_rule = Table(
        title="Precision per rule (share of cases on fraud-labelled events)", title_justify="left"
    )
    for col in ("rule", "action", "cases", "on fraud", "precision"):
        per_rule.add_column(col, justify="left" if col in ("rule", "action") else "right")
    joined = cases.join(labels.select("event_id", "label"), on="event_id", how="left")
    for (rule, action), group in sorted(joined.group_by("rule", "action"), key=lambda g: str(g[0])):
        hits = int(group["label"].fill_null(0).sum())
        per_rule.add_row(
            str(rule), str(action), f"{group.height:,}", f"{hits:,}", f"{hits / group.height:.0%}"
        )
    console.print(per_rule)
    console.print("\n[bold]Some cases[/] (highest score first):")
    sample = cases.sort("score", descending=True).group_by("rule", maintain_order=True).head(1)
    for row in sample.iter_rows(named=True):
        event = row["event"] or {}
        feats = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (row["features"] or {}).items()
            if v is not None
        )
        console.print(
            f"  [red]{row['action']}[/] {row['rule']} score={row['score']:g} event={row['event_id']} "
            f"card={event.get('card_id')} merchant={event.get('merchant_id')} amount={event.get('amount')}"
            + (f"  [dim]{feats}[/]" if feats else ""),
            highlight=False,
        )
