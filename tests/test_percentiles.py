"""Weighted percentiles and buckets (classifiers.percentiles, classifiers.quality_labels): the
definitions on hand-made cases, a brute-force reference on random data with weights, ties and
nulls, and the distributed search giving the same thresholds for any split into shards."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.percentiles import (
    PERCENTILES, SortedScores, ThresholdSearch, bucketize, float_keys, key_floats, max_rounds, weighted_thresholds,
)
from classifiers.quality_labels import LABEL_BUCKETS, label_counts, label_of, labels_of


def brute_force_thresholds(scores: np.ndarray, weights: np.ndarray) -> list[float]:
    """For each p: the smallest data score s with 100 * weight(score <= s) >= p * total (pure Python)."""
    pairs = [(float(s), int(w)) for s, w in zip(scores, weights) if not np.isnan(s)]
    total = sum(w for _, w in pairs)
    out = []
    for p in PERCENTILES:
        for s in sorted({s for s, _ in pairs}):
            if 100 * sum(w for x, w in pairs if x <= s) >= p * total:
                out.append(s)
                break
    return out


def distributed_thresholds(scores: np.ndarray, weights: np.ndarray, shards: int, bins: int,
                           seed: int = 0) -> tuple[list[float], int]:
    """The search run as the stage runs it, over a random split of the rows into ``shards`` parts."""
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, shards, len(scores))
    parts = [SortedScores(scores[owner == s], weights[owner == s]) for s in range(shards)]
    scored = ~np.isnan(scores)
    search = ThresholdSearch(int(weights[scored].sum()), float(scores[scored].min()), float(scores[scored].max()),
                             bins)
    while not search.done:
        ranges = search.ranges()
        search.update([[part.summarize_range(lo, hi, bins) for lo, hi in ranges] for part in parts])
    return search.thresholds(), search.rounds


def random_case(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Scores with heavy ties (a third exactly 0.0, some -0.0, a tenth 0.7), a few NaN, and integer
    weights including zeros."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    scores[rng.random(n) < 0.33] = 0.0
    scores[rng.random(n) < 0.05] = -0.0
    scores[rng.random(n) < 0.1] = 0.7
    scores[rng.random(n) < 0.05] = np.nan
    weights = rng.integers(0, 200, n)
    return scores, weights


def test_weights_move_the_percentiles() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    # By documents: 25 % each, so p5..p25 -> 1, p30..p50 -> 2, p55..p75 -> 3, p80..p95 -> 4.
    by_docs = weighted_thresholds(scores, np.ones(4, np.int64))
    assert by_docs.tolist() == [1.0] * 5 + [2.0] * 5 + [3.0] * 5 + [4.0] * 4
    # One heavy document holds 97 % of the weight: every percentile from the 5th up is its score.
    heavy = weighted_thresholds(scores, np.array([1, 1, 1, 97]))
    assert heavy.tolist() == [4.0] * 19
    assert bucketize(scores, heavy).tolist() == [0, 0, 0, 19]
    # Exactly on a boundary: weight(score <= 1) is exactly 5 % and weight(score <= 3) exactly 55 %:
    # the 5th percentile is 1, the 10th 2, the 15th..55th 3, the 60th..95th 4.
    edge = weighted_thresholds(scores, np.array([5, 5, 45, 45]))
    assert edge.tolist() == [1.0, 2.0] + [3.0] * 9 + [4.0] * 8


def test_ties_go_up_and_equal_scores_share_a_bucket() -> None:
    scores = np.array([0.0] * 50 + [0.5] * 10 + list(np.linspace(0.6, 1.0, 40)))
    thresholds = weighted_thresholds(scores, np.ones(len(scores), np.int64))
    # The zeros hold half the documents: the 5th..50th percentiles are all 0.0.
    assert thresholds[:10].tolist() == [0.0] * 10 and thresholds[10] == 0.5
    buckets = bucketize(scores, thresholds)
    assert set(buckets[:50].tolist()) == {10}       # a tie block lands whole in the highest bucket it reaches
    assert set(buckets[50:60].tolist()) == {12}     # 0.5 is the 55th and 60th percentile
    # A score equal to a threshold gets that threshold's bucket; -0.0 equals 0.0.
    assert bucketize(np.array([-0.0, thresholds[15], np.nextafter(thresholds[15], -1)]), thresholds).tolist() == \
        [10, 16, 15]
    assert bucketize(np.array([np.nan, -1.0, 2.0]), thresholds).tolist() == [-1, 0, 19]


def test_matches_brute_force_with_weights_ties_and_nulls() -> None:
    for seed in range(12):
        scores, weights = random_case(seed, n=int(np.random.default_rng(seed).integers(20, 300)))
        expected = brute_force_thresholds(scores, weights)
        assert weighted_thresholds(scores, weights).tolist() == expected
        # Nulls do not count: the same thresholds without the NaN rows.
        scored = ~np.isnan(scores)
        assert weighted_thresholds(scores[scored], weights[scored]).tolist() == expected


@pytest.mark.parametrize("bins", [2, 3, 16, 16384])
def test_distributed_search_is_exact_for_any_sharding(bins: int) -> None:
    for seed in range(6):
        scores, weights = random_case(100 + seed, n=600)
        expected = weighted_thresholds(scores, weights).tolist()
        one, _ = distributed_thresholds(scores, weights, shards=1, bins=bins)
        many, rounds = distributed_thresholds(scores, weights, shards=9, bins=bins, seed=seed)
        assert one == expected and many == expected
        assert rounds <= max_rounds(bins)


def test_distributed_search_on_extreme_and_concentrated_scores() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    # Magnitudes from 1e-300 to 1e300 of both signs, infinities, and a dense cluster of near-equal values.
    scores = np.concatenate([10.0 ** rng.uniform(-300, 300, n) * rng.choice([-1.0, 1.0], n),
                             [np.inf, -np.inf, 5e-324, -5e-324],
                             0.25 + np.arange(2000) * np.finfo(float).eps])
    weights = rng.integers(1, 1000, len(scores))
    expected = weighted_thresholds(scores, weights).tolist()
    for bins in (2, 64, 16384):
        got, rounds = distributed_thresholds(scores, weights, shards=5, bins=bins)
        assert got == expected and rounds <= max_rounds(bins)


def test_realistic_scores_need_two_rounds_with_default_bins() -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(0.5, 2.0, 200_000)                     # a classifier's probabilities
    weights = rng.integers(50, 5000, len(scores))            # tokens per document
    got, rounds = distributed_thresholds(scores, weights, shards=8, bins=16384)
    assert got == weighted_thresholds(scores, weights).tolist()
    assert rounds <= 2


def test_huge_weights_stay_exact() -> None:
    """Integer arithmetic: a total weight beyond 2**53 (where float sums lose units) is still exact."""
    scores = np.array([0.1, 0.2, 0.3])
    weights = np.array([2**60 - 1, 2, 2**60 - 1], dtype=np.int64)
    # 50th percentile: weight(score <= 0.1) is one unit short of half of 2**61, so it is 0.2 (a float
    # share, (2**60 - 1) / 2**61, rounds to exactly 0.5 and would give 0.1).
    expected = brute_force_thresholds(scores, weights)
    assert expected[9] == 0.2
    assert weighted_thresholds(scores, weights).tolist() == expected
    assert distributed_thresholds(scores, weights, shards=2, bins=2)[0] == expected


def test_no_positive_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive weight"):
        weighted_thresholds(np.array([0.1, np.nan]), np.array([0, 5]))
    with pytest.raises(ValueError, match="positive weight"):
        ThresholdSearch(0, 0.0, 1.0, 16)


def test_float_keys_preserve_order_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, 1000),
                             [0.0, np.inf, -np.inf, 5e-324, -5e-324, np.finfo(float).max, -np.finfo(float).max]])
    values.sort()
    keys = float_keys(values)
    assert np.all(np.diff(keys.astype(object)) > 0)
    assert np.array_equal(key_floats(keys), values)
    assert float_keys(np.array([-0.0]))[0] == float_keys(np.array([0.0]))[0]


def test_labels_of_buckets() -> None:
    assert [label_of(b) for b in range(20)] == ["low"] * 7 + ["medium_low"] * 5 + ["medium"] * 6 + \
        ["medium_high", "high"]
    assert labels_of(np.array([19, 18, 12, 11, 0, -1])).to_pylist() == \
        ["high", "medium_high", "medium", "medium_low", "low", None]
    assert label_counts(list(range(20))) == {"high": 19, "medium_high": 18, "medium": sum(range(12, 18)),
                                             "medium_low": sum(range(7, 12)), "low": sum(range(7))}
    assert list(LABEL_BUCKETS) == ["high", "medium_high", "medium", "medium_low", "low"]
    with pytest.raises(ValueError):
        label_of(20)
