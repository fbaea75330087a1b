"""MinHash signatures and LSH band keys, computed over whole batches in compiled loops.

Signatures use datasketch's classic permutation scheme (``scheme="legacy"`` since datasketch 2.0):
for each of ``num_perm`` pairs ``(a, b)`` drawn from ``numpy.random.RandomState(seed)`` exactly as
datasketch draws them, the value is ``min over shingles of ((a*h + b) mod 2^64 mod (2^61 - 1))
& (2^32 - 1)``, where ``h`` is the 32-bit :func:`stages.shingles.shingle_hash`. A row of
:meth:`MinHashSignatures.compute` therefore equals ``datasketch.MinHash(num_perm, seed,
hashfunc=shingle_hash, scheme="legacy")`` updated with the same shingles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np
import pyarrow as pa

from stages.shingles import _fmix64, batch_shingle_hashes, normalize_texts, shingle_strings

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
EMPTY = np.uint32(0xFFFFFFFF)
"""The value of every slot of an empty document's signature (datasketch's initial value)."""


def legacy_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` arrays datasketch's legacy scheme draws for ``num_perm`` and ``seed``."""
    gen = np.random.RandomState(seed)
    pairs = [(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
             for _ in range(num_perm)]
    a = np.array([p[0] for p in pairs], dtype=np.uint64)
    b = np.array([p[1] for p in pairs], dtype=np.uint64)
    return a, b


@nb.njit(cache=True, boundscheck=False)
def _signatures(hashes: np.ndarray, doc_offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = doc_offsets.shape[0] - 1
    k = a.shape[0]
    out = np.empty((n, k), np.uint32)
    prime = np.uint64((1 << 61) - 1)
    low32 = np.uint64(0xFFFFFFFF)
    s61 = np.uint64(61)
    s32 = np.uint64(32)
    scratch = np.empty(0, np.uint64)
    for d in range(n):
        lo, hi = doc_offsets[d], doc_offsets[d + 1]
        if hi - lo > scratch.shape[0]:
            scratch = np.empty(hi - lo, np.uint64)
        m = hi - lo
        for i in range(m):
            scratch[i] = hashes[lo + i] >> s32
        for j in range(k):
            aj = a[j]
            bj = b[j]
            best = low32
            for i in range(m):
                x = scratch[i] * aj + bj          # wraps mod 2^64, as numpy does in datasketch
                r = (x & prime) + (x >> s61)      # x mod (2^61 - 1), without a division
                if r >= prime:
                    r -= prime
                r &= low32
                if r < best:
                    best = r
            out[d, j] = np.uint32(best)
    return out


@nb.njit(cache=True, boundscheck=False)
def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    n = signatures.shape[0]
    out = np.empty((n, bands), np.uint64)
    for d in range(n):
        for band in range(bands):
            key = _fmix64(np.uint64(band) + np.uint64(0x9E3779B97F4A7C15))
            for r in range(rows):
                key = _fmix64(key ^ np.uint64(signatures[d, band * rows + r]))
            out[d, band] = key
    return out


class MinHashSignatures:
    """Computes MinHash signatures of text columns: shingling, hashing and permutations in bulk.

    ``normalize`` lists the :func:`stages.shingles.normalize_texts` steps; word shingles always
    normalise whitespace (a word shingle is its words joined by single spaces).
    """

    def __init__(self, num_perm: int = 260, seed: int = 1, ngram: int = 24, kind: str = "chars",
                 normalize: Sequence[str] = ("whitespace",)) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if kind not in ("chars", "words"):
            raise ValueError(f"shingle kind must be 'chars' or 'words', got {kind!r}")
        self.num_perm = num_perm
        self.seed = seed
        self.ngram = ngram
        self.kind = kind
        steps = list(normalize)
        if kind == "words" and "whitespace" not in steps:
            steps.append("whitespace")
        self.normalize = tuple(steps)
        self.a, self.b = legacy_permutations(num_perm, seed)

    def normalized(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The texts as they are shingled."""
        return normalize_texts(texts, self.normalize)

    def shingle_hashes(self, texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """64-bit shingle hashes of each text, concatenated, and per-text offsets into them."""
        return batch_shingle_hashes(self.normalized(texts), self.ngram, self.kind)

    def compute(self, texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> np.ndarray:
        """Signatures of a batch of texts: a ``(len(texts), num_perm)`` uint32 array.

        A null or empty text (no shingles) gets :data:`EMPTY` in every slot.
        """
        if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
            texts = pa.array(list(texts), pa.string())
        hashes, offsets = self.shingle_hashes(texts)
        return _signatures(hashes, offsets, self.a, self.b)

    def shingles(self, text: str) -> list[str]:
        """One text's shingles as strings, after normalisation (a slow reference)."""
        normalized = self.normalized(pa.array([text], pa.string()))[0].as_py() or ""
        return shingle_strings(normalized, self.ngram, self.kind)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A 64-bit key per (document, band): the hash of the band's index and its ``rows`` values.

    Two documents share a key in band ``i`` exactly when their band ``i`` values are equal (up to a
    64-bit hash collision). Uses the first ``bands * rows`` slots of each signature.
    """
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} hashes; signatures have {signatures.shape[1]}")
    return _band_keys(np.ascontiguousarray(signatures), int(bands), int(rows))


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows for a Jaccard threshold: datasketch's optimiser (equal false-positive and
    false-negative weights)."""
    from datasketch.lsh import _optimal_param

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The probability that two documents of Jaccard ``similarity`` share a band: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=float) ** rows) ** bands
