"""Word n-gram hashing and a sorted-hash index of benchmark n-grams (for ``dedup.decontaminate``).

Normalisation (the GPT-3 / lm-eval-harness decontamination rule, done on Unicode code points):

1. lower-case every character (simple one-to-one Unicode case mapping, as Arrow's ``utf8_lower``);
2. delete every punctuation, symbol and invisible format character (Unicode categories ``P*``,
   ``S*`` and ``Cf``: ``don't`` -> ``dont``, ``$x^2+1$`` -> ``x21``, soft hyphens vanish);
3. split on whitespace (Python's ``str.isspace``: spaces, tabs, newlines, NBSP, ...).

:func:`normalize_words` is the readable Python reference of that rule; :func:`word_hashes` does the
same in one compiled pass over the UTF-8 bytes of an Arrow string column and returns a 64-bit hash
per word (FNV-1a over the lowered code points, then the splitmix64 finaliser), never building the
words. An n-gram of ``L`` words hashes as a polynomial rolling hash of its (already mixed) word
hashes, from per-document prefix sums (every window O(1) whatever ``L``), plus ``L`` times a salt.

:class:`NgramIndex` holds the benchmark side: a sorted ``uint64`` array of distinct n-gram hashes,
for each of them the items it occurs in (CSR ``starts`` / ``items``), and a bitmap of the hashes'
top bits that answers "certainly absent" for almost every document n-gram before any binary
search. :meth:`NgramIndex.scan` hashes a batch of documents and returns, per document, the number
of distinct benchmark n-grams found and, per (document, item), the number of that item's n-grams
found. With 64-bit hashes, a false match needs a hash collision: about n_doc_ngrams x n_index / 2^64.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

WHITESPACE = -1
"""Code point table value for whitespace (separates words)."""
DELETED = -2
"""Code point table value for deleted characters (punctuation, symbols, format characters)."""

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: the rolling hash's multiplier
_SALT = np.uint64(0xD6E8FEB86659FD93)  # times L, so n-grams of different lengths never coincide
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S6 = np.uint64(6)
_S63 = np.uint64(63)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_INVALID_BYTE = 0x110000  # stray UTF-8 bytes become word characters 0x110000 + byte


def _deleted(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PS" or cat == "Cf"


def _simple_lower(ch: str) -> str:
    low = ch.lower()
    return low if len(low) == 1 else low[0]  # 'İ'.lower() is 'i̇': the simple mapping is 'i'


@lru_cache(maxsize=1)
def codepoint_table() -> np.ndarray:
    """int32 per code point below U+E1000: its lowered code point, or WHITESPACE / DELETED.

    Above U+1FFFF only the tag characters U+E0000-U+E0FFF are not plain word characters (checked
    against ``unicodedata``), so code points past the table are word characters as they are.
    """
    table = np.arange(0xE1000, dtype=np.int32)
    for start, stop in ((0, 0x20000), (0xE0000, 0xE1000)):
        for cp in range(start, stop):
            ch = chr(cp)
            if ch.isspace():
                table[cp] = WHITESPACE
            elif _deleted(ch):
                table[cp] = DELETED
            else:
                low = ord(_simple_lower(ch))
                if low != cp:
                    table[cp] = low
    return table


def normalize_words(text: str | None) -> list[str]:
    """The words of ``text`` under the normalisation rule (pure-Python reference)."""
    if not text:
        return []
    kept = "".join(_simple_lower(ch) for ch in text if not _deleted(ch))
    return kept.split()


# ------------------------------------------------------------------------- compiled kernels


@njit(cache=True, inline="always")
def _fmix(h):
    h ^= h >> _S30
    h *= _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    return h


@njit(cache=True)
def _tokenize(data, offsets, valid, table, out, nw0, word_off, doc0):
    """Hash the words of each string into ``out`` from ``nw0``; return the new count, or -1 when
    ``out`` is too small (the caller retries with a bigger one: growing it here is slow)."""
    n = len(offsets) - 1
    nw = nw0
    cap = len(out)
    tsize = len(table)
    for d in range(n):
        word_off[doc0 + d] = nw
        if not valid[d]:
            continue
        i = offsets[d]
        end = offsets[d + 1]
        h = _FNV_OFFSET
        inword = False
        while i < end:
            b = np.int64(data[i])
            i += 1
            if b < 0x80:
                v = np.int64(table[b])
            else:
                if b >= 0xC0 and b < 0xE0 and i < end:
                    cp = ((b & 0x1F) << 6) | (np.int64(data[i]) & 0x3F)
                    i += 1
                elif b >= 0xE0 and b < 0xF0 and i + 1 < end:
                    cp = ((b & 0x0F) << 12) | ((np.int64(data[i]) & 0x3F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                    i += 2
                elif b >= 0xF0 and i + 2 < end:
                    cp = (((b & 0x07) << 18) | ((np.int64(data[i]) & 0x3F) << 12)
                          | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F))
                    i += 3
                else:
                    cp = _INVALID_BYTE + b
                v = np.int64(table[cp]) if cp < tsize else cp
            if v >= 0:
                h = (h ^ np.uint64(v)) * _FNV_PRIME
                inword = True
            elif inword and v == WHITESPACE:
                if nw == cap:
                    return -1
                out[nw] = _fmix(h)
                nw += 1
                h = _FNV_OFFSET
                inword = False
        if inword:
            if nw == cap:
                return -1
            out[nw] = _fmix(h)
            nw += 1
    word_off[doc0 + n] = nw
    return nw


@njit(cache=True)
def _prefix(words, start, m, prefix):
    acc = _ZERO
    prefix[0] = acc
    for j in range(m):
        acc = acc * _BASE + words[start + j]
        prefix[j + 1] = acc


@njit(cache=True, inline="always")
def _window(prefix, i, length, power):
    return prefix[i + length] - prefix[i] * power + np.uint64(length) * _SALT


@njit(cache=True)
def _segment_ngrams(words, word_off, ngram, min_words, plen, powers):
    """Index side: every ``ngram``-window of each segment, or the whole segment when it is shorter
    than ``ngram`` but has at least ``min_words`` words. Returns (segment, hash, length, prefix):
    ``prefix`` is the hash of a short segment's first ``plen`` words (0 for full n-grams)."""
    n = len(word_off) - 1
    total = 0
    longest = 0
    for s in range(n):
        m = word_off[s + 1] - word_off[s]
        longest = max(longest, m)
        if m >= ngram:
            total += m - ngram + 1
        elif m >= min_words and m > 0:
            total += 1
    seg = np.empty(total, np.int64)
    hashes = np.empty(total, np.uint64)
    lengths = np.empty(total, np.int64)
    prefixes = np.zeros(total, np.uint64)
    prefix = np.empty(longest + 1, np.uint64)
    k = 0
    for s in range(n):
        start = word_off[s]
        m = word_off[s + 1] - start
        if m < ngram and (m < min_words or m == 0):
            continue
        _prefix(words, start, m, prefix)
        if m >= ngram:
            for i in range(m - ngram + 1):
                seg[k] = s
                hashes[k] = _window(prefix, i, ngram, powers[ngram])
                lengths[k] = ngram
                k += 1
        else:
            seg[k] = s
            hashes[k] = _window(prefix, 0, m, powers[m])
            lengths[k] = m
            prefixes[k] = _window(prefix, 0, plen, powers[plen])
            k += 1
    return seg, hashes, lengths, prefixes


