"""The heuristic filters of the Nemotron-CC text path: Gopher quality and repetition, C4, FineWeb.

Every rule has a document built to trip it (with its exact reason) and one built not to.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curator.filter_stage import FilterStage
from stages.c4_filters import C4Quality
from stages.fineweb_filters import FineWebQuality
from stages.gopher_filters import (
    GopherQuality,
    GopherRepetition,
    duplicated_ngram_chars,
    ngram_keys,
    top_ngram_chars,
)

ARTICLE = (
    "The city council voted on Tuesday to expand the bicycle lane network across the northern "
    "districts, a plan that has been debated for almost three years.\n"
    "Supporters say the new lanes will make commuting safer for thousands of residents who already "
    "ride to work, and they point to a recent study showing that accidents dropped sharply on streets "
    "where protected lanes were built.\n"
    "Opponents, mostly shop owners along the main avenue, worry that removing parking spaces will "
    "drive customers away. Several of them spoke at the meeting and asked the council to delay the "
    "vote until a full economic review could be completed.\n"
    "The mayor acknowledged those concerns but argued that similar projects in other cities had "
    "increased foot traffic rather than reduced it. She promised that the transport department would "
    "publish monthly figures on parking use, cycling volumes and sales tax receipts, so that residents "
    "could judge the results for themselves.\n"
    "Construction is expected to begin in the spring and to take about eighteen months. The first "
    "section will connect the railway station with the university campus, where demand is highest. "
    "Later phases will extend the lanes to the hospital, the new library and the riverside park.\n"
    "Funding comes from a regional transport grant together with a smaller contribution from the city "
    "budget. Officials estimate the total cost at roughly twelve million dollars, which includes new "
    "traffic signals, drainage work and lighting along the busiest corridors.\n"
    "Local cycling groups welcomed the decision and said they would organise volunteer rides to help "
    "newcomers learn the routes. A public consultation on the detailed design will open next month, "
    "and residents can send comments by mail or at any of the three planned information evenings."
)

WORDS = ("river mountain forest meadow valley harbor island canyon desert glacier prairie lagoon "
         "orchard vineyard village castle bridge tower market garden station library museum theater "
         "kitchen window carpet mirror candle basket pocket ladder hammer needle pillow blanket").split()
"""Distinct nouns for building documents whose lines must not repeat."""


def reason(stage: FilterStage, text: str | None) -> str | None:
    """The drop reason a stage gives one document (None: kept)."""
    out = stage.process(pa.table({"text": pa.array([text], pa.string())}))
    return out.column("drop_reason")[0].as_py()


def sentences(count: int, start: int = 0) -> list[str]:
    """Distinct plain English sentences of eight words or so."""
    return [f"The {WORDS[(start + i) % len(WORDS)]} near the {WORDS[(start + 3 * i + 1) % len(WORDS)]} "
            f"was quiet on day {start + i}." for i in range(count)]


def test_article_is_about_300_words_and_passes_every_filter() -> None:
    assert 280 <= len(ARTICLE.split()) <= 340
    for stage in (GopherQuality(), GopherRepetition(), FineWebQuality(), C4Quality()):
        result = stage.run_batch(pa.table({"text": [ARTICLE]}))
        assert result.kept.num_rows == 1, (stage.name, result.rejected)
    c4 = C4Quality().process(pa.table({"text": [ARTICLE]}))
    assert c4.column("text").to_pylist() == [ARTICLE]
    assert c4.column("c4_lines_removed").to_pylist() == [0]


def test_registered_names() -> None:
    assert [s.name for s in (GopherQuality, GopherRepetition, C4Quality, FineWebQuality)] == [
        "filter.gopher_quality", "filter.gopher_repetition", "filter.c4", "filter.fineweb_quality"]


# ---------------------------------------------------------------- Gopher quality

STOPLESS = " ".join(["Quick brown foxes jump over lazy dogs near green hills."] * 6)  # 60 words, no stop words

GOPHER_QUALITY_CASES = [
    # (reason, a document that trips the rule, a close document that does not)
    ("gopher_short_document", " ".join(ARTICLE.split()[:49]), " ".join(ARTICLE.split()[:50])),
    ("gopher_long_document", "Rivers carry water to the sea. " * 16_667, ARTICLE),  # 100,002 words
    ("gopher_mean_word_length", "it is so. we go to a ox. " * 10, ARTICLE),
    ("gopher_mean_word_length", "the internationalization characteristically " * 30, ARTICLE),
    ("gopher_symbol_ratio", ARTICLE + "\n" + " ".join(["#news"] * 40), ARTICLE + "\n" + " ".join(["#news"] * 20)),
    ("gopher_symbol_ratio", ARTICLE.replace(",", "...", 40) + " and..." * 30, ARTICLE.replace(",", "...", 10)),
    ("gopher_bullet_lines", "\n".join(f"• the {w} is good and fine" for w in WORDS[:10]),
     "\n".join([*(f"• the {w} is good and fine" for w in WORDS[:9]), "the end of the list is here"])),
    ("gopher_ellipsis_lines", "\n".join(s[:-1] + ("..." if i < 4 else ".") for i, s in enumerate(sentences(10))),
     "\n".join(s[:-1] + ("..." if i < 3 else ".") for i, s in enumerate(sentences(10)))),
    ("gopher_alpha_words", ARTICLE + "\n" + " ".join(str(i) for i in range(100)),
     ARTICLE + "\n" + " ".join(str(i) for i in range(50))),
    ("gopher_stop_words", STOPLESS, STOPLESS + " the fox and"),
]


@pytest.mark.parametrize("expected,trips,passes", GOPHER_QUALITY_CASES)
def test_gopher_quality_rules(expected: str, trips: str, passes: str) -> None:
    stage = GopherQuality()
    assert reason(stage, trips) == expected
    assert reason(stage, passes) is None


def test_gopher_quality_first_failing_rule_wins_and_thresholds_are_parameters() -> None:
    assert reason(GopherQuality(), "it is so") == "gopher_short_document"  # also too short words
    assert reason(GopherQuality(max_words=100), ARTICLE) == "gopher_long_document"
    assert reason(GopherQuality(min_stop_words=1000), ARTICLE) == "gopher_stop_words"
    assert reason(GopherQuality(stop_words=["zebra"]), ARTICLE) == "gopher_stop_words"


# ---------------------------------------------------------------- Gopher repetition


def test_ngram_fractions_follow_datatrove_definitions() -> None:
    tokens = "a bb a bb a bb c".split()
    ids = np.array([{"a": 0, "bb": 1, "c": 2}[t] for t in tokens])
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])])
    keys = ngram_keys(ids, 4)
    # most frequent 2-gram "a bb" (4 characters with its space) occurs 3 times
    assert top_ngram_chars(keys[2], offsets, 2) == 4 * 3
    # ties go to the first seen: "a bb a" and "bb a bb" both occur twice; "a bb a" is first
    assert top_ngram_chars(keys[3], offsets, 3) == 6 * 2
    # scan: "abb" new, "bba" new, "abb" seen -> 3 chars, jump 2 -> "abb" seen -> 3 chars, jump 2 -> end
    assert duplicated_ngram_chars(keys[2], offsets, 2) == 6
    # "a bb a" new, "bb a bb" new, "a bb a" seen -> 4 chars, jump 3 -> end ("bb c" is not a 3-gram start)
    assert duplicated_ngram_chars(keys[3], offsets, 3) == 4
    assert duplicated_ngram_chars(ngram_keys(np.arange(9), 5)[5], np.arange(10), 5) == 0


PARAGRAPHS = ARTICLE.split("\n")  # seven distinct paragraphs
PHRASE = ("Engineers from the regional authority inspected every junction on the proposed route last "
          "winter, measuring traffic speeds, counting pedestrians at rush hour, photographing damaged "
          "kerbs, and interviewing delivery drivers about loading zones before drafting a report that "
          "recommended wider crossings near schools.")  # 45 words, no n-gram repeated within


def with_phrase(copies: int) -> str:
    """The article with PHRASE appended ``copies`` times to its last line."""
    return " ".join([ARTICLE, *[PHRASE] * copies])


REPETITION_CASES = [
    ("gopher_dup_para_fraction", "\n\n".join(PARAGRAPHS + PARAGRAPHS[:4]), "\n\n".join(PARAGRAPHS)),
    ("gopher_dup_para_char_fraction",
     "\n\n".join([ARTICLE, ARTICLE, *sentences(8)]), "\n\n".join([ARTICLE, *sentences(8)])),
    ("gopher_dup_line_fraction", "\n".join(PARAGRAPHS + PARAGRAPHS[:4]), "\n".join([*PARAGRAPHS, PARAGRAPHS[0]])),
    ("gopher_dup_line_char_fraction",
     "\n".join([ARTICLE.replace("\n", " "), *sentences(8), ARTICLE.replace("\n", " ")]), ARTICLE),
    ("gopher_top_2gram", " ".join(f"New York {w}." for w in WORDS), ARTICLE),
]


@pytest.mark.parametrize("expected,trips,passes", REPETITION_CASES)
def test_gopher_repetition_rules(expected: str, trips: str, passes: str) -> None:
    stage = GopherRepetition()
    assert reason(stage, trips) == expected
    assert reason(stage, passes) is None


@pytest.mark.parametrize("n,limit", [(2, 0.2), (3, 0.18), (4, 0.16)])
def test_gopher_top_ngram_rule_alone(n: int, limit: float) -> None:
    stage = GopherRepetition(top_ngram_fractions={n: limit}, dup_ngram_fractions={})
    repeated = " ".join(f"one two three four {w}." for w in WORDS)
    assert reason(stage, repeated) == f"gopher_top_{n}gram"
    assert reason(stage, ARTICLE) is None


@pytest.mark.parametrize("n,limit", [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)])
def test_gopher_duplicated_ngram_rule_alone(n: int, limit: float) -> None:
    stage = GopherRepetition(top_ngram_fractions={}, dup_ngram_fractions={n: limit})
    assert reason(stage, with_phrase(3)) == f"gopher_dup_{n}gram"
    assert reason(stage, with_phrase(1)) is None


def test_gopher_repetition_checks_5grams_first_by_default() -> None:
    assert reason(GopherRepetition(), with_phrase(3)) == "gopher_dup_5gram"
    assert reason(GopherRepetition(), with_phrase(1)) is None


# ---------------------------------------------------------------- FineWeb

LONG_LINES = [f"The {w} by the old road was painted again this year" for w in WORDS]  # > 30 chars, no end mark

FINEWEB_CASES = [
    ("fineweb_line_punct_ratio", "\n".join(LONG_LINES[:9] + [LONG_LINES[9] + "."]),  # 1 in 10 lines
     "\n".join(LONG_LINES[:8] + [line + "." for line in LONG_LINES[8:10]])),  # 2 in 10
    ("fineweb_short_line_ratio", "\n".join([f"A {w}." for w in WORDS[:7]] + [s + "." for s in LONG_LINES[10:13]]),
     "\n".join([f"A {w}." for w in WORDS[:6]] + [s + "." for s in LONG_LINES[10:14]])),
    ("fineweb_char_dup_ratio", ARTICLE + "\n" + ARTICLE.splitlines()[0], ARTICLE),
    ("fineweb_list_ratio", "\n".join(f"{w}ification extraordinarily." for w in WORDS[:11]),  # 10 breaks / 33 tokens
     "\n".join(f"{w}ification extraordinarily." for w in WORDS[:8])),  # 7 / 24
]


@pytest.mark.parametrize("expected,trips,passes", FINEWEB_CASES)
def test_fineweb_rules(expected: str, trips: str, passes: str) -> None:
    stage = FineWebQuality()
    assert reason(stage, trips) == expected
    assert reason(stage, passes) is None


def test_fineweb_ignores_blank_lines_and_typographic_quotes_end_lines() -> None:
    assert reason(FineWebQuality(), ARTICLE.replace("\n", "\n\n\n")) is None
    quoted = "\n".join(f"“The {w} by the old road was painted again,” she said" + "”" for w in WORDS[:10])
    assert reason(FineWebQuality(), quoted) is None


# ---------------------------------------------------------------- C4


def c4(text: str | None, **params: object) -> tuple[str | None, str | None, int | None]:
    """C4's (text, reason, lines removed) for one document."""
    out = C4Quality(**params).process(pa.table({"text": pa.array([text], pa.string())}))
    return tuple(out.column(name)[0].as_py() for name in ("text", "drop_reason", "c4_lines_removed"))


