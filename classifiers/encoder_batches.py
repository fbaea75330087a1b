"""Tokenising documents for the encoder and grouping them into padded batches of similar length.

Documents are sorted by token count and cut into batches under a token budget (batch size x
padded length), so a batch's padding is small; results go back in the documents' original order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifiers.encoder_config import CheckpointError

PAD_MULTIPLE = 16
"""Padded lengths are rounded up to this (the kernels' smallest tile)."""


def load_tokenizer(folder: str | Path, max_length: int):
    """The folder's ``tokenizer.json`` with truncation to ``max_length`` tokens and no padding."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (the encoder needs the checkpoint's tokenizer.json)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
        raise CheckpointError(f"{path}: cannot load: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def pad_token_id(folder: str | Path, default: int) -> int:
    """The pad token's id from ``tokenizer.json`` (the padding section, else the config's)."""
    try:
        data = json.loads((Path(folder) / "tokenizer.json").read_text())
    except (OSError, json.JSONDecodeError):
        return default
    padding = data.get("padding") or {}
    return int(padding.get("pad_id", default))


@dataclass(frozen=True)
class PaddedBatch:
    """Rows ``rows`` of the input, as right-padded ids ``[B, L]`` with their true lengths."""

    rows: np.ndarray
    ids: torch.Tensor
    lengths: torch.Tensor


def length_batches(token_ids: list[list[int]], max_tokens: int, max_docs: int, pad_id: int,
                   pad_multiple: int = PAD_MULTIPLE) -> Iterator[PaddedBatch]:
    """Batches of documents sorted by length (longest first), each with at most ``max_tokens``
    padded tokens (a single document longer than that is a batch of its own) and ``max_docs`` rows."""
    lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    start = 0
    n = len(order)
    while start < n:
        longest = int(lengths[order[start]])
        padded = max(pad_multiple, -(-longest // pad_multiple) * pad_multiple)
        size = max(1, min(max_docs, max_tokens // padded, n - start))
        rows = order[start:start + size]
        ids = torch.full((size, padded), pad_id, dtype=torch.long)
        for r, row in enumerate(rows):
            seq = token_ids[row]
            ids[r, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        yield PaddedBatch(rows, ids, torch.as_tensor(lengths[rows], dtype=torch.int32))
        start += size


def padding_fraction(token_ids: list[list[int]], max_tokens: int, max_docs: int,
                     pad_multiple: int = PAD_MULTIPLE) -> float:
    """Share of padded positions in the batches :func:`length_batches` would make."""
    real = padded_total = 0
    for batch in length_batches(token_ids, max_tokens, max_docs, 0, pad_multiple):
        real += int(batch.lengths.sum())
        padded_total += batch.ids.numel()
    return 1.0 - real / padded_total if padded_total else 0.0
