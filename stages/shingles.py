"""Shingles of documents and their hashes, computed over a whole Arrow batch at once.

A shingle is either ``n`` consecutive characters (Unicode code points) or ``n`` consecutive words
joined by single spaces. Its hash is a function of the shingle's UTF-8 bytes only, so the same
shingle hashes alike in any document, and :func:`shingle_hash` gives the same value from Python
(the ``hashfunc`` to hand datasketch for a signature-for-signature comparison).

The hash: ``P`` = the bytes as a polynomial in ``B`` modulo 2^64 (Horner's rule, ``P = P*B + byte``),
``h64 = fmix64(P ^ (len * GOLDEN))`` (MurmurHash3's finaliser, so every output bit depends on every
input bit), and the 32-bit shingle hash is ``h64 >> 32``. Prefix polynomials make every shingle's
``P`` an O(1) computation, so a 2 KB document costs a few microseconds to shingle.

A text shorter than one shingle is a single shingle (the whole text); an empty text has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

POLY_BASE = np.uint64(1099511628211)          # the 64-bit FNV prime; any odd constant works
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MASK64 = (1 << 64) - 1

NormalizeOption = Literal["lowercase", "whitespace", "punctuation", "digits", "numbers"]
NORMALIZE_OPTIONS: tuple[str, ...] = ("lowercase", "numbers", "punctuation", "digits", "whitespace")
"""The normalisation steps, in the order they are applied."""

ShingleKind = Literal["chars", "words"]


def normalize_texts(texts: pa.Array | pa.ChunkedArray, options: Sequence[str]) -> pa.Array:
    """Apply normalisation steps to a string column (in Arrow's C++ kernels, no Python per row).

    ``lowercase``: Unicode lower case. ``numbers``: every number (digits, with inner ``.`` or
    ``,`` groups) becomes ``0``, so texts that differ only in their numbers match.
    ``punctuation``: removes punctuation and symbols (Unicode classes P and S). ``digits``: every
    decimal digit becomes ``0`` (numbers of the same length match). ``whitespace``: runs of whitespace become one space, ends trimmed.
    """
    unknown = set(options) - set(NORMALIZE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown normalisation {sorted(unknown)}; choose from {list(NORMALIZE_OPTIONS)}")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if texts.type == pa.large_string():
        texts = texts.cast(pa.string())
    if "lowercase" in options:
        texts = pc.utf8_lower(texts)
    if "numbers" in options:
        texts = pc.replace_substring_regex(texts, r"[0-9]+(?:[.,][0-9]+)*", "0")
    if "punctuation" in options:
        texts = pc.replace_substring_regex(texts, r"[\p{P}\p{S}]+", " ")
    if "digits" in options:
        texts = pc.replace_substring_regex(texts, r"\d", "0")
    if "whitespace" in options:
        # Split on Unicode whitespace and join with one space: 3x faster than a regex replace.
        texts = pc.utf8_trim_whitespace(pc.binary_join(pc.utf8_split_whitespace(texts), " "))
    return texts


@nb.njit(cache=True, inline="always")
def _fmix64(k: np.uint64) -> np.uint64:
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xFF51AFD7ED558CCD)
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xC4CEB9FE1A85EC53)
    k ^= k >> np.uint64(33)
    return k


@nb.njit(cache=True)
def _powers(n: int) -> np.ndarray:
    out = np.empty(n + 1, np.uint64)
    out[0] = np.uint64(1)
    for i in range(1, n + 1):
        out[i] = out[i - 1] * np.uint64(1099511628211)
    return out


@nb.njit(cache=True)
def _doc_shingles(data: np.ndarray, lo: int, hi: int, ngram: int, words: bool, powers: np.ndarray,
                  prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray) -> int:
    """64-bit hashes of one document's shingles into ``out``; returns how many.

    ``prefix``, ``starts`` and ``ends`` are scratch buffers at least ``hi - lo + 1`` long.
    """
    length = hi - lo
    if length <= 0:
        return 0
    base = np.uint64(1099511628211)
    golden = np.uint64(0x9E3779B97F4A7C15)
    prefix[0] = np.uint64(0)
    for k in range(length):
        prefix[k + 1] = prefix[k] * base + np.uint64(data[lo + k])
    # Unit boundaries: code point starts (chars) or word starts/ends (words, single-space separated).
    m = 0
    if words:
        in_word = False
        for k in range(length):
            if data[lo + k] == 32:
                if in_word:
                    ends[m - 1] = k
                    in_word = False
            elif not in_word:
                starts[m] = k
                ends[m] = length
                m += 1
                in_word = True
    else:
        for k in range(length):
            if (data[lo + k] & 0xC0) != 0x80:
                starts[m] = k
                ends[m] = k + 1
                m += 1
        for u in range(m - 1):
            ends[u] = starts[u + 1]
        if m:
            ends[m - 1] = length
    if m == 0:
        return 0
    if m < ngram:
        count = 1
        s, e = starts[0], ends[m - 1]
        p = prefix[e] - prefix[s] * powers[e - s]
        out[0] = _fmix64(p ^ (np.uint64(e - s) * golden))
        return count
    count = m - ngram + 1
    for u in range(count):
        s, e = starts[u], ends[u + ngram - 1]
        p = prefix[e] - prefix[s] * powers[e - s]
        out[u] = _fmix64(p ^ (np.uint64(e - s) * golden))
    return count


@nb.njit(cache=True)
def _batch_shingles(data: np.ndarray, offsets: np.ndarray, ngram: int, words: bool) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch, concatenated, with per-document offsets into them."""
    n = offsets.shape[0] - 1
    longest = 0
    total = 0
    for d in range(n):
        length = offsets[d + 1] - offsets[d]
        longest = max(longest, length)
        total += max(length, 1)
    powers = _powers(longest + 1)
    prefix = np.empty(longest + 2, np.uint64)
    starts = np.empty(longest + 1, np.int64)
    ends = np.empty(longest + 1, np.int64)
    hashes = np.empty(total, np.uint64)
    doc_offsets = np.zeros(n + 1, np.int64)
    pos = 0
    for d in range(n):
        pos += _doc_shingles(data, offsets[d], offsets[d + 1], ngram, words, powers, prefix, starts, ends,
                             hashes[pos:])
        doc_offsets[d + 1] = pos
    return hashes[:pos], doc_offsets


def arrow_utf8_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes and int64 offsets of a string array (nulls become empty strings)."""
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    if texts.type == pa.large_string():
        texts = texts.cast(pa.string())
    if texts.offset or texts.type != pa.string():
        texts = pa.concat_arrays([texts.cast(pa.string())])  # a zero-offset copy
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=len(texts) + 1).astype(np.int64)
    data = (np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size
            else np.zeros(1, np.uint8))
    return data, offsets


def batch_shingle_hashes(texts: pa.Array, ngram: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every shingle of every (already normalised) text in the array.

    Returns ``(hashes, doc_offsets)``: document ``d``'s shingles are
    ``hashes[doc_offsets[d]:doc_offsets[d + 1]]``.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    data, offsets = arrow_utf8_buffers(texts)
    return _batch_shingles(data, offsets, int(ngram), kind == "words")


def shingle_strings(text: str, ngram: int, kind: str) -> list[str]:
    """The shingles of one normalised text as strings (the slow reference; for tests and datasketch)."""
    if not text:
        return []
    if kind == "words":
        units = text.split(" ")
        units = [u for u in units if u]
        if not units:
            return []
        if len(units) < ngram:
            return [" ".join(units)]
        return [" ".join(units[i:i + ngram]) for i in range(len(units) - ngram + 1)]
    if len(text) < ngram:
        return [text]
    return [text[i:i + ngram] for i in range(len(text) - ngram + 1)]


def shingle_hash64(shingle: str | bytes) -> int:
    """The 64-bit hash of one shingle, computed in Python (matches the batch kernel)."""
    data = shingle.encode("utf-8") if isinstance(shingle, str) else bytes(shingle)
    p = 0
    for byte in data:
        p = (p * int(POLY_BASE) + byte) & MASK64
    k = p ^ ((len(data) * int(GOLDEN)) & MASK64)
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def shingle_hash(shingle: str | bytes) -> int:
    """The 32-bit shingle hash MinHash permutes: the top half of :func:`shingle_hash64`.

    Pass it to datasketch as ``MinHash(num_perm, seed, hashfunc=shingle_hash, scheme="legacy")``
    to get the signatures :class:`stages.minhash.MinHashSignatures` computes.
    """
    return shingle_hash64(shingle) >> 32
