"""The PostgreSQL store backend (psycopg 3): one schema shared by many engines and readers."""

from riskstream.store.postgres.store import PgStore

__all__ = ["PgStore"]