def test_c4_line_removal_exact_text() -> None:
    good = sentences(5)
    text = "\n".join([
        "  " + good[0] + "  ",                                     # kept, stripped
        "Navigation menu",                                         # no terminal punctuation
        "Read more...",                                            # ends with an ellipsis
        "Thanks!",                                                 # fewer than 3 words
        good[1],
        "Please enable JavaScript to view the comments.",          # javascript
        "By using this site you agree to our Terms of Use.",       # policy
        "This website uses cookies to improve your experience.",   # policy
        "",                                                        # blank: removed, not counted
        good[2] + "[1]",                                           # citation removed, line kept
        "See " + "x" * 1001 + " for details.",                     # a word over 1000 characters
        good[3],
        "He said “it works”",                                      # ends with a typographic quote: kept
        good[4] + " [citation needed]",
    ])
    edited, why, removed = c4(text)
    assert why is None
    assert edited == "\n".join([good[0], good[1], good[2], good[3], "He said “it works”", good[4]])
    assert removed == 7


def test_c4_line_rules_can_be_switched_off() -> None:
    text = "\n".join([*sentences(5), "Please enable JavaScript to view the comments."])
    assert c4(text)[0] == "\n".join(sentences(5))
    assert c4(text, filter_javascript=False)[0] == text
    assert c4("\n".join([*sentences(5), "Our privacy policy changed."]), filter_policy=False)[2] == 0


