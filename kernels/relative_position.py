"""DeBERTa-v2/v3 relative positions: log buckets and the index tables the attention kernel gathers with.

DeBERTa's disentangled attention adds two terms to each score (i, j): content-to-position,
``c2p[i, c2p_pos(i, j)]``, and position-to-content, ``p2c[j, p2c_pos(i, j)]``, where ``c2p = q @ pos_key^T``
and ``p2c = k @ pos_query^T`` are [L, 2 * att_span] per head. Both positions depend on ``i - j`` only, so
they are stored once per sequence length as tables indexed by ``i - j + L - 1`` (``2L - 1`` entries), which
is what ``kernels.attention.attention`` takes as ``c2p_index`` and ``p2c_index``.
"""

from __future__ import annotations

import torch


def log_bucket_position(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa-v2's ``make_log_bucket_position``, operation for operation (same float32 rounding).

    Distances within ``bucket_size // 2`` keep their value; longer ones go to logarithmic buckets up to
    ``bucket_size - 1`` (with the sign of the distance). Returns a floating tensor, as transformers does;
    callers cast it to an integer type.
    """
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid),
        torch.tensor(mid - 1).type_as(relative_pos),
        torch.abs(relative_pos),
    )
    log_pos = (
        torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    )
    return torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)


def relative_distances(length: int, bucket_size: int, max_position: int) -> torch.Tensor:
    """Bucketed ``i - j`` for ``i - j`` from ``-(length - 1)`` to ``length - 1`` (int64, ``2 * length - 1``).

    Without buckets (``bucket_size <= 0`` or ``max_position <= 0``) the distances are returned as they are,
    as in transformers' ``build_relative_position``.
    """
    distances = torch.arange(-(length - 1), length, dtype=torch.long)
    if bucket_size > 0 and max_position > 0:
        distances = log_bucket_position(distances, bucket_size, max_position)
    return distances.to(torch.long)


def relative_index_tables(length: int, bucket_size: int, max_position: int,
                          att_span: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The c2p and p2c gather tables for self-attention over ``length`` tokens (int32, ``2 * length - 1`` each).

    Entry ``d = i - j + length - 1`` of ``c2p_index`` is transformers' ``c2p_pos[i, j] = clamp(rel(i - j) +
    att_span, 0, 2 * att_span - 1)``. The p2c term of score (i, j) is ``p2c[j, p2c_pos[j, i]]`` (transformers
    gathers along the key's row and transposes), with ``p2c_pos[j, i] = clamp(-rel(j - i) + att_span, ...)``;
    entry d of ``p2c_index`` is that position. ``rel`` is the log bucket of the distance. Since the buckets are
    odd (``rel(-x) == -rel(x)``) the two tables come out equal, but each is built the way transformers builds
    its own. ``att_span`` is ``position_buckets`` when positive, else ``max_relative_positions``.
    Tables are on the CPU; move them to the kernel's device once per length.
    """
    if length < 1:
        raise ValueError(f"relative_index_tables: length must be >= 1, got {length}")
    if att_span < 1:
        raise ValueError(f"relative_index_tables: att_span must be >= 1, got {att_span}")
    rel = relative_distances(length, bucket_size, max_position)  # rel[d] = bucket(i - j)
    c2p_index = torch.clamp(rel + att_span, 0, 2 * att_span - 1)
    rel_key_to_query = rel.flip(0)  # rel_key_to_query[d] = bucket(j - i)
    p2c_index = torch.clamp(-rel_key_to_query + att_span, 0, 2 * att_span - 1)
    return c2p_index.to(torch.int32), p2c_index.to(torch.int32)