@njit(cache=True, inline="always")
def _member(h, bitmap, shift, uniq):
    """Position of ``h`` in the sorted ``uniq`` (-1: absent); the bitmap answers most misses."""
    b = h >> shift
    if bitmap[b >> _S6] & (_ONE << (b & _S63)):
        k = np.searchsorted(uniq, h)
        if k < len(uniq) and uniq[k] == h:
            return k
    return -1


@njit(cache=True)
def _scan(words, word_off, ngram, short, powers, bitmap, shift, uniq, pre_bitmap, pre_shift, pre_uniq,
          hit_doc, hit_pos):
    """Document side: write (doc, position in ``uniq``) of every window found in the index; return
    their count, or -1 when the buffers are full.

    Windows of ``ngram`` words are all looked up. Short items (lengths ``short``, ascending) are
    looked for only where the window of the shortest of them is a short item's beginning
    (``pre_uniq``), so each extra length costs nothing on most positions.
    """
    n = len(word_off) - 1
    longest = 0
    for d in range(n):
        longest = max(longest, word_off[d + 1] - word_off[d])
    prefix = np.empty(longest + 1, np.uint64)
    cap = len(hit_doc)
    nh = 0
    has_short = len(short) > 0
    plen = short[0] if has_short else ngram
    shortest = min(plen, ngram)
    for d in range(n):
        start = word_off[d]
        m = word_off[d + 1] - start
        if m < shortest:
            continue
        _prefix(words, start, m, prefix)
        power = powers[ngram]
        pre_power = powers[plen]
        last_full = m - ngram
        for i in range(m - shortest + 1):
            if i <= last_full:
                k = _member(_window(prefix, i, ngram, power), bitmap, shift, uniq)
                if k >= 0:
                    if nh == cap:
                        return -1
                    hit_doc[nh] = d
                    hit_pos[nh] = k
                    nh += 1
            if has_short and i + plen <= m:
                if _member(_window(prefix, i, plen, pre_power), pre_bitmap, pre_shift, pre_uniq) >= 0:
                    for length in short:
                        if i + length > m:
                            break
                        k = _member(_window(prefix, i, length, powers[length]), bitmap, shift, uniq)
                        if k >= 0:
                            if nh == cap:
                                return -1
                            hit_doc[nh] = d
                            hit_pos[nh] = k
                            nh += 1
    return nh


