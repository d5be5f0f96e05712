"""Benchmark ``POST /v1/decide`` on a real server: latency percentiles at a target request rate.

    .venv/bin/python bench/api_decide.py [--events 20000] [--rate 1000] [--seconds 10]
                                         [--concurrency 32] [--clients 2] [--no-batching]
                                         [--servers uvicorn,granian] [--rounds N]

What it does:

1. writes a spec (one card metric, three rules reading 1m/1h features) and ``--events``
   payment events, runs the embedded engine over them in a thread (following the file,
   checkpointing every second) and serves the API on a free loopback port;
2. times ``Pipeline.evaluate`` for one event in-process (the engine's floor);
3. from ``--clients`` *separate processes* (so the load generator does not share the
   server's GIL), sends requests open-loop at ``--rate`` per second over ``--concurrency``
   keep-alive httpx connections (one sync client per thread): first ``GET /healthz`` (transport + framework baseline), then
   ``POST /v1/decide`` with events of random cards. Latency is measured from each
   request's *scheduled* send time (no coordinated omission) and printed as p50/p90/p99.
4. ``--servers uvicorn,granian --rounds 3``: the same engine served by each ASGI server in turn
   (interleaved rounds), so the comparison shares one engine state and one machine load.

A benchmark, not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

KEY = "bench-key-0001"
T0 = 1_767_571_200_000
SPEC = """\
name: bench
event:
  time: event_time
  id: event_id
  fields: {{amount: float, card_id: str, merchant_id: str}}
metrics:
  card: {{dimension: [card_id], value: amount, stats: [count, sum, avg, max]}}
rules:
  big_amount: {{when: amount > 990, action: block, score: 90}}
  card_velocity: {{when: card.count(1m) >= 5, action: review, score: 60}}
  card_spend: {{when: card.sum(1h) > 20000 and card.avg(1h) > 700, action: tag, score: 20}}
checkpoint: {{every: {every}}}
batch_size: 5000
"""


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` in milliseconds (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def event(rng: random.Random, i: int, t: int, cards: int) -> dict[str, Any]:
    """One payment event."""
    return {
        "event_id": f"e{i}",
        "event_time": t,
        "amount": round(rng.lognormvariate(4.5, 1.0) % 1000, 2),
        "card_id": f"c{rng.randrange(cards)}",
        "merchant_id": f"m{rng.randrange(200)}",
    }


# ---- the load generator (runs in its own processes) ------------------------------------------


def _load(
    url: str,
    path: str,
    rate: float,
    seconds: float,
    conc: int,
    last_t: int,
    cards: int,
    part: int,
    parts: int,
) -> dict[str, Any]:
    """Send this process's share (every ``parts``-th request) from ``conc`` threads, each with its
    own keep-alive ``httpx.Client`` (httpx's AsyncClient is itself the bottleneck on this box)."""
    import httpx
    import orjson

    total = int(rate * seconds)
    rng = random.Random(1)
    bodies = [
        orjson.dumps(
            event(rng, i, last_t + rng.randint(-30_000, 0), cards) | {"event_id": f"probe{i}"}
        )
        for i in range(min(total, 5000))
    ]
    latencies: list[float] = []
    service: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(part, total, parts))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    start = time.perf_counter() + 0.5

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            client.get("/healthz")  # connect before the clock starts
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                try:
                    if path == "/healthz":
                        r = client.get(path)
                    else:
                        r = client.post(path, content=bodies[i % len(bodies)])
                    ok, key = r.status_code == 200, str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                done = time.perf_counter()
                with lock:
                    if ok:
                        latencies.append(done - scheduled)
                        service.append(done - sent)
                    else:
                        errors[key] = errors.get(key, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "latencies": latencies,
        "service": service,
        "errors": errors,
        "elapsed": time.perf_counter() - start,
    }


def client_main(argv: list[str]) -> None:
    """``--client URL PATH RATE SECONDS CONC LAST_T CARDS PART PARTS``: one load share, JSON out."""
    url, path, rate, seconds, conc, last_t, cards, part, parts = argv
    out = _load(
        url,
        path,
        float(rate),
        float(seconds),
        int(conc),
        int(last_t),
        int(cards),
        int(part),
        int(parts),
    )
    print(json.dumps(out))


