"""Run the API in a daemon thread next to the engine.

``start_background(spec, data_dir, engine, port=8080, log=print)`` returns a
:class:`ServerHandle` (``.url``, ``.port``, ``.stop()``, ``.wait()``). Port 0 picks a
free port. Without API keys (``RISKSTREAM_API_KEYS`` / ``RISKSTREAM_API_KEYS_FILE``) the
API is open and only a loopback address may be bound.

Two ASGI servers can carry the app (``RISKSTREAM_HTTP_SERVER``): ``granian`` (default; Rust
HTTP stack, embedded in this process's asyncio loop, see ``api/granian_server.py``) and
``uvicorn``. ``bench/api_decide.py --servers uvicorn,granian`` measures both on the same
engine in one run: granian carried 1.1-1.7x uvicorn's decide requests (BENCHMARKS.md,
"Issue 17: decide"). The API's integration tests run on both.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from riskstream.api import rangeindex
from riskstream.api.app import create_app
from riskstream.api.auth import KeyRing
from riskstream.api.context import ApiContext
from riskstream.errors import UsageError
from riskstream.runners.live import LiveEngine
from riskstream.spec.model import PipelineSpec
from riskstream.store.duckdb import Store
from riskstream.store.factory import open_store
from riskstream.store.factory import store_dsn as store_dsn_of

#: The ASGI server used unless ``RISKSTREAM_HTTP_SERVER`` says otherwise (the faster one in
#: ``bench/api_decide.py --servers uvicorn,granian``).
DEFAULT_HTTP_SERVER = "granian"


class ServerHandle:
    """A running API server."""

    def __init__(
        self,
        stop: Callable[[], None],
        thread: threading.Thread,
        host: str,
        port: int,
        kind: str = DEFAULT_HTTP_SERVER,
    ) -> None:
        self._stop = stop
        self._thread = thread
        self.host = host
        self.port = port
        #: The ASGI server carrying the API (``uvicorn`` or ``granian``).
        self.kind = kind

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, finish open requests, join the thread."""
        self._stop()
        self._thread.join(timeout_s)

    def wait(self, stop: Callable[[], bool] | None = None) -> None:
        """Block until Ctrl-C / SIGTERM, ``stop()`` is true or the server stops; then stop it.

        ``stop`` covers a signal that arrived before this method took over the handlers
        (the engine runner's handler saw it): one signal is always enough.
        """
        signalled = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def handler(signum: int, frame: FrameType | None) -> None:
                signalled.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        try:
            while self._thread.is_alive() and not (stop is not None and stop()):
                if signalled.wait(0.2):
                    break
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.stop()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_context(
    ctx: ApiContext,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
    server: str | None = None,
) -> ServerHandle:
    """Serve ``ctx`` in a daemon thread; returns once the socket is listening.

    ``server`` (uvicorn or granian) overrides ``RISKSTREAM_HTTP_SERVER`` (tests run both).
    """
    say = log or ctx.log
    if ctx.keys.open:
        if not is_loopback(host):
            raise UsageError(
                f"refusing to serve the API on {host} without API keys (set RISKSTREAM_API_KEYS)"
            )
        say("API keys are not configured: the API is open to local clients (loopback only)")
    sock = _listen(host, port)
    actual = int(sock.getsockname()[1])
    kind = http_server(server)
    if kind == "granian":
        from riskstream.api.granian_server import serve_granian

        stop, thread = serve_granian(create_app(ctx), sock)
    else:
        stop, thread = _serve_uvicorn(create_app(ctx), sock)
    if stop is None:
        raise UsageError(f"the API server on {host}:{actual} failed to start")
    rangeindex.warm(ctx)
    handle = ServerHandle(stop, thread, host, actual, kind)
    say(f"API and web UI on {handle.url}/ ({kind})")
    return handle


def http_server(choice: str | None = None) -> str:
    """The ASGI server that carries the API: ``choice``, else ``RISKSTREAM_HTTP_SERVER``."""
    if choice is None:
        choice = os.environ.get("RISKSTREAM_HTTP_SERVER", DEFAULT_HTTP_SERVER)
    kind = choice.strip().lower()
    if kind not in ("uvicorn", "granian"):
        raise UsageError(f"RISKSTREAM_HTTP_SERVER: {kind!r} is not uvicorn or granian")
    return kind


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP; without it responses (headers, then body) wait ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _serve_uvicorn(
    app: Any, sock: socket.socket
) -> tuple[Callable[[], None] | None, threading.Thread]:
    """uvicorn on ``sock`` in a daemon thread; (stop, thread), stop None if it failed to start."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        backlog=2048,
        timeout_keep_alive=30,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="riskstream-api", daemon=True
    )
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    if not server.started:
        return None, thread

    def stop() -> None:
        server.should_exit = True

    return stop, thread


def start_background(
    spec: PipelineSpec,
    data_dir: Path,
    engine: LiveEngine | None,
    *,
    port: int,
    log: Callable[[str], None],
    host: str = "127.0.0.1",
    keys: KeyRing | None = None,
    store_dsn: str | None = None,
    server: str | None = None,
) -> ServerHandle:
    """Serve the API for ``spec``/``data_dir`` (and the live ``engine``, if any) on ``host:port``.

    Keys default to the environment (``RISKSTREAM_API_KEYS``, ``RISKSTREAM_API_KEYS_FILE``).
    Without an engine the store must already exist.
    """
    ring = keys if keys is not None else KeyRing.from_env()
    directory = engine.data_dir if engine is not None else Path(data_dir)
    dsn = store_dsn or (engine.store_dsn if engine is not None else None)
    if engine is None and store_dsn_of(spec, dsn) is None:
        Store(directory, read_only=True)  # refuses (StoreError) when there is no store yet
    store = open_store(spec, directory, dsn)
    ctx = ApiContext(spec=spec, data_dir=directory, store=store, engine=engine, keys=ring, log=log)
    return serve_context(ctx, host=host, port=port, log=log, server=server)
