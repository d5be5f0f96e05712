"""Hostile-input checks on raw event bytes: nesting depth and repeated object keys.

Readers disagree on hostile JSON: a line nested 1,100 levels deep makes msgspec and the
standard library raise ``RecursionError`` (orjson refuses it), and an object that repeats a
key is read as its *first* value by Polars' NDJSON reader but as its *last* by orjson and
msgspec (what case bodies and the API show). So such events are refused before any reader
sees them: deeper than ``event.max_depth`` -> ``too_deep``; a repeated key in any object ->
``duplicate_key``. One reading everywhere.

The check is vectorized over a batch: NumPy finds the *suspect* lines (more ``{``/``[``
bytes than ``max_depth``, a key text seen twice in the line, or a backslash, which could
spell a key two ways); only those get the exact per-line check (:func:`inspect_line`).
Ordinary events are never suspect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: A JSON string with escapes, for the exact check (bytes).
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("{"), ord("[")]] = 1
_OPEN[[ord("}"), ord("]")]] = -1


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for k, v in pairs:
        if k in seen:
            raise _Repeated(k)
        seen[k] = v
    return seen


def depth_of(line: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in ``line`` (outside strings); 0 for a scalar."""
    bare = _STRING_BYTES.sub(b"", line)
    if not bare:
        return 0
    steps = _OPEN[np.frombuffer(bare, dtype=np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def inspect_line(line: bytes, max_depth: int) -> tuple[str, str] | None:
    """``(code, detail)`` when ``line`` is too deep or repeats a key in an object, else None.

    Lines that are not JSON at all are left alone (the decoder says ``not_json``).
    """
    depth = depth_of(line)
    if depth > max_depth:
        return "too_deep", f"nested {depth} levels deep, more than max_depth {max_depth}"
    try:
        json.loads(line, object_pairs_hook=_pairs)
    except _Repeated as rep:
        shown = rep.key if len(rep.key) <= 40 else rep.key[:37] + "..."
        return "duplicate_key", f"key {shown!r} appears more than once in one object"
    except (ValueError, RecursionError):
        return None  # not JSON: the decoder's business
    return None


_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_K3 = np.uint64(0x165667B19E3779F9)
_K4 = np.uint64(0x27D4EB2F165667C5)
#: ``_LOW[k]`` keeps the low ``k`` bytes of a little-endian word (``k`` = 8: all of it).
_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


_SPACED_COLON = re.compile(rb'"\s+:')
#: Padding around the joined batch, so 8-byte words can be read at any key position.
_PAD = b"\0" * 8


def check_one(
    line: bytes, max_depth: int, parsed: dict[str, object] | None = None
) -> tuple[str, str] | None:
    """:func:`inspect_line` for one line, skipped when cheap facts prove the line harmless.

    ``parsed`` is the line already decoded (any reader): a flat object without backslashes
    whose ``":`` count equals its number of keys has neither depth nor a repeated key.
    """
    openers = line.count(b"{") + line.count(b"[")
    if openers > max_depth:
        return inspect_line(line, max_depth)
    if (
        parsed is not None
        and openers == 1
        and b"\\" not in line
        and line.count(b'":') == len(parsed)
        and not _SPACED_COLON.search(line)
    ):
        return None
    return inspect_line(line, max_depth)


def suspects(lines: Sequence[bytes], max_depth: int) -> list[int]:
    """Indices of the lines that may be too deep or repeat a key (a superset; vectorized).

    NumPy over the joined batch, one pass per byte class. Per line: the number of ``{``/``[``
    bytes (at least the nesting depth) and of real quotes (not escaped by an odd run of
    backslashes; an odd number: not JSON). In a JSON line a string holds no real quote, so
    the real quote before a real quote followed by ``:`` opens that string: such strings are
    the keys (and, for a value string starting with ``:``, a few extra strings, which only
    add signatures). Each key is signed by (its first and last 8 bytes, its length, its
    line); a signature seen twice marks its line, and so does a key holding a backslash (it
    could spell another key differently) or a real quote followed by a blank (a key spaced
    from its colon). Collisions and the extra strings only add suspects; values with escapes
    (``27\\" monitor``) do not make a line suspect.
    """
    n = len(lines)
    if not n:
        return []
    buf = b"\n".join([_PAD, *lines, _PAD])
    a = np.frombuffer(buf, dtype=np.uint8)
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    bounds = np.empty(n + 1, dtype=np.int64)
    bounds[0] = len(_PAD) + 1
    np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=n) + 1, out=bounds[1:])
    bounds[1:] += len(_PAD)

    def per_line(at: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        return np.diff(np.searchsorted(at, bounds))

    bad = np.zeros(n, dtype=np.bool_)
    openers = np.flatnonzero((a | 0x20) == ord("{"))  # ``{`` or ``[`` (0x5B | 0x20 == 0x7B)
    if len(openers) > max_depth:
        bad |= per_line(openers) > max_depth
    quotes = np.flatnonzero(a == ord('"'))
    slashes = np.flatnonzero(a == ord("\\"))
    if len(slashes):
        escaped = _escaped(slashes)
        escaped = escaped[a[escaped] == ord('"')]
        quotes = np.delete(quotes, np.searchsorted(quotes, escaped))
    bad |= (per_line(quotes) & 1) == 1
    after = a[quotes + 1]
    spaced = quotes[(after == 32) | (after == 9) | (after == 13)]
    if len(spaced):
        bad[np.searchsorted(bounds, spaced, side="right") - 1] = True
    k = np.flatnonzero(after == ord(":"))
    k = k[k > 0]
    c = quotes[k]
    o = quotes[k - 1] + 1
    key_line = np.repeat(np.arange(n), per_line(c))
    if len(slashes) and len(o):
        # the key each backslash may sit in: the last one opened before it
        j = np.searchsorted(o, slashes, side="right") - 1
        inside = (j >= 0) & (slashes < c[np.maximum(j, 0)])
        bad[key_line[j[inside]]] = True
    length = c - o
    head = words[o] & _LOW[np.minimum(length, 8)]
    tail = np.where(length > 8, words[np.maximum(c - 8, 0)], np.uint64(0))
    sig = (
        head * _K1 ^ tail * _K2 ^ length.astype(np.uint64) * _K3 ^ key_line.astype(np.uint64) * _K4
    )
    ordered = np.sort(sig)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(twice):
        bad[key_line[np.isin(sig, twice)]] = True
    return [int(i) for i in np.flatnonzero(bad)]


def _escaped(slashes: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Positions of the bytes escaped by backslashes (``slashes``: sorted positions): in a run
    of consecutive backslashes the 1st, 3rd, ... escape the byte after them."""
    i = np.arange(len(slashes))
    start = np.ones(len(slashes), dtype=np.bool_)
    np.not_equal(slashes[1:], slashes[:-1] + 1, out=start[1:])
    first = np.maximum.accumulate(np.where(start, i, 0))
    out: npt.NDArray[np.intp] = slashes[((i - first) & 1) == 0] + 1
    return out


def check(lines: Sequence[bytes], max_depth: int) -> dict[int, tuple[str, str]]:
    """Index -> ``(code, detail)`` for each line that is too deep or repeats a key."""
    found: dict[int, tuple[str, str]] = {}
    for i in suspects(lines, max_depth):
        problem = inspect_line(lines[i], max_depth)
        if problem is not None:
            found[i] = problem
    return found