def run_phase(url: str, path: str, args: argparse.Namespace, last_t: int) -> dict[str, Any]:
    """One load phase from ``--clients`` processes; merged percentiles."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                url,
                path,
                str(args.rate),
                str(args.seconds),
                str(max(1, args.concurrency // args.clients)),
                str(last_t),
                str(args.cards),
                str(p),
                str(args.clients),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(args.clients)
    ]
    parts = [json.loads(p.communicate()[0]) for p in procs]
    lat = [x for p in parts for x in p["latencies"]]
    svc = [x for p in parts for x in p["service"]]
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    elapsed = max(p["elapsed"] for p in parts)
    return {
        "path": path,
        "sent": int(args.rate * args.seconds),
        "ok": len(lat),
        "errors": errors,
        "achieved_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(pct(lat, 0.50), 2),
        "p90_ms": round(pct(lat, 0.90), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "max_ms": round(max(lat, default=0.0) * 1000, 2),
        "service_p50_ms": round(pct(svc, 0.50), 2),
        "service_p99_ms": round(pct(svc, 0.99), 2),
    }


# ---- the server side -------------------------------------------------------------------------


def start(
    root: Path, n: int, cards: int, every: str, batching: bool
) -> tuple[Any, Any, threading.Thread, int]:
    """Write spec and events, run the engine; wait until it caught up. Returns the runner, the
    API context (served by :func:`serve`), the engine thread and the last event time."""
    import orjson

    from riskstream.api.auth import KeyRing
    from riskstream.api.context import ApiContext
    from riskstream.runners.embedded import EmbeddedRunner
    from riskstream.runners.embedded_live import EmbeddedLive
    from riskstream.sources.file import FileSource
    from riskstream.spec.load import load_spec
    from riskstream.store.duckdb import Store

    rng = random.Random(7)
    t = T0
    with (root / "events.jsonl").open("wb") as f:
        for i in range(n):
            t += rng.randint(1, 400)
            f.write(orjson.dumps(event(rng, i, t, cards)) + b"\n")
    (root / "spec.yaml").write_text(SPEC.format(every=every))
    spec = load_spec(root / "spec.yaml")
    data = root / "data"
    runner = EmbeddedRunner(
        spec, FileSource(root / "events.jsonl", until_end=False), data, lambda m: []
    )
    ctx = ApiContext(
        spec=spec,
        data_dir=data,
        store=Store(data),
        engine=EmbeddedLive(runner),
        keys=KeyRing.parse(f"{KEY}=read+decide"),
        decide_batching=batching,
    )
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    while runner.stats.events < n:
        if not thread.is_alive():
            raise SystemExit(f"engine stopped: {runner.stats.summary()}")
        time.sleep(0.1)
    time.sleep(2.0)  # let the last checkpoint land
    return runner, ctx, thread, t


def serve(ctx: Any, kind: str) -> Any:
    """Serve ``ctx`` with the ASGI server ``kind`` (uvicorn or granian) on a free port."""
    import os

    from riskstream.api.server import serve_context

    os.environ["RISKSTREAM_HTTP_SERVER"] = kind
    return serve_context(ctx, port=0, log=lambda m: None)


def engine_floor(
    runner: Any, last_t: int, cards: int, samples: int = 200, scorer: bool = False
) -> tuple[float, float]:
    """p50/p99 (ms) of ``Pipeline.evaluate`` on one event (or of the scorer the decide worker
    calls, ``scorer=True``), under the runner's lock."""
    import orjson

    from riskstream.core.events import RawBatch
    from riskstream.engine.single import scorer_for

    rng = random.Random(3)
    times = []
    for i in range(samples):
        line = orjson.dumps(event(rng, i, last_t, cards))
        with runner.lock:
            t0 = time.perf_counter()
            if scorer:
                scorer_for(runner.pipeline).score([line], ["bench"], unique_keys=True)
            else:
                runner.pipeline.evaluate(RawBatch(lines=[line], positions=["bench"]))
            times.append(time.perf_counter() - t0)
    return pct(times, 0.5), pct(times, 0.99)


def main() -> None:
    """Run the benchmark and print the results."""
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--events", type=int, default=20_000, help="events ingested before the load (engine state)"
    )
    ap.add_argument("--cards", type=int, default=2_000, help="distinct cards")
    ap.add_argument("--rate", type=float, default=1000.0, help="target requests per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    ap.add_argument(
        "--concurrency", type=int, default=32, help="client connections (threads) in all"
    )
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--checkpoint-every", default="1s", help="the spec's checkpoint.every")
    ap.add_argument("--no-batching", action="store_true", help="score each decide request alone")
    ap.add_argument(
        "--servers",
        default="",
        help="comma-separated ASGI servers to measure in turn on the same engine "
        "(uvicorn,granian; default: the API's default server)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="measure each server this many times")
    ap.add_argument("--paths", default="/healthz,/v1/decide", help="comma-separated endpoints")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="riskstream-bench-") as tmp:
        runner, ctx, thread, last_t = start(
            Path(tmp), args.events, args.cards, args.checkpoint_every, not args.no_batching
        )
        from riskstream.api.server import http_server

        servers = [x for x in args.servers.split(",") if x] or [http_server()]
        try:
            p50, p99 = engine_floor(runner, last_t, args.cards)
            print(
                f"engine: Pipeline.evaluate(1 event) p50 {p50:.2f} ms  p99 {p99:.2f} ms  (state: {args.events} events)"
            )
            p50, p99 = engine_floor(runner, last_t, args.cards, scorer=True)
            print(f"engine: decide scorer (1 event) p50 {p50:.2f} ms  p99 {p99:.2f} ms")
            mode = "off" if args.no_batching else "on"
            print(
                f"load: {args.rate:.0f} req/s for {args.seconds:.0f} s, {args.concurrency} connections, batching {mode}"
            )
            for rnd in range(args.rounds):
                for kind in servers:
                    server = serve(ctx, kind)
                    try:
                        for path in args.paths.split(","):
                            measure(server.url, path, args, last_t, f"{kind} r{rnd + 1}")
                    finally:
                        server.stop()
        finally:
            runner.request_stop()
            thread.join(30)


def measure(url: str, path: str, args: argparse.Namespace, last_t: int, label: str) -> None:
    """One phase on ``path``; prints percentiles and the server process's CPU per request."""
    import os

    cpu0 = time.process_time()
    load0 = os.getloadavg()[0]
    r = run_phase(url, path, args, last_t)
    # CPU of the server process (API threads; the engine is idle by now) per request:
    # what bounds the rate whatever else runs on the machine.
    cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, r["ok"])
    print(
        f"{label:<12} {r['path']:<11} ok {r['ok']}/{r['sent']}  {r['achieved_per_s']:>7.1f}/s  "
        f"p50 {r['p50_ms']:.2f} ms  p90 {r['p90_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
        f"max {r['max_ms']:.1f} ms  (service p50 {r['service_p50_ms']:.2f} / p99 {r['service_p99_ms']:.2f})"
        f"  server CPU {cpu_ms:.2f} ms/req  load {load0:.1f}"
        + (f"  errors {r['errors']}" if r["errors"] else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
