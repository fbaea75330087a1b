"""Exact weighted percentiles of a score over a sharded dataset, and the 0-19 buckets they define.

Definitions (integer weights, so every comparison is exact):

- The weighted ``p``-th percentile of scores ``s_i`` with weights ``w_i >= 0`` (total ``W > 0``) is
  the smallest score ``s`` of the data such that ``100 * W(score <= s) >= p * W`` (the "inverted
  CDF"). Scores of weight 0 never move a percentile.
- The 19 thresholds are the percentiles ``5, 10, ..., 95``; they are non-decreasing.
- The bucket of a score is the number of thresholds ``<= score`` (``np.digitize``): 0-19. A score
  equal to a threshold goes up; equal scores always get equal buckets, so a block of tied scores
  spanning several percentiles lands, whole, in the highest bucket whose threshold it reaches.

Distributed search (no sorting of the dataset, no sample): each threshold is found by narrowing a
range of *keys* (``float_keys``: an order-preserving map of float64 to uint64). Every shard
summarises its scores inside each open range (``summarize_range``): the exact (key, weight) pairs
when it holds at most ``bins`` distinct keys, else a histogram of ``bins`` equal key ranges. The
client (``ThresholdSearch``) adds the summaries up; a range whose summaries are all exact gives its
threshold at once, otherwise the bin where the cumulative weight reaches the target becomes the
next range. Each round divides a range's width by ``bins``, so any float64 data needs at most
``ceil(64 / log2(bins))`` rounds (2 for most real score distributions), each reading only the
per-shard score files, and every message is at most ``bins`` entries per range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES: tuple[int, ...] = tuple(range(5, 100, 5))
"""The percentiles whose scores separate the 20 buckets."""

_SIGN = np.uint64(1 << 63)


def clean_scores(values: np.ndarray) -> np.ndarray:
    """Scores as float64 with ``-0.0`` made ``0.0`` (equal scores must have equal keys); NaN stays NaN."""
    return np.asarray(values, dtype=np.float64) + 0.0


def float_keys(values: np.ndarray) -> np.ndarray:
    """An order-preserving uint64 key of each (non-NaN) float64: ``a < b`` iff ``key(a) < key(b)``."""
    bits = clean_scores(values).view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def key_floats(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float_keys`."""
    keys = np.asarray(keys, dtype=np.uint64)
    positive = (keys & _SIGN) != 0
    return np.where(positive, keys & ~_SIGN, ~keys).view(np.float64)


def key_of(value: float) -> int:
    """:func:`float_keys` of one float, as a Python int."""
    return int(float_keys(np.array([value]))[0])


def float_of(key: int) -> float:
    """:func:`key_floats` of one key."""
    return float(key_floats(np.array([key], dtype=np.uint64))[0])


