"""The API on granian (a Rust HTTP server), embedded in an asyncio loop on a daemon thread.

Measured against uvicorn on the same engine and endpoint (``bench/api_decide.py --servers
uvicorn,granian``) it won, so it is the default (``api.server.DEFAULT_HTTP_SERVER``;
``RISKSTREAM_HTTP_SERVER=uvicorn`` picks the other). Granian parses HTTP and writes responses
in Rust threads that do not hold the GIL; only the ASGI app runs Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from riskstream.errors import UsageError


def serve_granian(
    app: Any, sock: socket.socket, *, start_timeout_s: float = 10.0
) -> tuple[Callable[[], None] | None, threading.Thread]:
    """Serve ``app`` on the address ``sock`` is bound to; (stop, thread), stop None on failure.

    Granian binds its own listener: ``sock`` (bound by the caller, so port 0 and a taken
    port are settled there with one clear error) is closed just before granian binds the
    same address.
    """
    try:
        from granian.constants import HTTPModes, Interfaces
        from granian.server.embed import Server
    except ImportError:
        raise UsageError(
            "granian is not installed (pip install granian==2.8.7), "
            "or set RISKSTREAM_HTTP_SERVER=uvicorn"
        ) from None

    host, port = sock.getsockname()[:2]
    logging.getLogger("granian").setLevel(logging.WARNING)
    server = Server(
        app,
        address=str(host),
        port=int(port),
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        backlog=2048,
        log_enabled=False,
        runtime_threads=1,
    )
    loop_box: list[asyncio.AbstractEventLoop] = []
    started = threading.Event()

    async def main() -> None:
        loop_box.append(asyncio.get_running_loop())
        started.set()
        await server.serve()

    def run() -> None:
        try:
            asyncio.run(main())
        finally:
            started.set()

    sock.close()
    thread = threading.Thread(target=run, name="riskstream-api", daemon=True)
    thread.start()
    started.wait(start_timeout_s)
    if not loop_box or not _listening(str(host), int(port), start_timeout_s, thread):
        return None, thread
    loop = loop_box[0]

    def stop() -> None:
        if not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, nothing to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(server.stop)

    return stop, thread


def _listening(host: str, port: int, timeout_s: float, thread: threading.Thread) -> bool:
    """Wait until a TCP connect to ``host:port`` succeeds (granian has no started flag)."""
    import time

    deadline = time.monotonic() + timeout_s
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline and thread.is_alive():
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.01)
    return False
