"""riskstream benchmarks: the engine against the limit (json.loads), the Python peer (Quix
Streams over Kafka) and a batch engine (DuckDB), all on the generator's stream, measured in
the same run so that ratios hold on a shared, noisy machine.

    .venv/bin/python bench/run.py [--quick] [--runs 3] [--events N] [--write BENCHMARKS.md]
                                  [--only NAME,...] [--skip-kafka] [--skip-quix]
                                  [--before-src DIR] [--json FILE] [--work DIR]

``make bench`` runs the full set and writes BENCHMARKS.md (about 20-25 minutes on the 2-core
machine at the engine's speed of December 2026, most of it the 10M memory run and Quix Streams).
``--quick``: the 1M-event workload only (no 10M memory run), 2 runs of each measurement, a 20 s
latency run, 100k events for Quix Streams (6-7 minutes). ``--write``: replace the generated
section of BENCHMARKS.md (between the ``bench:begin``/``bench:end`` markers) with this run's
tables; it refuses to write when a benchmark failed, unless ``--write-partial``.
``--before-src``: also run the engine from another source tree (e.g. a ``git archive`` of an
older commit's ``src``) for before/after figures measured in the same run.
``--events N``: size of the main workload (default 1M; small sizes to try the harness out).

Every figure is the wall time of a fresh process (start-up included), the median of ``--runs``
runs; every ratio is against a baseline measured in the same invocation. Each workload checks
its own output: riskstream's summary counts every event, the DuckDB and Quix Streams window
counts sum to the number of events, the Kafka topic holds every produced event.

Benchmarks (names for ``--only``):

* ``limit``: plain Python ``json.loads`` of every line of the file (the per-event floor).
* ``duckdb``: DuckDB computing card and merchant count/sum per 1-minute and 1-hour tumbling
  windows over the same file in one batch query.
* ``file``: ``riskstream run`` file -> checkpointed store with the bench spec
  (``bench/specs/bench.yaml``: 5 metrics x 5 tiers, 10 rules, a file sink), and with the
  shared spec (``bench/specs/shared.yaml``: the DuckDB/Quix aggregates only); a fresh process,
  data dir and working dir each run; peak RSS = the process's ``VmHWM``.
* ``kafka``: a real broker (``tools/kafka.py``); the file produced into a topic; Quix Streams
  (``bench/quix_app.py``, in ``bench/.quix-venv``) and ``riskstream run --source kafka://...``
  (bench spec and shared spec) each consume the whole topic with a fresh consumer group.
* ``latency``: a steady 14,000 events/s produced to Kafka while ``riskstream run`` follows the
  topic; latency = time the case line appears in the file sink - time the event was produced.
* ``query``: in-process stitched 90-day ``query_range`` on random cards of the 1M store.
* ``memory``: (full run only) 10M events (~1M distinct cards), bench spec, peak RSS.
* ``typical``: a typical spec (``bench/specs/typical.yaml``: two metrics on all five tiers,
  three rules with 1-minute and 5-minute features and a keyword list) over 400k events
  (``--typical-events``), whole process, against ``json.loads`` over the same lines, runs
  alternating so both see the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from report import report, write_report

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "bench" / "specs" / "bench.yaml"
SHARED_SPEC = ROOT / "bench" / "specs" / "shared.yaml"
TYPICAL_SPEC = ROOT / "bench" / "specs" / "typical.yaml"
TYPICAL_EVENTS = 400_000
QUIX_VENV = ROOT / "bench" / ".quix-venv"
QUIX_REQ = ROOT / "bench" / "quix-requirements.txt"
PY = sys.executable
MEMORY_EVENTS = 10_000_000


# Safety nets: a child that runs longer than this is killed and the benchmark fails.
RUN_TIMEOUT_S = 1800.0
QUIX_IDLE_S = 60.0


class BenchError(RuntimeError):
    """A benchmark could not be measured (or its output failed a check)."""


# ---- helpers ------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = "?"
    with contextlib.suppress(OSError, IndexError):
        load = Path("/proc/loadavg").read_text().split()[0]
    commit = "?"
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " + uncommitted changes in src/"
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_at_start": load,
        "commit": commit,
    }


def run_measured(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = RUN_TIMEOUT_S,
) -> dict[str, Any]:
    """Run a command to completion: wall seconds, output and peak RSS.

    Peak RSS is the child's ``VmHWM`` (``/proc/PID/status``), polled every 20 ms until it
    exits (the high-water mark only grows, so the last reading is the peak up to ~20 ms before
    the exit). Not ``wait4``'s ``ru_maxrss``: Linux carries the forking process's RSS over
    ``exec`` into it, so every child would report at least this harness's own peak (e.g. the
    Kafka producer's buffers). The child gets its own session, so a timeout kills it and
    everything it started.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=err, cwd=cwd, start_new_session=True
        )
        status_file = Path(f"/proc/{proc.pid}/status")
        hwm_kb = 0
        while True:
            # Read before reaping: after wait4 the pid (and its /proc entry) is gone.
            with contextlib.suppress(OSError, ValueError):
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm_kb = max(hwm_kb, int(line.split()[1]))
                        break
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
                raise BenchError(f"{shlex.join(cmd[:6])} timed out after {timeout:.0f}s: {tail}")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode:
        raise BenchError(f"{shlex.join(cmd[:6])} failed ({proc.returncode}): {stderr[-3000:]}")
    return {"wall": wall, "stdout": stdout, "stderr": stderr, "rss_mib": hwm_kb / 1024}


