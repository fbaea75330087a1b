"""C4's quality rules (Raffel et al. 2020, section 2.2), which remove lines and drop documents.

Unlike the other heuristic filters, this one edits the text: the lines it removes are gone from
``text`` in the rows it keeps. It is still a :class:`~curator.filter_stage.FilterStage` (so it
takes the same ``condition:``), with ``process`` overridden to write the edited text back.
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.expressions import RowCondition
from curator.filter_stage import FilterStage
from curator.stage import DROP_REASON
from stages.heuristic_filters import (
    REASON_EMPTY,
    TERMINAL_PUNCTUATION,
    empty_mask,
    ends_with_pattern,
    first_reasons,
    per_doc_sum,
    split_lines,
    text_array,
    to_bool,
    to_float,
)

LINES_REMOVED = "c4_lines_removed"
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
CITATION_PATTERN = r"\[\d*\]|\[edit\]|\[citation needed\]"
SENTENCE_END_PATTERN = r"[.!?。！？]+[\"'”’)\]]*(?:\s|$)"
"""Ends of sentences, counted to approximate the NLTK punkt sentence count C4 uses."""


class C4Quality(FilterStage):
    """Remove lines and drop documents by C4's rules (Raffel et al. 2020, datatrove C4QualityFilter defaults).

    Each line (stripped) is removed, checking in this order, if it has a word longer than
    ``max_word_length``, does not end with terminal punctuation (or ends with "..."), has fewer
    than ``min_words_per_line`` words, mentions "javascript", or holds a policy phrase ("terms of
    use", "privacy policy", ...). Wikipedia citation marks ("[1]", "[edit]", "[citation needed]")
    are deleted from lines. Documents are dropped, in this order of reasons: empty text
    (``empty_text``); a line that survives the punctuation and word-count checks says "lorem
    ipsum" (``c4_lorem_ipsum``) or, not mentioning javascript, holds "{" (``c4_curly_bracket``);
    fewer than ``min_sentences`` sentences in the lines kept (``c4_too_few_sentences``; sentences
    are counted by their end punctuation, at least one per kept line).

    Kept documents get their kept lines joined by ``\\n`` as ``text`` (blank lines go too, as in
    C4); dropped ones keep their original text. ``c4_lines_removed`` (int32) counts the non-blank
    lines removed, null on rows outside ``condition``, which are left untouched.
    """

    name: ClassVar[str] = "filter.c4"
    requires: ClassVar[tuple[str, ...]] = ("text",)
    adds: ClassVar[tuple[str, ...]] = (LINES_REMOVED,)

    min_sentences: int = Field(5, ge=0, description="Drop documents with fewer sentences kept (c4_too_few_sentences).")
    min_words_per_line: int = Field(3, ge=0, description="Remove lines with fewer whitespace-separated words.")
    max_word_length: int = Field(1000, ge=1, description="Remove lines holding a word longer than this.")
    terminal_punctuation: list[str] = Field(
        default_factory=lambda: list(TERMINAL_PUNCTUATION),
        description="Remove lines not ending with one of these (or ending with '...').")
    remove_citations: bool = Field(True, description="Delete [1], [edit] and [citation needed] from lines.")
    filter_javascript: bool = Field(True, description="Remove lines mentioning javascript.")
    filter_policy: bool = Field(True, description="Remove lines holding one of policy_phrases.")
    policy_phrases: list[str] = Field(
        default_factory=lambda: list(POLICY_PHRASES), description="Lower-case phrases of cookie and policy notices.")
    filter_lorem_ipsum: bool = Field(True, description="Drop documents saying 'lorem ipsum' (c4_lorem_ipsum).")
    filter_curly_bracket: bool = Field(True, description="Drop documents holding '{' (c4_curly_bracket).")

    def reasons(self, batch: pa.Table) -> pa.Array:
        return self.apply(batch)[1]

    def process(self, batch: pa.Table) -> pa.Table:
        if not self.condition:
            text, reasons, removed = self.apply(batch)
        else:
            mask = RowCondition.parse(self.condition).mask(batch)
            selected = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
            sub_text, sub_reasons, sub_removed = self.apply(batch.take(selected))
            text = pc.replace_with_mask(text_array(batch), mask, sub_text)
            reasons = pc.replace_with_mask(pa.nulls(batch.num_rows, pa.string()), mask, sub_reasons)
            removed = pc.replace_with_mask(pa.nulls(batch.num_rows, pa.int32()), mask, sub_removed)
        out = batch.set_column(batch.column_names.index("text"), "text", text)
        if LINES_REMOVED in out.column_names:
            out = out.drop_columns([LINES_REMOVED])
        return out.append_column(LINES_REMOVED, removed).append_column(DROP_REASON, reasons)

    def apply(self, batch: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
        """The rules on every row: the edited text, the drop reasons and the lines removed."""
        texts = text_array(batch)
        n = len(texts)
        raw_lines, line_docs = split_lines(texts)
        lines = pc.utf8_trim_whitespace(raw_lines)
        n_lines = len(lines)
        words = pc.utf8_split_whitespace(lines)
        non_blank = np.bincount(line_docs, to_float(pc.utf8_length(lines)) > 0, n)
        long_words = to_bool(pc.greater(pc.utf8_length(pc.list_flatten(words)), self.max_word_length))
        has_long_word = np.bincount(pc.list_parent_indices(words).to_numpy(), long_words, n_lines) > 0
        if self.remove_citations:
            lines = pc.utf8_trim_whitespace(pc.replace_substring_regex(lines, CITATION_PATTERN, ""))
        punct = to_bool(pc.match_substring_regex(lines, ends_with_pattern(self.terminal_punctuation)))
        punct &= ~to_bool(pc.ends_with(lines, "..."))
        enough_words = to_float(pc.list_value_length(words)) >= self.min_words_per_line
        alive = ~has_long_word & punct & enough_words
        lower = pc.utf8_lower(lines)
        lorem = alive & to_bool(pc.match_substring(lower, "lorem ipsum")) if self.filter_lorem_ipsum else None
        if self.filter_javascript:
            alive &= ~to_bool(pc.match_substring(lower, "javascript"))
        curly = alive & to_bool(pc.match_substring(lines, "{")) if self.filter_curly_bracket else None
        if self.filter_policy and self.policy_phrases:
            policy = "|".join(re.escape(p) for p in self.policy_phrases)
            alive &= ~to_bool(pc.match_substring_regex(lower, policy))

        sentences = np.maximum(to_float(pc.count_substring_regex(lines, SENTENCE_END_PATTERN)), 1.0)
        doc_sentences = per_doc_sum(line_docs, np.where(alive, sentences, 0.0), n)
        kept_per_doc = np.bincount(line_docs[alive], minlength=n)
        removed = pa.array((non_blank - kept_per_doc).astype(np.int32), pa.int32())

        rules = [(empty_mask(texts), REASON_EMPTY)]
        if lorem is not None:
            rules.append((per_doc_sum(line_docs, lorem, n) > 0, "c4_lorem_ipsum"))
        if curly is not None:
            rules.append((per_doc_sum(line_docs, curly, n) > 0, "c4_curly_bracket"))
        rules.append((doc_sentences < self.min_sentences, "c4_too_few_sentences"))
        reasons = first_reasons(n, rules)

        offsets = pa.array(np.concatenate([[0], np.cumsum(kept_per_doc)]), pa.int32())
        kept_lines = pa.ListArray.from_arrays(offsets, lines.filter(pa.array(alive)))
        edited = pc.binary_join(kept_lines, pa.scalar("\n", lines.type))
        text = pc.if_else(pc.is_valid(reasons), texts, edited.cast(texts.type))
        return text, reasons, removed