C4_DOC_CASES = [
    ("c4_lorem_ipsum", sentences(5) + ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."],
     sentences(5) + ["Lorem ipsum dolor sit amet"]),  # no end mark: the line goes, the document stays
    ("c4_curly_bracket", sentences(5) + ["Call the function with {key: value} as its argument."],
     sentences(5) + ["function main() {"]),
    ("c4_curly_bracket", sentences(5) + ["Call the function with {key: value} as its argument."],
     sentences(5) + ["In JavaScript, write {key: value} for an object."]),  # javascript lines go first
    ("c4_too_few_sentences", sentences(4) + ["Short menu", "Home"], sentences(5) + ["Short menu"]),
    ("c4_too_few_sentences", ["The sun rose. The birds sang. The wind blew. The rain fell."],
     ["The sun rose. The birds sang. The wind blew. The rain fell. The day ended."]),
]


@pytest.mark.parametrize("expected,trips,passes", C4_DOC_CASES)
def test_c4_document_rules(expected: str, trips: list[str], passes: list[str]) -> None:
    original = "\n".join(trips)
    text, why, _ = c4(original)
    assert why == expected
    assert text == original  # a dropped document keeps its text
    assert c4("\n".join(passes))[1] is None


def test_c4_counts_sentences_not_just_lines() -> None:
    assert len(ARTICLE.split("\n")) == 7  # 13 sentences on 7 lines
    assert c4(ARTICLE, min_sentences=13)[1] is None
    assert c4(ARTICLE, min_sentences=14)[1] == "c4_too_few_sentences"


