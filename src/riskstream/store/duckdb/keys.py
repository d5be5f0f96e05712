"""The key and slot dictionaries of the compact tables, cached by the process that writes.

Bucket, sketch and feature-value rows are stored with integer ids: ``slots`` for
(metric, tier) and ``keys`` for the key text (see schema version 2). The ids this
process assigned are cached and checked against the table sizes in each transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from riskstream.core.keys import HASH, gather_keys, keyed
from riskstream.store.duckdb.connection import Connection


class KeyDictionary(Connection):
    """Key and slot ids: looked up, and assigned inside the caller's transaction."""

    _dict: _Dictionary | None

    def _ids(self, con: duckdb.DuckDBPyConnection) -> _Dictionary:
        sizes = con.execute(
            "SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM slots)"
        ).fetchall()[0]
        d = self._dict
        if d is None or (d.size, len(d.slots)) != tuple(sizes):
            keys = pl.from_arrow(con.sql("SELECT key, kid FROM keys").to_arrow_table())
            assert isinstance(keys, pl.DataFrame)
            slots = {
                (str(m), str(t)): int(i)
                for i, m, t in con.execute("SELECT slot, metric, tier FROM slots").fetchall()
            }
            runs = [keyed(keys.cast({"kid": pl.UInt32}))] if keys.height else []
            d = self._dict = _Dictionary(runs, keys.height, slots)
        return d

    def key_id(self, con: duckdb.DuckDBPyConnection, key: str) -> int | None:
        """The id of ``key`` (None if never stored).

        A process that keeps the store (the engine, a kept read connection) looks it up in
        the cached key dictionary by binary search on the key hash; a one-shot reader scans.
        """
        if self.read_only and not self.keep_open:
            rows = con.execute("SELECT kid FROM keys WHERE key = ?", [key]).fetchall()
            return int(rows[0][0]) if rows else None
        d = self._ids(con)
        h = pl.Series([key]).hash()[0]
        for run in d.runs:
            col = run[HASH].to_numpy()
            lo, hi = np.searchsorted(col, h, "left"), np.searchsorted(col, h, "right")
            for i in range(int(lo), int(hi)):
                if run["key"][i] == key:
                    return int(run["kid"][i])
        return None

    def _slot(self, con: duckdb.DuckDBPyConnection, d: _Dictionary, metric: str, tier: str) -> int:
        slot = d.slots.get((metric, tier))
        if slot is None:
            slot = len(d.slots)
            con.execute("INSERT INTO slots VALUES (?, ?, ?)", [slot, metric, tier])
            d.slots[(metric, tier)] = slot
        return slot

    def _key_ids(
        self, con: duckdb.DuckDBPyConnection, d: _Dictionary, frames: list[pl.DataFrame]
    ) -> pl.DataFrame:
        """``key -> kid`` for every key of ``frames``, adding new keys to the dictionary.

        The dictionary is a few runs sorted by key hash: a lookup is a binary search per key
        (:func:`gather_keys`), not a scan or a hash table over every key ever seen.
        """
        keys = pl.concat([f.select("key") for f in frames]).unique()
        cand = gather_keys(d.runs, keys["key"], {"key": pl.String(), "kid": pl.UInt32()})
        found = keys.join(cand.select("key", "kid"), on="key", how="left")
        new = found.filter(pl.col("kid").is_null()).select("key")
        if not new.height:
            return found
        new = new.with_columns((pl.int_range(pl.len(), dtype=pl.UInt32) + d.size).alias("kid"))
        con.register("_k", new.select("kid", "key").to_arrow())
        con.execute("INSERT INTO keys SELECT kid, key FROM _k")
        con.unregister("_k")
        d.runs.append(keyed(new))
        d.size += new.height
        if len(d.runs) > 8:
            d.runs = [keyed(pl.concat([r.select("key", "kid", HASH) for r in d.runs]))]
        return pl.concat([found.filter(pl.col("kid").is_not_null()), new])


@dataclass
class _Dictionary:
    """Ids of key texts and of (metric, tier) slots, as stored in ``keys`` and ``slots``."""

    runs: list[pl.DataFrame]  # key, kid, _h: each sorted by _h (the key's hash)
    size: int
    slots: dict[tuple[str, str], int]
