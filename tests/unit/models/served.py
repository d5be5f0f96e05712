"""A live engine scoring with the trained model, and the real HTTP API (uvicorn) over it."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from riskstream.api.auth import KeyRing
from riskstream.api.server import ServerHandle, start_background
from riskstream.models.registry import models_root
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.runners.session import sink_factory
from riskstream.spec.load import load_spec
from riskstream.synthetic.generator import GeneratorSource
from tests.unit.models.conftest import SPEC

KEY = "reader-key-models-01"
ANALYST = "analyst-key-models-02"


@dataclass
class Served:
    """The running engine thread and server."""

    root: Path
    runner: EmbeddedRunner
    server: ServerHandle
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        """Authorization for the read key."""
        return {"Authorization": f"Bearer {KEY}"}

    def stop(self) -> None:
        """Stop the engine and the server."""
        self.runner.request_stop()
        self.thread.join(30)
        self.server.stop()


def serve_model(
    root: Path, trained: Path, events: int = 6000, seed: int = 12, *, server: str | None = None
) -> Served:
    """Copy the trained ``models/`` in, run the engine on ``events`` generated events (then it
    waits for more), serve the API (on the ASGI server ``server``, default: the API's default);
    returns once every event is scored."""
    data = root / "data"
    shutil.copytree(trained, models_root(data))
    spec_path = root / "spec.yaml"
    spec_path.write_text(
        SPEC
        + '  scored: {when: "model.fraud > 0.2", score: 90}\n'
        + f"sinks:\n  - {{kind: file, path: {root / 'cases.jsonl'}}}\n"
        + "models: {fraud: {version: latest}}\n"
    )
    spec = load_spec(spec_path)
    source = GeneratorSource(events, seed, until_end=False)
    runner = EmbeddedRunner(spec, source, data, sink_factory(spec, data), spec_path=spec_path)
    keys = KeyRing.parse(f"{KEY}=read,{ANALYST}=read+analyst")
    server = start_background(
        spec, data, EmbeddedLive(runner), port=0, log=lambda m: None, keys=keys, server=server
    )
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    served = Served(root, runner, server, thread)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.stats.events >= events and runner.stats.checkpoints:
            return served
        if not thread.is_alive():
            break
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"engine did not catch up: {runner.stats.summary()}")
