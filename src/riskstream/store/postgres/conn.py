"""Connections to the PostgreSQL store: a small pool, retries with backoff, a DuckDB-style adapter.

The API and query layers were written against DuckDB connections (``?`` placeholders,
``con.execute(sql, args).fetchone()``); :class:`Adapter` gives them the same surface over a
psycopg connection, so their read SQL runs unchanged on either store.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from riskstream.errors import StoreError
from riskstream.store.postgres.dsn import endpoint, redact

T = TypeVar("T")

# The pool logs each failed reconnection; the store reports waiting itself (one line per
# retry, host:port, no DSN).
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

#: Errors after which the same work may succeed on a new connection (server restarting, a
#: dropped connection, a deadlock between two writers' upserts).
RETRYABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    PoolTimeout,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)

_PLACEHOLDER = re.compile(r"\?")


def to_pg(sql: str) -> str:
    """DuckDB-style ``?`` placeholders as psycopg's ``%s`` (literal ``%`` escaped)."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


class Adapter:
    """A psycopg connection that answers ``execute(sql_with_?, args)`` like DuckDB's."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self.raw = con

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        text = sql.strip().upper()
        if text in ("BEGIN", "BEGIN TRANSACTION"):
            return self.raw.execute("BEGIN")
        return self.raw.execute(to_pg(sql), list(args))  # type: ignore[arg-type]


class Connections:
    """A pool of autocommit connections to ``dsn`` with ``search_path`` set to ``schema``."""

    def __init__(self, dsn: str, schema: str, *, max_size: int = 4, wait_s: float = 2.0) -> None:
        self.dsn = dsn
        self.schema = schema
        self.where = endpoint(dsn)
        self.wait_s = wait_s
        self._probe()
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": 5},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            open=True,
            timeout=wait_s,
            name="riskstream",
        )

    def _probe(self) -> None:
        """Fail fast (one line naming host:port) when the server is not there at start."""
        try:
            with psycopg.connect(self.dsn, connect_timeout=5, autocommit=True) as con:
                con.execute(
                    pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        pgsql.Identifier(self.schema)
                    )
                )
        except psycopg.errors.InsufficientPrivilege:
            pass  # the schema may exist already; migrations say so if not
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {first_line(exc)}"
            ) from None

    def _configure(self, con: psycopg.Connection[Any]) -> None:
        con.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema)))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection() as con:
                yield con
        except PoolTimeout:
            raise psycopg.OperationalError(
                f"no connection to PostgreSQL at {self.where} within {self.wait_s:.0f}s"
            ) from None

    def close(self) -> None:
        self.pool.close()

    def retrying(
        self,
        what: str,
        fn: Callable[[psycopg.Connection[Any]], T],
        *,
        give_up_s: float,
        on_wait: Callable[[str], None] | None = None,
    ) -> T:
        """``fn(con)`` on a pooled connection, retried with backoff while the server is away.

        ``fn`` must be safe to run again after a failure (its transaction rolled back, or
        it checks whether its earlier attempt committed).
        """
        deadline = time.monotonic() + give_up_s
        delay, attempt = 0.2, 0
        while True:
            attempt += 1
            try:
                with self.connection() as con:
                    return fn(con)
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreError(
                        f"{what} failed: PostgreSQL at {self.where}: {first_line(exc)}"
                    ) from None
                if on_wait is not None:
                    on_wait(
                        f"waiting for PostgreSQL at {self.where} ({what}, attempt {attempt}): "
                        f"{first_line(exc)}"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as exc:
                raise StoreError(f"{what} failed: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, with any DSN password redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__
