"""Gopher's quality and repetition filters (Rae et al. 2021, "Scaling Language Models", App. A).

Thresholds default to the published values, as datatrove's ``GopherQualityFilter`` and
``GopherRepetitionFilter`` use them. Where this implementation has to choose a tokenisation, the
choice is written on the class.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.filter_stage import FilterStage
from stages.heuristic_filters import (
    REASON_EMPTY,
    empty_mask,
    first_reasons,
    per_doc_sum,
    safe_ratio,
    split_lines,
    text_array,
    to_bool,
    to_float,
    tokenize,
)

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's stop words: a document must hold at least two occurrences of them."""

BULLETS = ("•", "●", "◦", "‣", "▪", "-")
"""Line starts that count as bullets (datatrove checks "•" and "-")."""

WORD_PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›…—–·•¡¿"
"""Characters trimmed off both ends of a whitespace-separated token to get a word."""


class GopherQuality(FilterStage):
    """Drop documents failing Gopher's quality rules (Rae et al. 2021, datatrove defaults).

    Rules, checked in this order (the first that fails is the reason): empty text
    (``empty_text``), fewer than ``min_words`` words (``gopher_short_document``), more than
    ``max_words`` (``gopher_long_document``), mean word length outside the range
    (``gopher_mean_word_length``), ``#`` or ellipses per word above the limit
    (``gopher_symbol_ratio``), too many lines starting with a bullet (``gopher_bullet_lines``) or
    ending with an ellipsis (``gopher_ellipsis_lines``), too few words with a letter
    (``gopher_alpha_words``), too few stop words (``gopher_stop_words``).

    A word is a whitespace-separated token with punctuation trimmed off its ends ("end." is
    "end"); a token of punctuation only ("--", "...") is no word. This follows the paper's
    "words" rather than datatrove's NLTK tokens, which also count each punctuation mark as a word
    lacking a letter. Stop words are matched case-insensitively. Blank lines do not count as lines.
    """

    name: ClassVar[str] = "filter.gopher_quality"
    requires: ClassVar[tuple[str, ...]] = ("text",)

    min_words: int = Field(50, ge=0, description="Fewest words a document may have (reason gopher_short_document).")
    max_words: int = Field(100_000, ge=0, description="Most words a document may have (gopher_long_document).")
    min_mean_word_length: float = Field(3.0, ge=0, description="Lowest mean word length in characters.")
    max_mean_word_length: float = Field(10.0, ge=0, description="Highest mean word length in characters.")
    max_symbol_word_ratio: float = Field(
        0.1, ge=0, description="Most '#' per word, and most ellipses ('...' or '…') per word (gopher_symbol_ratio).")
    max_bullet_lines_ratio: float = Field(
        0.9, ge=0, le=1, description="Largest fraction of lines starting with a bullet (gopher_bullet_lines).")
    max_ellipsis_lines_ratio: float = Field(
        0.3, ge=0, le=1, description="Largest fraction of lines ending with an ellipsis (gopher_ellipsis_lines).")
    min_alpha_words_ratio: float = Field(
        0.8, ge=0, le=1, description="Smallest fraction of words holding a letter (gopher_alpha_words).")
    min_stop_words: int = Field(2, ge=0, description="Fewest stop-word occurrences (gopher_stop_words).")
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS), description="The stop words (lower case).")
    bullets: list[str] = Field(default_factory=lambda: list(BULLETS), description="Line starts counted as bullets.")

    def reasons(self, batch: pa.Table) -> pa.Array:
        texts = text_array(batch)
        n = len(texts)
        tokens = pc.utf8_split_whitespace(pc.fill_null(texts, ""))
        token_docs = pc.list_parent_indices(tokens).to_numpy()
        words = pc.utf8_trim(pc.list_flatten(tokens), WORD_PUNCTUATION)
        lengths = to_float(pc.utf8_length(words))
        is_word = lengths > 0
        n_words = per_doc_sum(token_docs, is_word, n)
        mean_length = safe_ratio(per_doc_sum(token_docs, lengths, n), n_words)
        alpha = per_doc_sum(token_docs, to_bool(pc.match_substring_regex(words, r"\pL")), n)
        stop = per_doc_sum(token_docs, to_bool(pc.is_in(pc.utf8_lower(words), pa.array(self.stop_words))), n)
        hashes = to_float(pc.count_substring(texts, "#"))
        ellipses = to_float(pc.count_substring(texts, "...")) + to_float(pc.count_substring(texts, "…"))

        lines, line_docs = split_lines(texts, skip_blank=True)
        n_lines = np.bincount(line_docs, minlength=n)
        bullet_pattern = r"^\s*(?:" + "|".join(re.escape(b) for b in self.bullets) + ")" if self.bullets else "(?!)"
        bullet_lines = per_doc_sum(line_docs, to_bool(pc.match_substring_regex(lines, bullet_pattern)), n)
        ellipsis_lines = per_doc_sum(line_docs, to_bool(pc.match_substring_regex(lines, r"(?:\.\.\.|…)\s*$")), n)

        symbol_ratio = np.maximum(safe_ratio(hashes, n_words), safe_ratio(ellipses, n_words))
        return first_reasons(n, [
            (empty_mask(texts), REASON_EMPTY),
            (n_words < self.min_words, "gopher_short_document"),
            (n_words > self.max_words, "gopher_long_document"),
            ((mean_length < self.min_mean_word_length) | (mean_length > self.max_mean_word_length),
             "gopher_mean_word_length"),
            (symbol_ratio > self.max_symbol_word_ratio, "gopher_symbol_ratio"),
            (safe_ratio(bullet_lines, n_lines) > self.max_bullet_lines_ratio, "gopher_bullet_lines"),
            (safe_ratio(ellipsis_lines, n_lines) > self.max_ellipsis_lines_ratio, "gopher_ellipsis_lines"),
            (safe_ratio(alpha, n_words) < self.min_alpha_words_ratio, "gopher_alpha_words"),
            (stop < self.min_stop_words, "gopher_stop_words"),
        ])


