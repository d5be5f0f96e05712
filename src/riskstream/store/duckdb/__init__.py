"""The embedded store: one DuckDB file in the data dir (see ``store.DuckDBStore``)."""

from riskstream.store.duckdb.store import DB_NAME, DuckDBStore, Store

__all__ = ["DB_NAME", "DuckDBStore", "Store"]
