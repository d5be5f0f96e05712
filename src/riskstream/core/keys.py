"""Keys: the key of a dimension, 64-bit key hashes, hash-sorted runs and dense key codes.

A metric's key is its dimension's value, or the values joined by ``|`` for several
fields (:func:`key_expr`, :func:`key_of`). Frames of per-key rows are kept sorted by the
key's hash (``_h``) so the rows of a few keys are found by binary search
(:func:`gather_keys`) -- the feature state in the engine and the key dictionary in a
store both use it. Codes (:func:`key_codes`) are dense integers for a batch's keys,
exact under hash collisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

#: Column names shared by the engine and the stores: the key text, and the per-checkpoint
#: dense key code frames from the engine carry (a store maps keys to its ids once per key).
KEY: Final[str] = "key"
CODE: Final[str] = "_code"
#: Separator of a multi-field dimension's values in its key.
SEPARATOR: Final[str] = "|"

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def key_expr(dimension: Sequence[str]) -> pl.Expr:
    """The key of each row: the dimension value, or the values joined by ``|``."""
    dims = [pl.col(d).cast(pl.String) for d in dimension]
    return dims[0] if len(dims) == 1 else pl.concat_str(dims, separator=SEPARATOR)


def key_of(parts: Sequence[Any]) -> str | None:
    """:func:`key_expr` for one event's dimension values (texts); None if any is missing."""
    if any(p is None for p in parts):
        return None
    return SEPARATOR.join(p if type(p) is str else str(p) for p in parts)


#: The key-hash column of a hash-sorted frame.
HASH: Final[str] = "_h"


def key_hash(keys: pl.Series) -> U64:
    """The 64-bit hash :func:`keyed` stores in ``_h``, as NumPy (nulls get some hash too)."""
    return keys.hash().to_numpy()


