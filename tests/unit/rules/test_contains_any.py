"""contains_any: whole words, phrases, case, punctuation, thousands of keywords, fast."""

from __future__ import annotations

import random
import re
import string
import time
from collections.abc import Sequence

import polars as pl
import pytest

from riskstream.rules import ListValues, RuleContext, compile_expression
from riskstream.rules.lists import normalize_keywords

CTX = RuleContext(fields={"title": "str"}, lists={"words": "str"})


def matches(keywords: list[str], texts: Sequence[str | None]) -> list[bool]:
    """Evaluate ``contains_any(title, words)`` with ``keywords`` over ``texts``."""
    compiled = compile_expression("contains_any(title, words)", CTX)
    frame = pl.DataFrame({"title": pl.Series(texts, dtype=pl.String)})
    return frame.select(compiled.expr(ListValues({"words": keywords})).alias("r"))["r"].to_list()


def test_whole_words_only() -> None:
    texts = ["hair extensions", "one extension", "extensionsX", "multi-extension", "x_extension"]
    assert matches(["extension"], texts) == [False, True, False, True, False]


def test_phrases() -> None:
    texts = ["Best hair extensions!", "hair and extensions", "hairextensions", "HAIR\n\textensions"]
    assert matches(["hair extensions"], texts) == [True, False, False, True]


def test_case_insensitive_both_ways() -> None:
    assert matches(["ViAgRa"], ["VIAGRA pills", "viagra", "Viagra.", "viagras"]) == [
        True,
        True,
        True,
        False,
    ]


def test_unicode_case_and_words() -> None:
    assert matches(
        ["Écharpe", "straße"], ["ÉCHARPE rouge", "échar pe", "Die STRASSE", "straße!"]
    ) == [
        True,
        False,
        False,
        True,
    ]


def test_punctuation_in_text_and_keywords() -> None:
    keywords = ["e-cig", "  Gift   Card ", "c.b.d", "!!!", ""]
    texts = ["cheap E-CIG here", "e cig", "gift-card", "giftcard", "C.B.D oil", "wow!!!", "", None]
    assert matches(keywords, texts) == [True, True, True, False, True, False, False, False]


def test_keyword_at_edges_and_repeated() -> None:
    assert matches(["gun"], ["gun", "gun,gun", "a gun", "gun a", "(gun)", "guns"]) == [
        True,
        True,
        True,
        True,
        True,
        False,
    ]


def test_empty_list_is_false_and_null_stays_null() -> None:
    compiled = compile_expression("contains_any(title, words)", CTX, expect_bool=False)
    frame = pl.DataFrame({"title": pl.Series(["a", None], dtype=pl.String)})
    values = frame.select(compiled.expr(ListValues({"words": ["!!"]})).alias("r"))["r"].to_list()
    assert values == [False, None]


def test_inline_keywords() -> None:
    compiled = compile_expression("contains_any(title, ['Gift card', 'e-cig'])", CTX)
    frame = pl.DataFrame({"title": ["my GIFT CARD", "e cig", "gift"]})
    assert frame.select(compiled.expr(ListValues()).alias("r"))["r"].to_list() == [
        True,
        True,
        False,
    ]


def test_normalize_keywords_dedupes_and_pads() -> None:
    assert normalize_keywords(["Hair  Extensions", "hair-extensions", "x", "?!", ""]).to_list() == [
        " hair extensions ",
        " x ",
    ]


def keyword_words(keywords: list[str]) -> set[tuple[str, ...]]:
    """Each keyword as its tuple of lower-cased words (blank keywords dropped)."""
    return {tuple(re.findall(r"\w+", k.lower())) for k in keywords} - {()}


def reference(wanted: set[tuple[str, ...]], text: str, sizes: set[int] | None = None) -> bool:
    """Brute force: some keyword's words appear consecutively among the text's words."""
    words = re.findall(r"\w+", text.lower())
    sizes = sizes if sizes is not None else {len(k) for k in wanted}
    return any(
        tuple(words[i : i + size]) in wanted for size in sizes for i in range(len(words) - size + 1)
    )


def test_five_thousand_keywords_fast_and_exact() -> None:
    rng = random.Random(7)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(8000)]
    keywords = [
        " ".join(rng.sample(vocab, rng.randint(1, 3))).title()
        if rng.random() < 0.5
        else rng.choice(vocab)
        for _ in range(5000)
    ]
    texts = [
        rng.choice([", ", " ", "-", "! "]).join(rng.sample(vocab, rng.randint(0, 15)))
        for _ in range(20_000)
    ]
    lists = ListValues({"words": keywords})  # keyword preparation happens here, once
    compiled = compile_expression("contains_any(title, words)", CTX)
    frame = pl.DataFrame({"title": texts})
    frame.select(compiled.expr(lists).alias("r"))  # warm-up
    start = time.perf_counter()
    result = frame.select(compiled.expr(lists).alias("r"))["r"].to_list()
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"20k rows x 5000 keywords took {elapsed:.2f}s"
    wanted = keyword_words(keywords)
    sizes = {len(k) for k in wanted}
    assert result == [reference(wanted, text, sizes) for text in texts]
    assert 0 < sum(result) < len(result)


@pytest.mark.parametrize("text", ["a", "", "  ", "é", "a_b c"])
def test_reference_agrees_on_trivia(text: str) -> None:
    assert matches(["a"], [text]) == [reference(keyword_words(["a"]), text)]
