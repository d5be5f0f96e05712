"""Named lists: inline and file-backed, reloaded when the file's mtime or size changes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pytest

from riskstream.rules import (
    ListLoadError,
    ListRegistry,
    ListValues,
    RuleContext,
    compile_expression,
)


def write(path: Path, text: str, *, mtime_ns: int | None = None) -> None:
    """Write ``text`` and optionally force the file's mtime."""
    path.write_text(text, encoding="utf-8")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_file_format(tmp_path: Path) -> None:
    write(tmp_path / "w.txt", "\ufeff# risky words\n  hair extensions  \n\n#x\nviagra\r\nviagra\n")
    registry = ListRegistry(files={"w": "w.txt"}, base_dir=tmp_path)
    assert registry["w"].values == ("hair extensions", "viagra", "viagra")
    assert registry["w"].members.to_list() == ["hair extensions", "viagra"]
    assert registry["w"].keywords.to_list() == [" hair extensions ", " viagra "]
    assert registry.types() == {"w": "str"}


def test_inline_values_and_mapping_protocol() -> None:
    registry = ListRegistry(inline={"shops": ["shop_13", " shop_99 ", ""]})
    assert registry["shops"].values == ("shop_13", "shop_99")
    assert list(registry) == ["shops"] and len(registry) == 1 and "shops" in registry
    with pytest.raises(KeyError, match="list 'nope' is not loaded"):
        registry["nope"]


def test_refresh_reloads_changed_files_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    write(a, "one\n", mtime_ns=1_000_000_000)
    write(b, "x\n", mtime_ns=1_000_000_000)
    registry = ListRegistry(files={"a": a, "b": b})
    assert registry.refresh() == []
    write(a, "one\ntwo\n", mtime_ns=1_000_000_000)  # size changed, same mtime
    assert registry.refresh() == ["a"]
    assert registry["a"].values == ("one", "two")
    write(a, "uno\ntwo\n", mtime_ns=2_000_000_000)  # same size, new mtime
    assert registry.refresh() == ["a"]
    assert registry["a"].values == ("uno", "two")
    assert registry.refresh() == []
    assert registry["b"].values == ("x",)


def test_rules_see_reloaded_values(tmp_path: Path) -> None:
    path = tmp_path / "shops.txt"
    write(path, "shop_1\n", mtime_ns=1_000_000_000)
    registry = ListRegistry(files={"blocked": path})
    ctx = RuleContext(fields={"shop": "str"}, lists=registry.types())
    compiled = compile_expression("shop in blocked", ctx)
    frame = pl.DataFrame({"shop": ["shop_1", "shop_2"]})
    assert frame.select(compiled.expr(registry).alias("r"))["r"].to_list() == [True, False]
    write(path, "shop_2\n", mtime_ns=2_000_000_000)
    assert registry.refresh() == ["blocked"]
    assert frame.select(compiled.expr(registry).alias("r"))["r"].to_list() == [False, True]


def test_missing_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ListLoadError, match=r"list 'w': cannot read .*nope\.txt"):
        ListRegistry(files={"w": "nope.txt"}, base_dir=tmp_path)


def test_vanished_file_keeps_old_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "w.txt"
    write(path, "a\nb\n")
    registry = ListRegistry(files={"w": path})
    path.unlink()
    assert registry.refresh() == []
    assert registry["w"].values == ("a", "b")
    assert "cannot reload" in caplog.text
    write(path, "c\n")
    assert registry.refresh() == ["w"]
    assert registry["w"].values == tuple("c")


def test_name_defined_twice(tmp_path: Path) -> None:
    write(tmp_path / "w.txt", "a\n")
    with pytest.raises(ValueError, match="defined twice"):
        ListRegistry(inline={"w": ["a"]}, files={"w": tmp_path / "w.txt"})


def test_list_values_is_a_plain_snapshot() -> None:
    values = ListValues({"a": ["x"]})
    assert values["a"].values == ("x",)
    assert values.types() == {"a": "str"}
    assert not isinstance(values, ListRegistry)


def test_keywords_prepared_once_per_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import riskstream.rules.lists as lists_module

    calls: list[int] = []
    original = lists_module.normalize_keywords

    def counting(keywords: Iterable[str]) -> pl.Series:
        calls.append(1)
        return original(keywords)

    monkeypatch.setattr(lists_module, "normalize_keywords", counting)
    path = tmp_path / "w.txt"
    write(path, "hair extensions\n", mtime_ns=1_000_000_000)
    registry = ListRegistry(files={"w": path})
    compiled = compile_expression(
        "contains_any(t, w) or t in w", RuleContext(fields={"t": "str"}, lists={"w": "str"})
    )
    frame = pl.DataFrame({"t": ["Hair extensions!", "no"]})
    for _ in range(5):  # five batches
        assert frame.select(compiled.expr(registry).alias("r"))["r"].to_list() == [True, False]
    assert len(calls) == 1
    write(path, "no\n", mtime_ns=2_000_000_000)
    registry.refresh()
    assert frame.select(compiled.expr(registry).alias("r"))["r"].to_list() == [False, True]
    assert len(calls) == 2