def duplicates(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    counts = Counter(items)
    repeated = [(item, count - 1) for item, count in counts.items() if count > 1]
    return sum(c for _, c in repeated), sum(len(item) * c for item, c in repeated)


_MIX1, _MIX2, _STEP = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters its input's bits."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def ngram_keys(tokens: np.ndarray, max_n: int) -> dict[int, np.ndarray]:
    """64-bit keys of every n-gram (n = 1..max_n) of a document's token ids, position by position.

    Equal n-grams get equal keys; unequal ones collide with probability about 2**-64 per pair.
    """
    keys = {1: _mix(tokens.astype(np.uint64) + np.uint64(1))}
    for n in range(2, max_n + 1):
        if len(keys[n - 1]) <= 1:
            break
        keys[n] = _mix(keys[n - 1][:-1] * _STEP + keys[1][n - 1:])
    return keys


def top_ngram_chars(keys: np.ndarray, offsets: np.ndarray, n: int) -> int:
    """Characters of the most frequent n-gram (tokens joined by spaces) times its count.

    Ties go to the n-gram seen first (as ``Counter.most_common`` does); 0 without n-grams.
    ``offsets[i]`` is the number of token characters before token i.
    """
    if len(keys) == 0:
        return 0
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = counts.max()
    i = int(first[counts == top].min())
    return int(offsets[i + n] - offsets[i] + n - 1) * int(top)


def duplicated_ngram_chars(keys: np.ndarray, offsets: np.ndarray, n: int) -> int:
    """Characters (of the tokens, without separators) in n-grams that repeat an earlier one.

    This is datatrove's ``find_all_duplicate`` scan: left to right, an n-gram already seen counts
    its characters and the scan jumps past it (so overlapping repeats count once, and the n-grams
    jumped over are never seen); any other n-gram is marked seen. Only the positions whose n-gram
    occurred before somewhere can count, so just those are visited, in order: one counts if it is
    not jumped over and its n-gram's first occurrence was not jumped over or a visited position
    holds it already.
    """
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first_at = first[inverse]
    candidates = np.flatnonzero(first_at < np.arange(len(keys)))
    if len(candidates) == 0:
        return 0
    jumped = np.zeros(len(keys), dtype=bool)
    visited: set[int] = set()
    repeated, resume = 0, 0
    for i in candidates.tolist():
        if i < resume:
            continue
        gram = int(inverse[i])
        if gram in visited or not jumped[first_at[i]]:
            repeated += int(offsets[i + n] - offsets[i])
            jumped[i + 1:i + n] = True
            resume = i + n
        else:
            visited.add(gram)
    return repeated


PARAGRAPH_SPLIT = re.compile(r"\n\n+")


class GopherRepetition(FilterStage):
    """Drop documents with too much repeated content (Rae et al. 2021 table A1, datatrove defaults).

    Rules, in this order (the first that fails is the reason): empty text (``empty_text``);
    duplicate paragraphs (split on blank lines) as a fraction of paragraphs
    (``gopher_dup_para_fraction``) and their characters as a fraction of the text's
    (``gopher_dup_para_char_fraction``); the same for lines (``gopher_dup_line_fraction``,
    ``gopher_dup_line_char_fraction``; blank lines are not lines); for each n of
    ``top_ngram_fractions``, the characters of the most frequent n-gram times its count
    (``gopher_top_{n}gram``); for each n of ``dup_ngram_fractions``, the characters in repeated
    n-grams (``gopher_dup_{n}gram``). Character fractions are over the whole text's characters.

    Tokens for n-grams are runs of word characters and runs of punctuation (a stand-in for the
    NLTK tokens datatrove uses), tokenised and numbered for the whole batch with Arrow; n-grams
    are compared by 64-bit keys. As in datatrove, the top n-gram counts even when it occurs once,
    so documents of a handful of words fail ``gopher_top_2gram``.
    """

    name: ClassVar[str] = "filter.gopher_repetition"
    requires: ClassVar[tuple[str, ...]] = ("text",)

    max_dup_para_fraction: float = Field(0.3, ge=0, le=1, description="Largest fraction of duplicate paragraphs.")
    max_dup_para_char_fraction: float = Field(
        0.2, ge=0, le=1, description="Largest fraction of characters in duplicate paragraphs.")
    max_dup_line_fraction: float = Field(0.3, ge=0, le=1, description="Largest fraction of duplicate lines.")
    max_dup_line_char_fraction: float = Field(
        0.2, ge=0, le=1, description="Largest fraction of characters in duplicate lines.")
    top_ngram_fractions: dict[int, float] = Field(
        default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16},
        description="n -> largest fraction of characters in the most frequent n-gram (times its count).")
    dup_ngram_fractions: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> largest fraction of characters in repeated n-grams.")

    def reasons(self, batch: pa.Table) -> pa.Array:
        texts = text_array(batch)
        tokens, token_docs = tokenize(texts)
        ids = pc.dictionary_encode(tokens).indices.to_numpy()
        lengths = pc.utf8_length(tokens).to_numpy()
        starts = np.searchsorted(token_docs, np.arange(len(texts) + 1))
        return pa.array([
            self._reason(text, ids[starts[i]:starts[i + 1]], lengths[starts[i]:starts[i + 1]])
            for i, text in enumerate(texts.to_pylist())
        ], pa.string())

    def _reason(self, text: str | None, ids: np.ndarray, lengths: np.ndarray) -> str | None:
        if text is None or not text.strip():
            return REASON_EMPTY
        chars = len(text)
        paragraphs = PARAGRAPH_SPLIT.split(text.strip())
        dup, dup_chars = duplicates(paragraphs)
        if dup / len(paragraphs) > self.max_dup_para_fraction:
            return "gopher_dup_para_fraction"
        if dup_chars / chars > self.max_dup_para_char_fraction:
            return "gopher_dup_para_char_fraction"
        lines = [line for line in text.split("\n") if line.strip()]
        dup, dup_chars = duplicates(lines)
        if dup / len(lines) > self.max_dup_line_fraction:
            return "gopher_dup_line_fraction"
        if dup_chars / chars > self.max_dup_line_char_fraction:
            return "gopher_dup_line_char_fraction"
        keys = ngram_keys(ids, max([1, *self.top_ngram_fractions, *self.dup_ngram_fractions]))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for n, limit in sorted(self.top_ngram_fractions.items()):
            if n in keys and top_ngram_chars(keys[n], offsets, n) / chars > limit:
                return f"gopher_top_{n}gram"
        for n, limit in sorted(self.dup_ngram_fractions.items()):
            repeated = duplicated_ngram_chars(keys[n], offsets, n) if n in keys else 0
            if repeated == 0:
                break  # no n-gram repeats, so no longer one does either
            if repeated / chars > limit:
                return f"gopher_dup_{n}gram"
        return None
