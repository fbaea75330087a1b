"""FineWeb's quality filter (Penedo et al. 2024, "The FineWeb Datasets"), vectorised with Arrow."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.filter_stage import FilterStage
from stages.heuristic_filters import (
    REASON_EMPTY,
    TERMINAL_PUNCTUATION,
    empty_mask,
    ends_with_pattern,
    first_reasons,
    per_doc_sum,
    safe_ratio,
    split_lines,
    text_array,
    to_bool,
    to_float,
    tokenize,
)


class FineWebQuality(FilterStage):
    """Drop documents failing FineWeb's line-based quality rules (Penedo et al. 2024, datatrove defaults).

    Rules, in this order (the first that fails is the reason): empty text (``empty_text``);
    fraction of lines ending with terminal punctuation (trailing spaces ignored) at or below
    ``min_line_punct_ratio`` (``fineweb_line_punct_ratio``); fraction of lines of at most
    ``short_line_length`` characters at or above ``max_short_line_ratio``
    (``fineweb_short_line_ratio``); characters of lines that repeat an earlier line, over the
    text's characters without newlines, at or above ``max_char_dup_ratio``
    (``fineweb_char_dup_ratio``); line breaks per token above ``max_newline_ratio``
    (``fineweb_list_ratio``; tokens are word runs and punctuation runs, like datatrove's NLTK ones).

    Unlike datatrove, lines are the non-blank lines only (so the ratios do not depend on whether
    an extractor separates paragraphs by one newline or two), and terminal punctuation includes
    typographic and full-width variants (’ ” 。 ！ ？).
    """

    name: ClassVar[str] = "filter.fineweb_quality"
    requires: ClassVar[tuple[str, ...]] = ("text",)

    min_line_punct_ratio: float = Field(
        0.12, ge=0, le=1, description="Drop when the fraction of lines ending in terminal punctuation is <= this.")
    short_line_length: int = Field(30, ge=0, description="A line of at most this many characters is short.")
    max_short_line_ratio: float = Field(
        0.67, ge=0, le=1, description="Drop when the fraction of short lines is >= this.")
    max_char_dup_ratio: float = Field(
        0.01, ge=0, le=1, description="Drop when the fraction of characters in duplicated lines is >= this.")
    max_newline_ratio: float = Field(
        0.3, ge=0, description="Drop when line breaks per token are > this (list-like documents).")
    terminal_punctuation: list[str] = Field(
        default_factory=lambda: list(TERMINAL_PUNCTUATION),
        description="Line endings counted as terminal punctuation.")

    def reasons(self, batch: pa.Table) -> pa.Array:
        texts = pc.utf8_trim_whitespace(pc.fill_null(text_array(batch), ""))
        n = len(texts)
        lines, line_docs = split_lines(texts, skip_blank=True)
        n_lines = np.bincount(line_docs, minlength=n)
        ends = pc.match_substring_regex(pc.utf8_rtrim_whitespace(lines), ends_with_pattern(self.terminal_punctuation))
        punct_ratio = safe_ratio(per_doc_sum(line_docs, to_bool(ends), n), n_lines)
        short = pc.less_equal(pc.utf8_length(lines), self.short_line_length)
        short_ratio = safe_ratio(per_doc_sum(line_docs, to_bool(short), n), n_lines)
        text_chars = to_float(pc.utf8_length(texts)) - to_float(pc.count_substring(texts, "\n"))
        dup_ratio = safe_ratio(_duplicate_line_chars(lines, line_docs, n), text_chars)
        tokens = np.bincount(tokenize(texts)[1], minlength=n)
        newline_ratio = safe_ratio(np.maximum(n_lines - 1, 0), tokens)
        return first_reasons(n, [
            (empty_mask(text_array(batch)), REASON_EMPTY),
            (punct_ratio <= self.min_line_punct_ratio, "fineweb_line_punct_ratio"),
            (short_ratio >= self.max_short_line_ratio, "fineweb_short_line_ratio"),
            (dup_ratio >= self.max_char_dup_ratio, "fineweb_char_dup_ratio"),
            (newline_ratio > self.max_newline_ratio, "fineweb_list_ratio"),
        ])


def _duplicate_line_chars(lines: pa.Array, line_docs: np.ndarray, num_docs: int) -> np.ndarray:
    """Per document, the characters of lines that repeat an earlier line of it."""
    table = pa.table({"doc": pa.array(line_docs, pa.int64()), "line": lines})
    if table.num_rows == 0:
        return np.zeros(num_docs)
    groups = table.group_by(["doc", "line"]).aggregate([("doc", "count")])
    repeats = to_float(groups.column("doc_count")) - 1
    chars = to_float(pc.utf8_length(groups.column("line")))
    return per_doc_sum(groups.column("doc").to_numpy(), repeats * chars, num_docs)