def percentile_targets(total_weight: int, percentiles: Sequence[int] = PERCENTILES) -> list[int]:
    """For each percentile ``p``, the least integer cumulative weight ``c`` with ``100 * c >= p * W``."""
    return [-(-p * total_weight // 100) for p in percentiles]


def weighted_thresholds(scores: np.ndarray, weights: np.ndarray,
                        percentiles: Sequence[int] = PERCENTILES) -> np.ndarray:
    """The weighted percentiles (see the module docstring) of in-memory data; NaN scores ignored.

    Raises ``ValueError`` when no scored row has a positive weight.
    """
    scores = clean_scores(scores)
    weights = np.asarray(weights, dtype=np.int64)
    keep = ~np.isnan(scores)
    scores, weights = scores[keep], weights[keep]
    total = int(weights.sum())
    if total <= 0:
        raise ValueError("no scored row has a positive weight: percentiles are undefined")
    order = np.argsort(scores, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = np.searchsorted(cumulative, percentile_targets(total, percentiles), side="left")
    return scores[order][index]


def bucketize(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Bucket of each score: the number of thresholds ``<= score`` (int8); -1 for NaN (no score)."""
    scores = clean_scores(scores)
    buckets = np.searchsorted(np.asarray(thresholds, dtype=np.float64), scores, side="right").astype(np.int8)
    buckets[np.isnan(scores)] = -1
    return buckets


def _width(lo: int, hi: int, bins: int) -> int:
    """Keys per bin when the inclusive key range ``[lo, hi]`` is cut into ``bins`` equal bins."""
    return -(-(hi - lo + 1) // bins)


def _bin_index(keys: np.ndarray, lo: int, width: int) -> np.ndarray:
    return ((keys - np.uint64(lo)) // np.uint64(width)).astype(np.int64)


def _sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the exact int64 sum of the weights of each."""
    if not len(keys):
        return keys, weights
    order = np.argsort(keys, kind="stable")
    keys, weights = keys[order], weights[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(weights, starts)


class SortedScores:
    """One shard's scored rows of one classifier, sorted by key, for fast range summaries."""

    def __init__(self, scores: np.ndarray, weights: np.ndarray) -> None:
        scores = clean_scores(scores)
        keep = ~np.isnan(scores)
        keys = float_keys(scores[keep])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.weights = np.asarray(weights, dtype=np.int64)[keep][order]

    def summarize_range(self, lo: int, hi: int, bins: int) -> dict[str, list[list[int]]]:
        """The rows with key in ``[lo, hi]``: ``{"pairs": [[key, weight], ...]}`` (distinct keys,
        weights summed) when at most ``bins`` distinct keys, else ``{"bins": [[bin, weight], ...]}``
        (non-empty bins only). JSON-able; keys and weights are Python ints."""
        a = int(np.searchsorted(self.keys, np.uint64(lo), side="left"))
        b = int(np.searchsorted(self.keys, np.uint64(hi), side="right"))
        keys, weights = _sum_by_key(self.keys[a:b], self.weights[a:b])
        if len(keys) <= bins:
            return {"pairs": [[k, w] for k, w in zip(keys.tolist(), weights.tolist())]}
        index = _bin_index(keys, lo, _width(lo, hi, bins))
        occupied, sums = _sum_by_key(index.astype(np.uint64), weights)
        return {"bins": [[int(i), int(w)] for i, w in zip(occupied.tolist(), sums.tolist())]}


@dataclass
class _Target:
    """One percentile being searched: its target weight and the key range known to hold it."""

    need: int
    lo: int
    hi: int
    below: int          # weight of the scored rows with key < lo
    answer: int | None = None


class ThresholdSearch:
    """The client side of the distributed search for one classifier's thresholds.

    Start from the shards' total weight and min/max scores; while not :attr:`done`, send
    :meth:`ranges` to every shard, get each one's :meth:`SortedScores.summarize_range` per range,
    and pass them, per shard, to :meth:`update`.
    """

    def __init__(self, total_weight: int, min_score: float, max_score: float, bins: int,
                 percentiles: Sequence[int] = PERCENTILES) -> None:
        if total_weight <= 0:
            raise ValueError("no scored document has a positive weight: percentiles are undefined")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, not {bins}")
        self.bins = bins
        self.rounds = 0
        lo, hi = key_of(min_score), key_of(max_score)
        self._targets = [_Target(need, lo, hi, 0, lo if lo == hi else None)
                         for need in percentile_targets(total_weight, percentiles)]

    @property
    def done(self) -> bool:
        """Whether every threshold is known."""
        return all(t.answer is not None for t in self._targets)

    def ranges(self) -> list[tuple[int, int]]:
        """The distinct key ranges still open, sorted (what the shards summarise next)."""
        return sorted({(t.lo, t.hi) for t in self._targets if t.answer is None})

    def update(self, per_shard: Sequence[Sequence[dict[str, Any]]]) -> None:
        """Narrow or resolve every open range from each shard's summaries of :meth:`ranges` (in order)."""
        ranges = self.ranges()
        self.rounds += 1
        for r, (lo, hi) in enumerate(ranges):
            summaries = [shard[r] for shard in per_shard]
            targets = [t for t in self._targets if t.answer is None and (t.lo, t.hi) == (lo, hi)]
            if all("pairs" in s for s in summaries):
                self._resolve_exact(targets, summaries)
            else:
                self._narrow(targets, summaries, lo, hi)

    def _resolve_exact(self, targets: list[_Target], summaries: list[dict[str, Any]]) -> None:
        pairs = [p for s in summaries for p in s["pairs"]]
        keys = np.array([p[0] for p in pairs], dtype=np.uint64)
        keys, weights = _sum_by_key(keys, np.array([p[1] for p in pairs], dtype=np.int64))
        cumulative = np.cumsum(weights)
        for t in targets:
            t.answer = int(keys[int(np.searchsorted(cumulative, t.need - t.below, side="left"))])

    def _narrow(self, targets: list[_Target], summaries: list[dict[str, Any]], lo: int, hi: int) -> None:
        width = _width(lo, hi, self.bins)
        hist = np.zeros(self.bins, dtype=np.int64)
        for s in summaries:
            if "bins" in s:
                index = np.array([b for b, _ in s["bins"]], dtype=np.int64)
                weights = np.array([w for _, w in s["bins"]], dtype=np.int64)
            else:
                keys = np.array([k for k, _ in s["pairs"]], dtype=np.uint64)
                index = _bin_index(keys, lo, width)
                weights = np.array([w for _, w in s["pairs"]], dtype=np.int64)
            np.add.at(hist, index, weights)
        cumulative = np.cumsum(hist)
        for t in targets:
            b = int(np.searchsorted(cumulative, t.need - t.below, side="left"))
            t.below += int(cumulative[b - 1]) if b else 0
            t.lo = lo + b * width
            t.hi = min(hi, t.lo + width - 1)
            if t.lo == t.hi:
                t.answer = t.lo

    def thresholds(self) -> list[float]:
        """The 19 thresholds (float scores), once :attr:`done`."""
        if not self.done:
            raise RuntimeError("the threshold search is not finished")
        return [float_of(t.answer) for t in self._targets]  # type: ignore[arg-type]


def max_rounds(bins: int) -> int:
    """An upper bound on the rounds :class:`ThresholdSearch` needs for any float64 data."""
    return math.ceil(64 / math.log2(bins)) + 1
