"""The HTTP API and the analysts' web UI.

``create_app(ApiContext(...))`` builds the FastAPI app; ``start_background(...)`` serves it
in a daemon thread next to the engine (see :mod:`riskstream.api.server`).
"""

from __future__ import annotations

from riskstream.api.app import create_app
from riskstream.api.auth import KeyRing
from riskstream.api.context import ApiContext
from riskstream.api.server import ServerHandle, start_background

__all__ = ["ApiContext", "KeyRing", "ServerHandle", "create_app", "start_background"]
