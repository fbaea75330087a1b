"""The five Nemotron-CC quality labels of the 0-19 ensemble bucket."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

NUM_BUCKETS = 20

LABEL_BUCKETS: dict[str, tuple[int, int]] = {
    "high": (19, 19),
    "medium_high": (18, 18),
    "medium": (12, 17),
    "medium_low": (7, 11),
    "low": (0, 6),
}
"""Each label's inclusive bucket range, from the best label to the worst."""

_LABEL_OF_BUCKET = np.array(
    [next(label for label, (lo, hi) in LABEL_BUCKETS.items() if lo <= b <= hi) for b in range(NUM_BUCKETS)],
    dtype=object,
)


def label_of(bucket: int) -> str:
    """The label of one bucket (0-19)."""
    if not 0 <= bucket < NUM_BUCKETS:
        raise ValueError(f"quality bucket {bucket} is outside 0-{NUM_BUCKETS - 1}")
    return str(_LABEL_OF_BUCKET[bucket])


def labels_of(buckets: np.ndarray) -> pa.Array:
    """Labels of an array of buckets (0-19, or -1 for no bucket, which gives a null label)."""
    buckets = np.asarray(buckets, dtype=np.int64)
    missing = buckets < 0
    labels = _LABEL_OF_BUCKET[np.where(missing, 0, buckets)]
    return pa.array(labels, pa.string(), mask=missing)


def label_counts(bucket_counts: list[int]) -> dict[str, int]:
    """Sum a 20-entry histogram of buckets into the five labels (best first)."""
    return {label: int(sum(bucket_counts[lo:hi + 1])) for label, (lo, hi) in LABEL_BUCKETS.items()}