def env_for(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src if src is not None else ROOT / "src")
    env.setdefault("POLARS_MAX_THREADS", str(os.cpu_count() or 2))
    return env


def data_file(data: Path, events: int) -> Path:
    path = data / f"events-{events}-seed7.jsonl"
    if not path.exists():
        log(f"generating {events:,} events -> {path}")
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        # A child process: the engine's generator from the tree being measured.
        code = (
            "import sys\nfrom riskstream.synthetic.generator import write_jsonl\n"
            "write_jsonl(sys.argv[1], int(sys.argv[2]), 7)\n"
        )
        run_measured([PY, "-c", code, str(tmp), str(events)], env_for(None))
        tmp.rename(path)
        log(f"generated in {time.perf_counter() - t0:.0f}s")
    return path


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


def series(secs: list[float], events: int, **extra: Any) -> dict[str, Any]:
    return {
        "events": events,
        "seconds": secs,
        "median_s": median(secs),
        "eps": events / median(secs),
        **extra,
    }


# ---- the benchmarks -----------------------------------------------------------------------


LIMIT_CODE = """
import json, sys, time
t0 = time.perf_counter()
n = 0
with open(sys.argv[1], 'rb') as f:
    for line in f:
        json.loads(line)
        n += 1
print(n, time.perf_counter() - t0)
"""


def bench_limit(path: Path, events: int, runs: int) -> dict[str, Any]:
    """json.loads of every line, in a fresh interpreter (read included); wall of the process."""
    secs, inner = [], []
    for _ in range(runs):
        res = run_measured([PY, "-c", LIMIT_CODE, str(path)])
        n, s = res["stdout"].split()
        if int(n) != events:
            raise BenchError(f"json.loads read {n} lines, expected {events}")
        secs.append(res["wall"])
        inner.append(float(s))
    return series(secs, events, inner_s=median(inner))


def bench_file(
    path: Path,
    events: int,
    runs: int,
    work: Path,
    src: Path | None,
    spec: Path = SPEC,
    label: str = "now",
) -> dict[str, Any]:
    """riskstream run file -> checkpointed store: fresh process, data dir and cwd per run."""
    secs, rss, inner = [], [], []
    summary: dict[str, Any] = {}
    store = work / f"file-{label}-{events}-store"
    for i in range(runs):
        run_dir = work / f"file-{label}-{events}-{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        data_dir = run_dir / "data"
        summ = run_dir / "summary.json"
        cmd = [PY, "-m", "riskstream.cli", "run", "-c", str(spec), "--source", f"file:{path}"]
        cmd += ["--data-dir", str(data_dir), "--until-end", "--quiet", "--summary-json", str(summ)]
        # cwd: the bench spec's file sink writes cases.jsonl (and its mark) there, fresh each run.
        res = run_measured(cmd, env_for(src), cwd=run_dir)
        summary = json.loads(summ.read_text())
        if summary["events"] != events or summary.get("quarantined"):
            raise BenchError(
                f"{label}: expected {events} events, the run counted {summary['events']} "
                f"(quarantined {summary.get('quarantined')})"
            )
        cases_file = run_dir / "cases.jsonl"
        if summary.get("cases") and cases_file.exists():
            written = count_lines(cases_file)
            if written != summary["cases"]:
                raise BenchError(f"{label}: {summary['cases']} cases but {written} lines written")
        secs.append(res["wall"])
        rss.append(res["rss_mib"])
        inner.append(summary["elapsed_s"])
        log(f"  {label} run {i + 1}/{runs}: {res['wall']:.1f}s, {res['rss_mib']:.0f} MiB")
        if i == runs - 1:
            shutil.rmtree(store, ignore_errors=True)
            data_dir.rename(store)
        shutil.rmtree(run_dir, ignore_errors=True)
    return series(
        secs,
        events,
        engine_s=median(inner),
        rss_mib=max(rss),
        cases=summary.get("cases"),
        checkpoints=summary.get("checkpoints"),
        store=str(store),
    )


