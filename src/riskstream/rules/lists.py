"""Named lists for ``x in LIST`` and ``contains_any(text, LIST)``: inline values or files, reloaded on change.

Each list is prepared once per (re)load: a String Series for ``is_in`` and the normalised
keyword patterns (``" hair extensions "``) for polars' Aho-Corasick ``str.contains_any``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from riskstream.errors import RiskstreamError

log = logging.getLogger(__name__)

#: Every run of non-word characters becomes one space (Unicode-aware, same engine for text and keywords).
_NON_WORD = r"[^\w]+"


class ListLoadError(RiskstreamError):
    """A list file cannot be read when the registry is first built."""


def normalize_text(text: pl.Expr) -> pl.Expr:
    """Lower-case ``text``, turn every run of non-word characters into one space and pad with spaces.

    ``"Hair-Extensions!"`` -> ``" hair extensions "``, so a padded keyword matches whole words only.
    """
    body = text.str.to_lowercase().str.replace_all(_NON_WORD, " ")
    return pl.concat_str(pl.lit(" "), body, pl.lit(" "))


def normalize_keywords(keywords: Iterable[str]) -> pl.Series:
    """Normalise keywords like :func:`normalize_text` (``" hair extensions "``), unique, blanks dropped."""
    raw = pl.Series("keywords", list(keywords), dtype=pl.String)
    body = raw.str.to_lowercase().str.replace_all(_NON_WORD, " ").str.strip_chars(" ")
    body = body.filter(body.str.len_chars() > 0).unique(maintain_order=True)
    return (" " + body + " ").alias("keywords")


@dataclass(frozen=True)
class PreparedList:
    """One loaded list and what the evaluator needs from it, built once per load."""

    name: str
    values: tuple[str, ...]
    #: the distinct values, as a String Series for ``is_in`` (exact, case-sensitive match)
    members: pl.Series = field(repr=False, compare=False)
    #: normalised, padded, distinct keywords for ``contains_any`` (whole-word, case-insensitive)
    keywords: pl.Series = field(repr=False, compare=False)

    @classmethod
    def build(cls, name: str, values: Iterable[str]) -> PreparedList:
        """Strip each value, drop blanks, and prepare the Series."""
        clean = tuple(v for v in (str(x).strip() for x in values) if v)
        members = pl.Series(name, list(dict.fromkeys(clean)), dtype=pl.String)
        return cls(name, clean, members, normalize_keywords(clean))


def read_list_file(path: Path) -> list[str]:
    """Entries of a list file: one per line, stripped; blank lines and ``#`` comments skipped."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    entries = (line.strip() for line in text.splitlines())
    return [e for e in entries if e and not e.startswith("#")]


class ListValues(Mapping[str, PreparedList]):
    """Read-only set of prepared lists (name -> :class:`PreparedList`), as rule evaluation sees them."""

    def __init__(self, lists: Mapping[str, Sequence[str]] | None = None) -> None:
        self._lists: dict[str, PreparedList] = {
            name: PreparedList.build(name, values) for name, values in (lists or {}).items()
        }

    def __getitem__(self, name: str) -> PreparedList:
        try:
            return self._lists[name]
        except KeyError:
            raise KeyError(f"list {name!r} is not loaded") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)

    def types(self) -> dict[str, str]:
        """``{name: "str"}`` for every list, ready for ``RuleContext.lists``."""
        return dict.fromkeys(self._lists, "str")


@dataclass
class _FileState:
    """Where a file-backed list comes from and the (mtime_ns, size) it was last loaded at."""

    path: Path
    stamp: tuple[int, int] | None = None


class ListRegistry(ListValues):
    """Lists from inline values and files; :meth:`refresh` reloads files whose mtime or size changed.

    Relative file paths are resolved against ``base_dir`` (normally the spec file's folder).
    A file that cannot be read at construction raises :class:`ListLoadError`; later, a file that
    disappears or fails to read keeps its last good values (logged) so the run goes on.
    """

    def __init__(
        self,
        inline: Mapping[str, Sequence[str]] | None = None,
        files: Mapping[str, str | os.PathLike[str]] | None = None,
        *,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(inline)
        base = Path(base_dir) if base_dir is not None else Path()
        self._files: dict[str, _FileState] = {}
        for name, raw in (files or {}).items():
            if name in self._lists:
                raise ValueError(f"list {name!r} is defined twice (values and file)")
            path = Path(raw)
            self._files[name] = _FileState(path if path.is_absolute() else base / path)
        for name, state in self._files.items():
            try:
                self._load(name, state)
            except OSError as exc:
                raise ListLoadError(
                    f"list {name!r}: cannot read {state.path}: {exc.strerror or exc}"
                ) from exc

    def _load(self, name: str, state: _FileState) -> None:
        """Read one file and replace the prepared list (raises OSError)."""
        st = state.path.stat()
        values = read_list_file(state.path)
        state.stamp = (st.st_mtime_ns, st.st_size)
        lists = dict(self._lists)
        lists[name] = PreparedList.build(name, values)
        self._lists = lists  # swap the whole dict: readers never see a half-updated mapping

    def refresh(self) -> list[str]:
        """Reload every file whose (mtime, size) changed since its last load; return their names."""
        reloaded: list[str] = []
        for name, state in self._files.items():
            try:
                st = state.path.stat()
                if (st.st_mtime_ns, st.st_size) == state.stamp:
                    continue
                self._load(name, state)
            except OSError as exc:
                log.warning(
                    "list %r: cannot reload %s (keeping %d old entries): %s",
                    name,
                    state.path,
                    len(self._lists[name].values),
                    exc,
                )
                continue
            reloaded.append(name)
        return reloaded

    def files(self) -> dict[str, Path]:
        """File-backed list names -> resolved paths."""
        return {name: state.path for name, state in self._files.items()}