# ------------------------------------------------------------------------- Python side


def _string_chunks(texts: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    out = []
    for chunk in chunks:
        if pa.types.is_null(chunk.type):
            chunk = pa.nulls(len(chunk), pa.string())
        elif not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = pc.cast(chunk, pa.large_string())
        out.append(chunk)
    return out


def word_hashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Hash the normalised words of each text (None and "" have none).

    Returns ``(hashes, offsets)``: the words of text ``i`` are ``hashes[offsets[i]:offsets[i+1]]``.
    """
    table = codepoint_table()
    chunks = _string_chunks(texts)
    n = sum(len(c) for c in chunks)
    word_off = np.zeros(n + 1, np.int64)
    total_bytes = sum(c.buffers()[2].size if c.buffers()[2] is not None else 0 for c in chunks)
    # Usually about one word per 6 bytes; at most one per 2 bytes (plus one per text), the retry.
    out = np.empty(max(16, total_bytes // 4), np.uint64)
    nw = 0
    doc0 = 0
    for chunk in chunks:
        m = len(chunk)
        if m == 0:
            continue
        _, off_buf, data_buf = chunk.buffers()
        off_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(off_buf, dtype=off_type)[chunk.offset:chunk.offset + m + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        if chunk.null_count:
            valid = pc.is_valid(chunk).to_numpy(zero_copy_only=False)
        else:
            valid = np.ones(m, np.bool_)
        count = _tokenize(data, offsets, valid, table, out, nw, word_off, doc0)
        if count < 0:
            bigger = np.empty(nw + len(data) // 2 + m + 16, np.uint64)
            bigger[:nw] = out[:nw]
            out = bigger
            count = _tokenize(data, offsets, valid, table, out, nw, word_off, doc0)
        nw = count
        doc0 += m
    return out[:nw], word_off


def _powers(ngram: int) -> np.ndarray:
    """``BASE ** L`` mod 2^64 for L in 0..ngram."""
    base, mod = int(_BASE), 1 << 64
    return np.array([pow(base, k, mod) for k in range(ngram + 1)], dtype=np.uint64)


def _bitmap(hashes: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A bitmap of the hashes' top bits (about 32 bits per hash: 1/32 false positives) and the
    shift that takes a hash to its bit."""
    bits = int(np.clip(np.ceil(np.log2(max(1, len(hashes)) * 32)), 16, 32))
    shift = np.uint64(64 - bits)
    bitmap = np.zeros(1 << (bits - 6), np.uint64)
    top = hashes >> shift
    np.bitwise_or.at(bitmap, (top >> np.uint64(6)).astype(np.int64), np.left_shift(np.uint64(1), top & np.uint64(63)))
    return bitmap, shift


@dataclass
class ScanResult:
    """What :meth:`NgramIndex.scan` found in a batch of documents."""

    ngrams: np.ndarray
    """Per document: distinct benchmark n-grams found in it (of any item)."""
    doc: np.ndarray
    """Per (document, item) pair with at least one n-gram found, sorted by document then item."""
    item: np.ndarray
    hits: np.ndarray
    """Distinct n-grams of that item found in that document."""


class NgramIndex:
    """Sorted n-gram hashes of benchmark items, built once, scanned against batches of text."""

    def __init__(self, segments: list[str], segment_item: np.ndarray, n_items: int, ngram: int = 13,
                 min_item_words: int = 1) -> None:
        """Index ``segments`` (texts), each belonging to item ``segment_item[i]`` of ``n_items``.

        Within each segment: all ``ngram``-word windows; a segment shorter than ``ngram`` words is
        one n-gram of its own length when it has at least ``min_item_words`` words, else nothing.
        """
        self.ngram = ngram
        self.n_items = n_items
        self.powers = _powers(ngram)
        words, word_off = word_hashes(pa.array(segments, pa.string()))
        seg_words = np.diff(word_off)
        short_words = seg_words[(seg_words < ngram) & (seg_words >= max(1, min_item_words))]
        plen = int(short_words.min()) if len(short_words) else ngram
        seg, hashes, lengths, prefixes = _segment_ngrams(words, word_off, ngram, min_item_words, plen, self.powers)
        items = np.asarray(segment_item, np.int64)[seg]
        # Distinct (hash, item) pairs, sorted by hash: CSR from distinct hashes to their items.
        order = np.lexsort((items, hashes))
        hashes, items, lengths = hashes[order], items[order], lengths[order]
        keep = np.ones(len(hashes), bool)
        keep[1:] = (hashes[1:] != hashes[:-1]) | (items[1:] != items[:-1])
        hashes, items, lengths = hashes[keep], items[keep], lengths[keep]
        new = np.ones(len(hashes), bool)
        new[1:] = hashes[1:] != hashes[:-1]
        self.uniq = hashes[new]
        self.starts = np.append(np.flatnonzero(new), len(hashes)).astype(np.int64)
        self.items = items.astype(np.int64)
        self.item_ngrams = np.bincount(items, minlength=n_items).astype(np.int64)
        """Per item: its distinct n-grams in the index (0: the item is not indexed)."""
        self.short = np.unique(lengths[lengths < ngram]).astype(np.int64)
        """Lengths of the short items' whole-segment n-grams, ascending."""
        self.bitmap, self.shift = _bitmap(self.uniq)
        # Beginnings (first `plen` words) of the short segments: where _scan looks for them.
        self.pre_uniq = np.unique(prefixes[seg_words[seg] < ngram])
        self.pre_bitmap, self.pre_shift = _bitmap(self.pre_uniq)

    @property
    def size(self) -> int:
        """Distinct n-gram hashes in the index."""
        return len(self.uniq)

    def scan(self, texts: pa.Array | pa.ChunkedArray) -> ScanResult:
        """Find the benchmark n-grams in each text."""
        words, word_off = word_hashes(texts)
        n = len(word_off) - 1
        if not len(self.uniq):
            empty = np.zeros(0, np.int64)
            return ScanResult(np.zeros(n, np.int32), empty, empty, empty)
        args = (words, word_off, self.ngram, self.short, self.powers, self.bitmap, self.shift, self.uniq,
                self.pre_bitmap, self.pre_shift, self.pre_uniq)
        cap = len(words) // 16 + 1024  # hits are rare; a batch with more is scanned again
        hit_doc, hit_pos = np.empty(cap, np.int64), np.empty(cap, np.int64)
        nh = _scan(*args, hit_doc, hit_pos)
        if nh < 0:
            cap = len(words) * (len(self.short) + 1) + 1  # every window of every length
            hit_doc, hit_pos = np.empty(cap, np.int64), np.empty(cap, np.int64)
            nh = _scan(*args, hit_doc, hit_pos)
        hit_doc, hit_pos = hit_doc[:nh], hit_pos[:nh]
        nu = np.int64(len(self.uniq))
        key = np.unique(hit_doc * nu + hit_pos)
        doc, pos = key // nu, key % nu
        ngrams = np.bincount(doc, minlength=n).astype(np.int32)
        # Each distinct hash found counts once for every item it belongs to.
        first = self.starts[pos]
        count = self.starts[pos + 1] - first
        total = int(count.sum())
        rep_doc = np.repeat(doc, count)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        items = self.items[np.repeat(first, count) + within]
        pair, hits = np.unique(rep_doc * np.int64(self.n_items) + items, return_counts=True)
        return ScanResult(ngrams, pair // self.n_items, pair % self.n_items, hits.astype(np.int64))
