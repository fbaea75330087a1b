"""The four operations the encoder is built of, in two implementations.

``TritonOps`` calls our kernels (``kernels/``): the GPU path, and under ``TRITON_INTERPRET=1`` the
path the CPU tests check. ``TorchOps`` uses plain PyTorch (cuBLAS/MKL matmuls, SDPA): the CPU path.
Both take and return the same layouts, so the model code does not know which one runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation is None:
        return x
    if activation == "gelu":
        return F.gelu(x)
    if activation == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if activation == "tanh":
        return torch.tanh(x)
    raise ValueError(f"unknown activation {activation!r}")


class TorchOps:
    """Plain PyTorch: linear, add + LayerNorm, masked attention (SDPA, or dense scores for DeBERTa)."""

    name = "torch"

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               activation: str | None = None) -> torch.Tensor:
        return _activate(F.linear(x, weight, bias), activation)

    def add_layernorm(self, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                      bias: torch.Tensor, eps: float) -> torch.Tensor:
        h = x if residual is None else x + residual
        return F.layer_norm(h.float(), (h.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float,
                  c2p: torch.Tensor | None = None, p2c: torch.Tensor | None = None,
                  c2p_index: torch.Tensor | None = None, p2c_index: torch.Tensor | None = None) -> torch.Tensor:
        length = q.shape[-2]
        keys = torch.arange(length, device=q.device)
        valid = keys[None, :] < lengths.to(q.device).long()[:, None]           # [B, L]
        if c2p is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :], scale=scale)
        else:
            delta = keys[:, None] - keys[None, :] + (length - 1)                 # [L, L]: i - j + L - 1
            c2p_idx = c2p_index.to(q.device).long()[delta]
            p2c_idx = p2c_index.to(q.device).long()[delta]
            scores = q.float() @ k.float().transpose(-1, -2)
            scores = scores + torch.gather(c2p.float(), -1, c2p_idx.expand(*c2p.shape[:2], length, length))
            # p2c is read at [key j, index(i, j)]: gather along keys' rows, then transpose to [i, j].
            p2c_rows = torch.gather(p2c.float(), -1, p2c_idx.t().expand(*p2c.shape[:2], length, length))
            scores = (scores + p2c_rows.transpose(-1, -2)) * scale
            scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
            out = (torch.softmax(scores, dim=-1) @ v.float()).to(q.dtype)
        rows_valid = valid[:, None, :, None]
        return out.masked_fill(~rows_valid, 0.0)


class TritonOps:
    """Our Triton kernels (``kernels.linear``, ``kernels.layernorm``, ``kernels.attention``)."""

    name = "triton"

    def __init__(self) -> None:
        from kernels.attention import attention
        from kernels.layernorm import add_layernorm
        from kernels.linear import linear

        self._attention, self._add_layernorm, self._linear = attention, add_layernorm, linear

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               activation: str | None = None) -> torch.Tensor:
        return self._linear(x, weight, bias, activation)

    def add_layernorm(self, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                      bias: torch.Tensor, eps: float) -> torch.Tensor:
        return self._add_layernorm(x, residual, weight, bias, eps)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float,
                  c2p: torch.Tensor | None = None, p2c: torch.Tensor | None = None,
                  c2p_index: torch.Tensor | None = None, p2c_index: torch.Tensor | None = None) -> torch.Tensor:
        return self._attention(q, k, v, lengths, scale, c2p, p2c, c2p_index, p2c_index)


def make_ops(backend: str) -> TorchOps | TritonOps:
    """``torch`` or ``triton``."""
    if backend == "torch":
        return TorchOps()
    if backend == "triton":
        return TritonOps()
    raise ValueError(f"unknown backend {backend!r} (torch or triton)")


def softmax_scale(head_dim: int, factor: int = 1) -> float:
    """1 / sqrt(head_dim * factor): BERT uses factor 1, DeBERTa with c2p and p2c factor 3."""
    return 1.0 / math.sqrt(head_dim * factor)