DUCKDB_SQL = """
WITH e AS (SELECT card_id, merchant_id, amount, event_time FROM read_json('{path}',
    format='newline_delimited', columns={{event_time: 'BIGINT', card_id: 'VARCHAR',
    merchant_id: 'VARCHAR', amount: 'DOUBLE'}}))
SELECT 'card_1m' AS agg, count(*) AS buckets, sum(n) AS events FROM (
  SELECT card_id, event_time // 60000 AS w, count(*) AS n, sum(amount) AS s FROM e GROUP BY ALL)
UNION ALL SELECT 'card_1h', count(*), sum(n) FROM (
  SELECT card_id, event_time // 3600000 AS w, count(*) AS n, sum(amount) AS s FROM e GROUP BY ALL)
UNION ALL SELECT 'merchant_1m', count(*), sum(n) FROM (
  SELECT merchant_id, event_time // 60000 AS w, count(*) AS n, sum(amount) AS s FROM e GROUP BY ALL)
UNION ALL SELECT 'merchant_1h', count(*), sum(n) FROM (
  SELECT merchant_id, event_time // 3600000 AS w, count(*) AS n, sum(amount) AS s FROM e GROUP BY ALL)
"""

DUCKDB_CODE = """
import duckdb, json, sys, time
t0 = time.perf_counter()
rows = duckdb.sql(sys.argv[1]).fetchall()
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows}))
"""


def bench_duckdb(path: Path, events: int, runs: int) -> dict[str, Any]:
    """DuckDB: the shared windowed aggregates over the file, one batch query, fresh process."""
    secs, inner = [], []
    windows: dict[str, int] = {}
    for _ in range(runs):
        res = run_measured([PY, "-c", DUCKDB_CODE, DUCKDB_SQL.format(path=path)])
        got = json.loads(res["stdout"])
        for agg, buckets, n in got["rows"]:
            if int(n) != events:
                raise BenchError(f"DuckDB {agg}: window counts sum to {n}, expected {events}")
            windows[agg] = int(buckets)
        secs.append(res["wall"])
        inner.append(got["seconds"])
    return series(secs, events, inner_s=median(inner), windows=windows)


# ---- Kafka --------------------------------------------------------------------------------


def quix_python() -> Path:
    """``bench/.quix-venv``'s python, (re)creating the venv when the requirements changed."""
    py = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    want = hashlib.sha256(QUIX_REQ.read_bytes()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    log("creating bench/.quix-venv for Quix Streams (its confluent-kafka pin differs)")
    shutil.rmtree(QUIX_VENV, ignore_errors=True)
    # The base interpreter, not this venv's: a venv made from a venv still works, but the base
    # is what a fresh clone has.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(QUIX_REQ)],
        check=True,
    )
    subprocess.run([str(py), "-c", "import quixstreams, confluent_kafka"], check=True)
    stamp.write_text(want + "\n")
    return py


