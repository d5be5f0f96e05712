"""CPU per ``POST /v1/decide`` request in the app itself: no server, no sockets, no load generator.

    .venv/bin/python bench/decide_cpu.py [--requests 5000] [--concurrency 4] [--profile]

Builds the engine state of ``bench/api_decide.py`` (20k events), then drives the ASGI app
(``create_app``) directly on an asyncio loop: ``--concurrency`` tasks send ``--requests``
decide requests (the headers an httpx client sends) and the process CPU time is divided by
the requests. On a shared machine this moves far less with the load than wall-clock latency,
so it is the figure to compare trees with: ``PYTHONPATH=OTHER/src`` runs another tree's app.
``--profile`` prints cProfile's top functions (event-loop thread only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
import api_decide  # the engine state and events of the HTTP benchmark


async def drive(app: Any, bodies: list[bytes], n: int, conc: int, profile: bool) -> dict[str, Any]:
    """Start the app's lifespan, warm up, send ``n`` requests from ``conc`` tasks; CPU and wall."""
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer " + api_decide.KEY.encode()),
        (b"content-type", b"application/json"),
        (b"user-agent", b"python-httpx/0.28.1"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"connection", b"keep-alive"),
    ]
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        body = bodies[i % len(bodies)]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": "/v1/decide",
            "raw_path": b"/v1/decide",
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # no disconnect while the app answers
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    life: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await life.put({"type": "lifespan.startup"})

    async def nothing(message: dict[str, Any]) -> None:
        return None

    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, life.get, nothing)
    )
    for i in range(300):
        await one(i)
    statuses.clear()
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            await one(i)

    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if prof is not None:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    await life.put({"type": "lifespan.shutdown"})
    await lifespan
    return {"cpu_ms": cpu * 1000 / n, "wall_ms": wall * 1000 / n, "statuses": statuses}


def main() -> None:
    """Run and print one line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    from riskstream.api.app import create_app

    with tempfile.TemporaryDirectory(prefix="riskstream-bench-") as tmp:
        runner, ctx, thread, last_t = api_decide.start(Path(tmp), args.events, 2000, "1s", True)
        try:
            rng = random.Random(1)
            bodies = [orjson.dumps(api_decide.event(rng, i, last_t, 2000)) for i in range(2000)]
            out = asyncio.run(
                drive(create_app(ctx), bodies, args.requests, args.concurrency, args.profile)
            )
        finally:
            runner.request_stop()
            thread.join(30)
    print(
        f"decide in-process: {args.requests} requests, {args.concurrency} at a time: "
        f"CPU {out['cpu_ms']:.3f} ms/request, wall {out['wall_ms']:.3f} ms/request, "
        f"statuses {out['statuses']}, load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
