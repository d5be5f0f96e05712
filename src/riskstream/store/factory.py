"""Open the store a spec names: the embedded DuckDB file or a shared PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from riskstream.errors import StoreError
from riskstream.spec.model import PipelineSpec
from riskstream.store.duckdb import Store as DuckStore
from riskstream.store.protocol import Store

if TYPE_CHECKING:
    from riskstream.store.postgres import PgStore

#: Either backend (``Store`` is the protocol both implement; prefer it in signatures).
AnyStore: TypeAlias = "DuckStore | PgStore"

ENGINE_ID_FILE = "engine-id"


def store_dsn(spec: PipelineSpec, override: str | None = None) -> str | None:
    """The PostgreSQL DSN to use, or None for the DuckDB store.

    ``override`` (``--store-dsn``) wins; otherwise a ``kind: postgres`` spec reads the
    environment variable ``store.dsn_env``. The DSN never comes from the spec itself.
    """
    if override:
        return override
    if spec.store.kind != "postgres":
        return None
    dsn = os.environ.get(spec.store.dsn_env, "").strip()
    if not dsn:
        raise StoreError(
            f"store.kind is postgres but ${spec.store.dsn_env} is not set "
            "(export the DSN, e.g. the one `make postgres` prints, or pass --store-dsn)"
        )
    return dsn


def engine_id(data_dir: Path) -> str:
    """A stable id for the engine that owns ``data_dir`` (created on first use)."""
    path = Path(data_dir) / ENGINE_ID_FILE
    try:
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = uuid.uuid4().hex[:16]
        path.write_text(ident + "\n")
    except OSError as exc:
        raise StoreError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    return ident


def open_store(
    spec: PipelineSpec,
    data_dir: Path,
    dsn: str | None = None,
    *,
    read_only: bool = False,
    engine: bool = False,
    log: Callable[[str], None] | None = None,
) -> AnyStore:
    """The store for ``spec``: PostgreSQL when a DSN is given or the spec says so, else DuckDB.

    ``engine``: the caller is an engine writing checkpoints (its id comes from ``data_dir``);
    readers (query, the API) see every engine's cases.
    """
    url = store_dsn(spec, dsn)
    if url is None:
        # An engine keeps the file open while it runs (store/duckdb/held.py).
        return DuckStore(data_dir, read_only=read_only, hold=engine and not read_only)
    from riskstream.store.postgres import PgStore

    return PgStore(
        url,
        spec.store.schema_,
        pipeline=spec.name,
        engine=engine_id(data_dir) if engine else None,
        read_only=read_only,
        log=log,
    )


def _implements_protocol(store: AnyStore) -> Store:
    """mypy checks here that both backends implement the ``Store`` protocol."""
    return store