def quix_version(py: Path) -> str:
    out = subprocess.run(
        [str(py), "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def event_ts(line: bytes) -> int:
    i = line.find(b'"event_time":')
    return int(line[i + 13 : line.find(b",", i)])


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages in partition 0 of ``topic`` (high - low watermark)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-size"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    finally:
        consumer.close()
    return int(high) - int(low)


def produce_file(bootstrap: str, topic: str, path: Path, events: int) -> float:
    """Produce the first ``events`` lines of ``path`` to ``topic`` (timestamp = event_time)."""
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for line in f:
            if n == events:
                break
            n += 1
            line = line.rstrip(b"\n")
            while True:
                try:
                    producer.produce(topic, line, timestamp=event_ts(line), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
    left = producer.flush(120)
    secs = time.perf_counter() - t0
    if left or failed:
        raise BenchError(
            f"producing to {topic}: {left} undelivered, {len(failed)} failed {failed[:3]}"
        )
    size = topic_size(bootstrap, topic)
    if size != events:
        raise BenchError(f"topic {topic} holds {size} messages, expected {events}")
    return secs


def bench_quix(bootstrap: str, topic: str, events: int, runs: int, work: Path) -> dict[str, Any]:
    """Quix Streams over the whole topic; each run's window counts must sum to ``events``."""
    qpy = quix_python()
    secs, inner, rss, failures = [], [], [], []
    windows: dict[str, int] = {}
    for i in range(runs):
        state = work / f"quix-state-{i}"
        shutil.rmtree(state, ignore_errors=True)
        cmd = [str(qpy), str(ROOT / "bench" / "quix_app.py"), bootstrap, topic, str(events)]
        cmd += [str(state), str(QUIX_IDLE_S)]
        res = run_measured(cmd)
        shutil.rmtree(state, ignore_errors=True)
        got = json.loads(res["stdout"].strip().splitlines()[-1])
        bad = {n: c for n, c in got["counted"].items() if c != events}
        log(
            f"  quix run {i + 1}/{runs}: {res['wall']:.1f}s wall, {got['seconds']:.1f}s processing, "
            f"{res['rss_mib']:.0f} MiB, counted {got['counted']}"
        )
        if bad:
            failures.append(f"run {i + 1}: window counts sum to {bad}, expected {events}")
            continue
        secs.append(res["wall"])
        inner.append(got["seconds"])
        rss.append(res["rss_mib"])
        windows = got["windows"]
    if not secs:
        raise BenchError("Quix Streams did not process the whole topic: " + "; ".join(failures))
    return series(
        secs,
        events,
        inner_s=median(inner),
        rss_mib=max(rss),
        failures=failures,
        windows=windows,
        version=quix_version(qpy),
    )


def bench_rs_kafka(
    bootstrap: str, topic: str, events: int, runs: int, work: Path, spec: Path, label: str
) -> dict[str, Any]:
    secs, rss, inner = [], [], []
    for i in range(runs):
        run_dir = work / f"kafka-{label}-{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        summ = run_dir / "summary.json"
        uri = f"kafka://{bootstrap}/{topic}?group=rs-bench-{time.time_ns()}"
        cmd = [PY, "-m", "riskstream.cli", "run", "-c", str(spec), "--source", uri]
        cmd += ["--data-dir", str(run_dir / "data"), "--until-end", "--quiet"]
        cmd += ["--summary-json", str(summ)]
        res = run_measured(cmd, env_for(None), cwd=run_dir)
        summary = json.loads(summ.read_text())
        if summary["events"] != events or summary.get("quarantined"):
            raise BenchError(
                f"kafka {label}: counted {summary['events']} events, expected {events} "
                f"(quarantined {summary.get('quarantined')})"
            )
        log(f"  riskstream kafka {label} run {i + 1}/{runs}: {res['wall']:.1f}s")
        secs.append(res["wall"])
        rss.append(res["rss_mib"])
        inner.append(summary["elapsed_s"])
        shutil.rmtree(run_dir, ignore_errors=True)
    return series(secs, events, engine_s=median(inner), rss_mib=max(rss))


def bench_kafka(
    path: Path, events: int, runs: int, work: Path, quix_events: int, skip_quix: bool = False
) -> dict[str, Any]:
    """riskstream over a topic of the whole file; Quix Streams against riskstream over a topic
    of its first ``quix_events`` events (Quix is too slow for the whole file in a sane time)."""
    sys.path.insert(0, str(ROOT))
    from tools.kafka import KafkaBroker

    out: dict[str, Any] = {}
    kdir = work / "kafka"
    shutil.rmtree(kdir, ignore_errors=True)
    if not skip_quix:
        quix_python()  # before the broker starts: creating the venv takes a minute
    quix_events = min(quix_events, events)
    failed: dict[str, str] = {}

    def attempt(key: str, into: dict[str, Any], fn: Callable[[], Any]) -> None:
        # One failing measurement (e.g. the engine crashing) must not lose the others.
        try:
            into[key] = fn()
        except BenchError as exc:
            log(f"  kafka {key} FAILED: {exc}")
            failed[key] = str(exc).splitlines()[0][:300]

    with KafkaBroker(kdir) as broker:
        bootstrap = broker.bootstrap
        # Message timestamps are event times (January 2026): without this the broker's 7-day
        # retention deletes the topic's segments a few minutes into the run.
        broker.create_topic("bench-events", partitions=1, config={"retention.ms": "-1"})
        log(f"producing {events:,} events to Kafka")
        out["produce_s"] = produce_file(bootstrap, "bench-events", path, events)
        attempt(
            "riskstream",
            out,
            lambda: bench_rs_kafka(bootstrap, "bench-events", events, runs, work, SPEC, "bench"),
        )
        if not skip_quix:
            broker.create_topic("bench-shared", partitions=1, config={"retention.ms": "-1"})
            log(f"producing {quix_events:,} events to the shared topic")
            produce_file(bootstrap, "bench-shared", path, quix_events)
            shared: dict[str, Any] = {"events": quix_events}
            out["shared"] = shared
            attempt(
                "quix",
                shared,
                lambda: bench_quix(bootstrap, "bench-shared", quix_events, runs, work),
            )
            attempt(
                "riskstream",
                shared,
                lambda: bench_rs_kafka(
                    bootstrap, "bench-shared", quix_events, runs, work, SPEC, "bench-q"
                ),
            )
            attempt(
                "riskstream_shared",
                shared,
                lambda: bench_rs_kafka(
                    bootstrap, "bench-shared", quix_events, runs, work, SHARED_SPEC, "shared-q"
                ),
            )
    if failed:
        out["failed"] = failed
    return out


def latency_spec(work: Path, cases: Path) -> Path:
    text = SPEC.read_text()
    for old, new in (
        ("checkpoint: {every: 1s, events: 200000}", "checkpoint: {every: 200ms, events: 200000}"),
        ("batch_size: 20000", "batch_size: 10000"),
        ("  - {kind: file, path: cases.jsonl}", f"  - {{kind: file, path: {cases}}}"),
        ("    pattern: str\n", "    pattern: str\n    bench_sent: float\n"),
    ):
        if old not in text:
            raise BenchError(f"latency spec: {old!r} not found in {SPEC}")
        text = text.replace(old, new)
    out = work / "bench-latency.yaml"
    out.write_text(text)
    return out


def bench_latency(
    path: Path, work: Path, rate: int = 14_000, seconds: float = 30.0, warmup: float = 5.0
) -> dict[str, Any]:
    """Steady ``rate`` events/s into Kafka; per case: written-to-sink time - produce time."""
    sys.path.insert(0, str(ROOT))
    from confluent_kafka import Producer
    from tools.kafka import KafkaBroker

    kdir = work / "kafka-latency"
    shutil.rmtree(kdir, ignore_errors=True)
    cases = work / "latency-cases.jsonl"
    cases.unlink(missing_ok=True)
    Path(str(cases) + ".seq").unlink(missing_ok=True)
    spec = latency_spec(work, cases)
    data_dir = work / "latency-store"
    shutil.rmtree(data_dir, ignore_errors=True)
    summ = work / "latency-summary.json"
    summ.unlink(missing_ok=True)
    total = int(rate * seconds)
    lines = []
    with path.open("rb") as f:
        for line in f:
            lines.append(line.rstrip(b"\n"))
            if len(lines) == total:
                break
    if len(lines) < total:
        raise BenchError(f"latency: {path} has {len(lines)} events, {total} needed")
    samples: list[tuple[float, float]] = []  # (sent, written)
    with KafkaBroker(kdir) as broker:
        broker.create_topic("bench-live", partitions=1, config={"retention.ms": "-1"})
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
        # Warm the topic and the engine up to the point where it waits for new messages: one
        # event produced and consumed before the clock starts.
        uri = f"kafka://{broker.bootstrap}/bench-live?group=rs-latency-{time.time_ns()}"
        cmd = [PY, "-m", "riskstream.cli", "run", "-c", str(spec), "--source", uri]
        cmd += ["--data-dir", str(data_dir), "--quiet", "--summary-json", str(summ)]
        err_file = (work / "latency-engine.err").open("wb")
        proc = subprocess.Popen(
            cmd,
            env=env_for(None),
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            cwd=work,
            start_new_session=True,
        )
        stop = threading.Event()

        def tail() -> None:
            pos = 0
            buf = b""
            while True:
                size = cases.stat().st_size if cases.exists() else 0
                if size <= pos:
                    if stop.is_set():
                        return
                    time.sleep(0.001)
                    continue
                with cases.open("rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
                now = time.time()
                pos += len(data)
                buf += data
                *done, buf = buf.split(b"\n")
                for line in done:
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)["event"]
                    except (ValueError, KeyError, TypeError):
                        continue  # not a case line
                    sent = ev.get("bench_sent")
                    if sent is not None:
                        samples.append((float(sent), now))

        tailer = threading.Thread(target=tail, daemon=True)
        tailer.start()
        try:
            time.sleep(8.0)  # start-up and group join
            if proc.poll() is not None:
                raise BenchError(f"latency: the engine exited ({proc.returncode})")
            t0 = time.time()
            step = 1.0 / rate
            for i, line in enumerate(lines):
                due = t0 + i * step
                delay = due - time.time()
                if delay > 0.0005:
                    time.sleep(delay)
                sent = time.time()
                value = line[:-1] + b',"bench_sent":%.6f}' % sent
                while True:
                    try:
                        producer.produce("bench-live", value)
                        break
                    except BufferError:
                        producer.poll(0.01)
                if i % 64 == 0:
                    producer.poll(0)
            producer.flush(30)
            produced_s = time.time() - t0
            # Let the engine drain: until its lag is zero (the summary is written at exit) or no
            # new case for 5 s.
            last, quiet_since = -1, time.time()
            while time.time() - quiet_since < 5.0 and time.time() - t0 < seconds + 120:
                time.sleep(0.2)
                if len(samples) != last:
                    last, quiet_since = len(samples), time.time()
            produced_at = t0 + produced_s
        finally:
            stop.set()
            tailer.join(timeout=30)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            err_file.close()
    err = (work / "latency-engine.err").read_text(errors="replace")
    summary = json.loads(summ.read_text()) if summ.exists() else {}
    if summary.get("events") != total:
        raise BenchError(
            f"latency: the engine counted {summary.get('events')} events of {total} produced; "
            f"stderr: {err[-2000:]}"
        )
    lat = sorted((w - s) * 1000 for s, w in samples if s >= t0 + warmup)
    if not lat:
        raise BenchError(f"no case latencies measured; engine stderr: {err[-2000:]}")

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, max(0, round(q * len(lat)) - 1))]

    return {
        "rate": rate,
        "achieved_rate": total / produced_s,
        "seconds": seconds,
        "events": total,
        "last_case_after_s": (samples[-1][1] - produced_at) if samples else float("nan"),
        "engine_lag_at_exit": summary.get("lag"),
        "cases": len(lat),
        "cases_total": len(samples),
        "engine_cases": summary.get("cases"),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": lat[-1],
    }


# ---- query --------------------------------------------------------------------------------


QUERY_CODE = """
import json, random, sys, time
from pathlib import Path
import polars as pl
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store
from riskstream.query.range import query_range
spec_path, store_dir, events_path, n, mode, budget = sys.argv[1:7]
n, budget = int(n), float(budget)
spec = load_spec(Path(spec_path))
store = Store(store_dir, read_only=True, keep_open=mode in ("keep", "index"))
wm = int(store.meta()["watermark"])
ask = lambda key, frm, to: query_range(spec, store, "card", key, frm, to)
extra = {}
if mode == "index":
    # The serving process: the engine's in-memory range index, loaded from the same store
    # (as the API loads it at start), answering without the store.
    import resource
    from riskstream.query.index import RangeIndex
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = RangeIndex(spec)
    t0 = time.perf_counter()
    index.load(store, None)
    extra = {"load_s": time.perf_counter() - t0, "index_mib": index.nbytes() / 2**20,
             "peak_rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}
    def ask(key, frm, to):
        return index.answer("card", key, frm, to)
ev = pl.read_ndjson(events_path, schema={"card_id": pl.Utf8, "event_time": pl.Int64})
per_card = ev.group_by("card_id").agg(pl.len().alias("n"), pl.col("event_time").max().alias("t"))
rng = random.Random(1)
keys = sorted(per_card["card_id"].to_list())
truth = dict(zip(per_card["card_id"].to_list(), per_card["n"].to_list()))
day = 86_400_000

def count_of(ans):
    if "count" in ans:
        return ans["count"]
    return (ans.get("stats") or {}).get("count")

# Check first: the whole history of 50 cards ([watermark + 1 - 90 d, watermark + 1)) must
# count exactly the card's events in the file.
wrong = []
for key in rng.sample(keys, min(50, len(keys))):
    ans = ask(key, wm + 1 - 90 * day, wm + 1)
    if count_of(ans) != truth[key]:
        wrong.append([key, count_of(ans), truth[key]])
# Timed: a 90-day range ending inside the last minute (second tier) and starting at a
# millisecond 90 days earlier (beyond the fine tiers' retention: the answer says so).
lat, cpu = [], []
nonzero = 0
t_end = time.perf_counter() + budget
for i in range(n):
    key = rng.choice(keys)
    to = wm + 1 - rng.randrange(0, 60_000)
    frm = to - 90 * day + rng.randrange(0, 3_600_000)
    t0, c0 = time.perf_counter(), time.thread_time()
    ans = ask(key, frm, to)
    lat.append((time.perf_counter() - t0) * 1000)
    cpu.append((time.thread_time() - c0) * 1000)
    if mode == "index" and i % 20 == 0:
        # The same answer as the store's (floats to rounding: the merge order differs).
        want = query_range(spec, store, "card", key, frm, to)
        same = all(abs(ans[k] - want[k]) <= 1e-9 * max(1.0, abs(want[k])) if isinstance(want[k], float)
                   else ans[k] == want[k] for k in want if k != "stats")
        extra["compared"] = extra.get("compared", 0) + 1
        extra["differ"] = extra.get("differ", 0) + (not same)
    nonzero += bool(count_of(ans))
    if time.perf_counter() > t_end and len(lat) >= 100:
        break
lat.sort()
cpu.sort()
k = len(lat)
# CPU time of the querying thread: the query's own cost, without the waits of a shared machine.
extra["cpu_p50"], extra["cpu_p99"] = cpu[k // 2], cpu[max(0, -(-k * 99 // 100) - 1)]
print(json.dumps({"n": k, "p50": lat[k // 2], "p99": lat[max(0, -(-k * 99 // 100) - 1)],
    "max": lat[-1], "nonzero": nonzero, "checked": min(50, len(keys)), "wrong": wrong[:5],
    "wrong_n": len(wrong), "sample": ans, **extra}, default=str))
"""


def bench_query(store: Path, path: Path, n: int = 2000, budget_s: float = 60.0) -> dict[str, Any]:
    """p50/p99 of ``query_range`` with a connection per call and with a kept connection, and
    of the serving process's in-memory range index (``index``) over the same store."""
    out: dict[str, Any] = {"budget_s": budget_s}
    for mode, count in (("open", max(100, n // 10)), ("keep", n), ("index", 5 * n)):
        args = [PY, "-c", QUERY_CODE, str(SPEC), str(store), str(path), str(count), mode]
        args.append(str(budget_s))
        res = run_measured(args, env=env_for(None))
        r = json.loads(res["stdout"].strip().splitlines()[-1])
        r["wall"] = res["wall"]
        out[mode] = r
        log(
            f"  query {mode}: {r['n']} queries, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms; "
            f"{r['wrong_n']} of {r['checked']} whole-history counts wrong"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1M events only, 2 runs, 20 s latency")
    ap.add_argument("--events", type=int, default=1_000_000, help="events of the main workload")
    ap.add_argument("--runs", type=int, default=None, help="runs per measurement (3; quick: 2)")
    ap.add_argument("--write", type=Path, help="update this BENCHMARKS.md")
    ap.add_argument(
        "--write-partial", action="store_true", help="write even when a benchmark failed"
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated: limit,duckdb,file,kafka,latency,query,memory,typical",
    )
    ap.add_argument("--typical-events", type=int, default=TYPICAL_EVENTS)
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--latency-seconds", type=float, default=None, help="steady-rate run (30 s)")
    ap.add_argument("--latency-rate", type=int, default=14_000, help="steady rate, events/s")
    ap.add_argument("--memory-events", type=int, default=MEMORY_EVENTS)
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument(
        "--quix-events",
        type=int,
        default=None,
        help="events of the Quix Streams comparison topic (200k; quick: 100k)",
    )
    ap.add_argument("--before-src", type=Path, help="also run the engine from this src tree")
    ap.add_argument(
        "--data", type=Path, default=ROOT / "bench" / "out" / "data", help="generated event files"
    )
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="also write the raw results as JSON")
    ap.add_argument(
        "--resume", action="store_true", help="keep the results already in --json, run the rest"
    )
    args = ap.parse_args(argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if args.quix_events is None:
        args.quix_events = 100_000 if args.quick else 200_000
    if args.latency_seconds is None:
        args.latency_seconds = 20.0 if args.quick else 30.0
    args.command_line = "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    only = {x for x in args.only.split(",") if x}
    unknown = only - {"limit", "duckdb", "file", "kafka", "latency", "query", "memory", "typical"}
    if unknown:
        ap.error(f"unknown benchmark(s) for --only: {', '.join(sorted(unknown))}")

    def want(name: str) -> bool:
        if name in ("kafka", "latency") and args.skip_kafka:
            return False
        if name == "memory" and args.quick and "memory" not in only:
            return False
        return not only or name in only

    started = time.perf_counter()
    args.data.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="riskstream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": args.command_line,
        "sizes": {},
        "timings": {},
        "failed": {},
    }
    ev = args.events
    path = data_file(args.data, ev)
    block: dict[str, Any] = {}
    results["sizes"][str(ev)] = block
    failed: dict[str, dict[str, str]] = results["failed"]
    if args.resume and args.json and args.json.exists():
        old = json.loads(args.json.read_text())
        block.update(old.get("sizes", {}).get(str(ev), {}))
        for key in ("latency", "query", "memory"):
            if key in old:
                results[key] = old[key]
        results["timings"].update(old.get("timings", {}))
        results["resumed"] = old.get("date")

    def save() -> None:
        if args.json:  # keep what is measured so far
            args.json.write_text(json.dumps(results, indent=2, default=str))

    def step(name: str, key: str, fn: Callable[[], Any], into: dict[str, Any]) -> None:
        if not want(name) or key in into:
            return
        log(f"{key} ...")
        t0 = time.perf_counter()
        try:
            into[key] = fn()
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            log(f"{key} FAILED: {exc}")
            where = str(ev) if into is block else "other"
            failed.setdefault(where, {})[key] = str(exc).splitlines()[0][:300]
        took = time.perf_counter() - t0
        results["timings"][key] = took
        save()
        if key in into:
            for sub, reason in (into[key].get("failed") or {}).items():
                where = str(ev) if into is block else "other"
                failed.setdefault(where, {})[f"{key}.{sub}"] = reason
            brief = {k: v for k, v in into[key].items() if k not in ("seconds", "sample")}
            log(f"{key} done in {took:.0f}s: {json.dumps(brief, default=str)[:400]}")

    step("limit", "limit", lambda: bench_limit(path, ev, args.runs), block)
    step("duckdb", "duckdb", lambda: bench_duckdb(path, ev, args.runs), block)
    step("file", "file", lambda: bench_file(path, ev, args.runs, work, None), block)
    step(
        "file",
        "file_shared",
        lambda: bench_file(path, ev, args.runs, work, None, SHARED_SPEC, "shared"),
        block,
    )
    if args.before_src:
        step(
            "file",
            "file_before",
            lambda: bench_file(path, ev, args.runs, work, args.before_src, label="before"),
            block,
        )
    step(
        "kafka",
        "kafka",
        lambda: bench_kafka(path, ev, args.runs, work, args.quix_events, args.skip_quix),
        block,
    )
    step(
        "latency",
        "latency",
        lambda: bench_latency(path, work, rate=args.latency_rate, seconds=args.latency_seconds),
        results,
    )

    def query() -> dict[str, Any]:
        store = block.get("file", {}).get("store")
        if store is None or not Path(store).exists():
            log("  (building the store: one file run)")
            block["file_for_query"] = bench_file(path, ev, 1, work, None, label="query")
            store = block["file_for_query"]["store"]
        return bench_query(Path(store), path, budget_s=10.0 if args.quick else 20.0)

    step("query", "query", query, results)

    def memory() -> dict[str, Any]:
        big = args.memory_events
        bpath = data_file(args.data, big)
        r = bench_file(bpath, big, 1, work, None, label="memory")
        shutil.rmtree(r["store"], ignore_errors=True)
        sql = (
            f"SELECT count(DISTINCT card_id) FROM read_json('{bpath}', "
            "format='newline_delimited', columns={card_id: 'VARCHAR'})"
        )
        code = (
            "import duckdb, sys; c = duckdb.connect(); c.execute('SET enable_progress_bar = false'); "
            "print(c.sql(sys.argv[1]).fetchall()[0][0])"
        )
        r["cards"] = int(run_measured([PY, "-c", code, sql])["stdout"].split()[-1])
        return r

    step("memory", "memory", memory, results)

    def typical() -> dict[str, Any]:
        n = args.typical_events
        tpath = data_file(args.data, n)
        limit: list[dict[str, Any]] = []
        engine: list[dict[str, Any]] = []
        for _ in range(args.runs):  # alternating: both see the same load
            limit.append(bench_limit(tpath, n, 1))
            engine.append(bench_file(tpath, n, 1, work, None, TYPICAL_SPEC, "typical"))
        lim = series([r["median_s"] for r in limit], n)
        eng = series(
            [r["median_s"] for r in engine],
            n,
            rss_mib=max(r["rss_mib"] for r in engine),
            cases=engine[-1]["cases"],
        )
        return {
            "events": n,
            "limit": lim,
            "engine": eng,
            "ratio": eng["median_s"] / lim["median_s"],
        }

    step("typical", "typical", typical, results)
    results["total_s"] = time.perf_counter() - started
    save()
    section = report(results, args)
    print(section)
    log(
        "time per benchmark: "
        + ", ".join(f"{k} {v:.0f}s" for k, v in results["timings"].items())
        + f"; total {results['total_s']:.0f}s"
    )
    code = 0
    if any(failed.values()):
        log(f"FAILED: {json.dumps(failed)}")
        code = 1
    if args.write:
        if code and not args.write_partial:
            log(f"not writing {args.write}: a benchmark failed (--write-partial to write anyway)")
        else:
            write_report(args.write, section)
            log(f"wrote {args.write}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
