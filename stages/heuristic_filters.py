"""Shared pieces of the heuristic text filters of the Nemotron-CC text path.

The filters themselves live in :mod:`stages.gopher_filters` (Gopher quality and repetition),
:mod:`stages.c4_filters` (C4, which also rewrites the text) and :mod:`stages.fineweb_filters`.
Every one of them gives a document that is null or only whitespace the reason ``empty_text``
before any other rule, so no rule ever divides by zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REASON_EMPTY = "empty_text"
"""The drop reason every heuristic filter gives a null or whitespace-only text."""

TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")
"""Line endings that count as terminal punctuation: C4's . ! ? ", datatrove's ', and their
typographic and full-width variants."""

PUNCTUATION_RUN = r"([^\pL\pN_\s]+)"
"""A run of characters that are neither letters, digits, underscore nor whitespace (RE2)."""


def text_array(batch: pa.Table, column: str = "text") -> pa.Array:
    """The text column as one array, nulls kept."""
    return batch.column(column).combine_chunks()


def empty_mask(texts: pa.Array) -> np.ndarray:
    """True where a text is null or only whitespace."""
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
    return np.asarray(pc.fill_null(blank, True).to_numpy(zero_copy_only=False), dtype=bool)


def to_bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean pyarrow array as a numpy array, nulls as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def to_float(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric pyarrow array as a float64 numpy array, nulls as 0."""
    return np.asarray(pc.fill_null(values, 0).to_numpy(zero_copy_only=False), dtype=np.float64)


def split_lines(texts: pa.Array, *, skip_blank: bool = False) -> tuple[pa.Array, np.ndarray]:
    """Every text's lines (split on ``\\n``) flattened, with the index of the text each comes from."""
    lists = pc.split_pattern(pc.fill_null(texts, ""), "\n")
    lines, parents = pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()
    if skip_blank:
        keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)
        lines, parents = lines.filter(keep), parents[to_bool(keep)]
    return lines, parents


def per_doc_sum(parents: np.ndarray, values: np.ndarray, num_docs: int) -> np.ndarray:
    """Sum ``values`` (one per line or word) per document."""
    return np.bincount(parents, weights=values, minlength=num_docs)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0."""
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, den, out=np.zeros_like(den), where=den > 0)


def ends_with_pattern(suffixes: Sequence[str]) -> str:
    """An RE2 pattern matching a string that ends with one of ``suffixes``."""
    return "(?:" + "|".join(re.escape(s) for s in suffixes) + ")$"


def first_reasons(num_rows: int, rules: Sequence[tuple[np.ndarray, str]]) -> pa.Array:
    """One reason per row: that of the first rule (in order) whose mask is True there, else null."""
    out = np.full(num_rows, None, dtype=object)
    for failed, reason in reversed(rules):  # later rules are overwritten by earlier ones
        out[failed] = reason
    return pa.array(out, pa.string())


def tokenize(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every text's tokens flattened, with the index of the text each comes from.

    Tokens are runs of word characters and runs of punctuation ("end." is "end" and "."), a
    stand-in for the NLTK ``word_tokenize`` tokens datatrove uses.
    """
    padded = pc.replace_substring_regex(pc.fill_null(texts, ""), PUNCTUATION_RUN, r" \1 ")
    lists = pc.utf8_split_whitespace(padded)
    flat = pc.list_flatten(lists)
    keep = pc.greater(pc.utf8_length(flat), 0)  # splitting keeps an empty token at each end
    return flat.filter(keep), pc.list_parent_indices(lists).to_numpy()[to_bool(keep)]