# ---------------------------------------------------------------- all filters

ALL_STAGES = [GopherQuality, GopherRepetition, FineWebQuality, C4Quality]


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("stage_class", ALL_STAGES)
def test_empty_and_none_texts_get_a_reason(stage_class: type[FilterStage], text_type: pa.DataType) -> None:
    batch = pa.table({"text": pa.chunked_array([pa.array([None, ""], text_type), pa.array(["  \n\n ", ARTICLE], text_type)])})
    out = stage_class().process(batch)
    assert out.column("drop_reason").to_pylist() == ["empty_text"] * 3 + [None]
    result = stage_class().run_batch(batch)
    assert dict(result.stats.drops) == {"empty_text": 3}
    assert stage_class().process(batch.slice(0, 0)).num_rows == 0


@pytest.mark.parametrize("stage_class,bad,expected", [
    (GopherQuality, STOPLESS, "gopher_stop_words"),
    (GopherRepetition, "\n".join(PARAGRAPHS + PARAGRAPHS[:4]), "gopher_dup_line_fraction"),
    (FineWebQuality, "\n".join(LONG_LINES[:10]), "fineweb_line_punct_ratio"),
    (C4Quality, "\n".join(sentences(4) + ["Home"]), "c4_too_few_sentences"),
])
def test_condition_restricts_each_filter(stage_class: type[FilterStage], bad: str, expected: str) -> None:
    batch = pa.table({
        "id": ["a", "b", "c", "d"],
        "text": [bad, bad, ARTICLE, None],
        "quality_label": ["low", "high", "low", "high"],
    })
    stage = stage_class(condition="quality_label in ['low', 'medium_low']")
    assert "quality_label" in stage.required_columns()
    out = stage.process(batch)
    assert out.column("drop_reason").to_pylist() == [expected, None, None, None]
    result = stage.run_batch(batch)
    assert result.kept.column("id").to_pylist() == ["b", "c", "d"]
    assert result.kept.column("text").to_pylist() == [bad, ARTICLE, None]  # untouched
    if stage_class is C4Quality:
        assert out.column("c4_lines_removed").to_pylist() == [1, None, 0, None]
        assert out.column("c4_lines_removed").type == pa.int32()


def test_c4_condition_leaves_unmatched_rows_unedited() -> None:
    messy = "\n".join([*sentences(5), "Navigation menu"])
    batch = pa.table({"text": [messy, messy], "quality_label": ["low", "high"]})
    out = C4Quality(condition="quality_label == 'low'")(batch)
    assert out.column("text").to_pylist() == ["\n".join(sentences(5)), messy]
    assert out.column("c4_lines_removed").to_pylist() == [1, None]
    nothing = C4Quality(condition="quality_label == 'none'")(batch)
    assert nothing.column("text").to_pylist() == [messy, messy]
