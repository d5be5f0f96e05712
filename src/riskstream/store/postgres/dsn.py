"""DSN handling: where it comes from (the environment, never the spec), how it is shown."""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict

from riskstream.errors import StoreError

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (safe to log or print)."""
    out = _URI_PASSWORD.sub(r"\1***\3", dsn)
    return _KV_PASSWORD.sub(r"\1***", out)


def endpoint(dsn: str) -> str:
    """``host:port`` of ``dsn`` (libpq defaults: localhost, 5432)."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        raise StoreError(f"malformed PostgreSQL DSN {redact(dsn)!r}") from None
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or "5432")
    return f"{host}:{port}"


def check(dsn: str) -> str:
    """``dsn`` if libpq can parse it; a :class:`StoreError` naming the redacted DSN if not."""
    endpoint(dsn)
    return dsn