def keyed(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a 64-bit hash of its key (``_h``), sorted by it, for :func:`gather_keys`."""
    if HASH not in frame.columns:
        frame = frame.with_columns(pl.col(KEY).hash().alias(HASH))
    return frame.sort(HASH)


def gather_keys(
    frames: list[pl.DataFrame], keys: pl.Series, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """The rows of ``frames`` whose key hash is one of ``keys``' hashes, without a scan.

    Each frame is kept sorted by the key's hash (sorted here, once, if it is not). A frame
    not much larger than the set of keys (a batch's feature tail) is matched by a hash
    membership test over its ``_h`` column, all such frames in one filter; a large frame
    (a dictionary of every key ever seen) by binary search, so its cost follows the keys
    and their rows, not its size. A hash collision only brings extra rows, which the exact
    key check in :func:`compute` drops. Rows come frame by frame, each frame's in hash order.
    """
    present = keys.drop_nulls()
    if not frames or not len(present):
        return pl.DataFrame(schema=schema)
    # Coded (not only hashed) here: compute asks for the same keys' codes next, from the cache.
    coded = _code(present)
    wanted = coded.uniq if coded is not None else _unique_sorted(key_hash(present))
    if not len(wanted):
        return pl.DataFrame(schema=schema)
    small: list[pl.DataFrame] = []
    parts: list[pl.DataFrame] = []
    for i, frame in enumerate(frames):
        if not frame.height:
            continue
        if HASH not in frame.columns or not frame[HASH].flags["SORTED_ASC"]:
            frame = frames[i] = keyed(frame)
        if frame.height <= 8 * len(wanted):
            small.append(frame)
            continue
        if small:
            parts.append(_members(small, wanted))
            small = []
        col = frame[HASH].to_numpy()
        lo = np.searchsorted(col, wanted, side="left")
        hi = np.searchsorted(col, wanted, side="right")
        n = hi - lo
        total = int(n.sum())
        if not total:
            continue
        first = np.cumsum(n) - n
        idx = np.repeat(lo - first, n) + np.arange(total, dtype=np.int64)
        parts.append(frame[idx])
    if small:
        parts.append(_members(small, wanted))
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts) if len(parts) > 1 else parts[0]
    return out.drop(HASH)


def _members(frames: list[pl.DataFrame], wanted: U64) -> pl.DataFrame:
    both = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
    return both.filter(pl.col(HASH).is_in(pl.Series(HASH, wanted).implode()))


def _unique_sorted(values: U64) -> U64:
    # np.unique hashes first (numpy 2.4); a sort and a neighbour test is several times faster.
    s = np.sort(values)
    if len(s) > 1:
        keep = np.ones(len(s), dtype=np.bool_)
        np.not_equal(s[1:], s[:-1], out=keep[1:])
        s = s[keep]
    return s


# ---- key codes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Coded:
    """The codes of one key column: per row, and per code its hash (sorted) and key."""

    keys: pl.Series
    hashes: U64
    codes: I64
    uniq: U64
    rep: pl.Series


#: The last few key columns coded. One batch asks for the same keys several times (every
#: group of a metric's dimension, and gather_keys before compute), so they are sorted once.
#: Entries are immutable; a hit needs equal hashes and equal strings.
_RECENT: list[_Coded] = []
_RECENT_SIZE = 4


def _code(keys: pl.Series) -> _Coded | None:
    """Codes of ``keys`` (no nulls, not empty): the ranks of their 64-bit hashes (one sort);
    each key is compared with its neighbour in that order, and a hash shared by two
    different keys gives None."""
    keys = keys.rechunk()  # gathering from a many-chunk series is several times slower
    h = key_hash(keys)
    for entry in _RECENT:
        if np.array_equal(entry.hashes, h) and entry.keys.equals(keys):
            return entry
    n = len(keys)
    perm = np.argsort(h)
    hs = h[perm]
    new = np.ones(n, dtype=np.bool_)
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    if not new.all():
        ordered = keys.gather(perm)
        same = (ordered.slice(1) == ordered.slice(0, n - 1)).to_numpy()
        if not (same | new[1:]).all():
            return None
    codes = np.empty(n, np.int64)
    codes[perm] = np.cumsum(new, dtype=np.int64) - 1
    uniq = hs[new]
    for arr in (h, codes, uniq):
        arr.setflags(write=False)
    entry = _Coded(keys, h, codes, uniq, keys.gather(perm[new]))
    _RECENT.insert(0, entry)
    del _RECENT[_RECENT_SIZE:]
    return entry


def key_codes(keys: pl.Series, others: Sequence[pl.Series] = ()) -> tuple[I64, list[I64], int]:
    """Integer codes for ``keys`` (no nulls) and, per series of ``others``, the code of each
    row's key, or -1 when that key (or null) is not among ``keys``. Codes are below the
    returned bound; equal keys get equal codes, different keys different ones. The array
    for ``keys`` may be shared (read-only); those for ``others`` are the caller's.

    The codes are the ranks of the keys' 64-bit hashes, checked against the strings (should
    two different keys share a hash, the codes come from an exact join instead). A row of
    ``others`` is looked up by binary search among those hashes, then compared with the key
    its code stands for, so a row whose hash collides with a key's but whose string differs
    gets -1.
    """
    if not len(keys):
        return np.zeros(0, np.int64), [np.full(len(o), -1, np.int64) for o in others], 0
    coded = _code(keys)
    if coded is None:
        return _exact_codes(keys, others)
    uniq, rep = coded.uniq, coded.rep
    out: list[I64] = []
    for o in others:
        if not len(o):
            out.append(np.zeros(0, np.int64))
            continue
        o = o.rechunk()
        oh = key_hash(o)
        at = np.searchsorted(uniq, oh)
        np.minimum(at, len(uniq) - 1, out=at)
        code = at.astype(np.int64)
        hit = uniq[at] == oh
        if o.null_count():
            hit &= o.is_not_null().to_numpy()
        if hit.all():
            hit = (o == rep.gather(code)).fill_null(False).to_numpy().copy()
        else:
            rows = np.flatnonzero(hit)
            same = (o.gather(rows) == rep.gather(code[rows])).fill_null(False).to_numpy()
            hit[rows[~same]] = False
        code[~hit] = -1
        out.append(code)
    return coded.codes, out, len(uniq)


def _exact_codes(keys: pl.Series, others: Sequence[pl.Series]) -> tuple[I64, list[I64], int]:
    # Only on a 64-bit hash collision among the keys of one call: codes by exact joins.
    lookup = pl.DataFrame({KEY: keys.unique()}).with_row_index("code")

    def codes(s: pl.Series) -> I64:
        joined = pl.DataFrame({KEY: s}).join(lookup, on=KEY, how="left", maintain_order="left")
        return joined["code"].cast(pl.Int64).fill_null(-1).to_numpy().copy()

    return codes(keys), [codes(o) for o in others], lookup.height


def keyed_rows(keys: pl.Series) -> I64:
    """Positions of the rows whose key is not null (queries without a key get no feature)."""
    if not keys.null_count():
        return np.arange(keys.len(), dtype=np.int64)
    return np.flatnonzero(keys.is_not_null().to_numpy())
