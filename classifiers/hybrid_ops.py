"""The operations the hybrid LM is built of, in two implementations.

``TorchHybridOps`` is plain, differentiable PyTorch (cuBLAS/MKL matmuls, SDPA, ``F.conv1d``, and the chunked SSD
scan of ``kernels.ssd.ssd_scan_reference``): the CPU path and the training path. ``TritonHybridOps`` calls our
kernels: the GPU scoring path, and under ``TRITON_INTERPRET=1`` the path the CPU tests check against transformers.
Both take and return the same layouts, so the model code does not know which one runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation is None:
        return x
    if activation == "relu2":
        return torch.relu(x).square()
    raise ValueError(f"unknown activation {activation!r}")


class TorchHybridOps:
    """Plain PyTorch (autograd works through every operation)."""

    name = "torch"

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               activation: str | None = None) -> torch.Tensor:
        return _activate(F.linear(x, weight, bias), activation)

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
        return (weight.float() * h).to(x.dtype)

    def add_rmsnorm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        summed = x + residual
        return self.rmsnorm(summed, weight, eps), summed

    def gated_rmsnorm(self, x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, group_size: int,
                      eps: float) -> torch.Tensor:
        h = x.float() * F.silu(gate.float())
        grouped = h.view(*h.shape[:-1], h.shape[-1] // group_size, group_size)
        grouped = grouped * torch.rsqrt(grouped.square().mean(-1, keepdim=True) + eps)
        return weight * grouped.view(h.shape).to(x.dtype)

    def causal_conv1d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      silu: bool = True) -> torch.Tensor:
        length, width = x.shape[1], weight.shape[1]
        out = F.conv1d(x.transpose(1, 2), weight[:, None, :], bias, padding=width - 1, groups=weight.shape[0])
        out = out[..., :length].transpose(1, 2)
        return F.silu(out) if silu else out

    def ssd_scan(self, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                 D: torch.Tensor, chunk_size: int, *, dt_bias: torch.Tensor | None, dt_min: float) -> torch.Tensor:
        from kernels.ssd import ssd_scan_reference

        return ssd_scan_reference(x, dt, A, B, C, D, chunk_size, dt_bias=dt_bias, dt_softplus=True, dt_min=dt_min)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
                  scale: float) -> torch.Tensor:
        # Right padding and a causal mask: a real query never sees a padded key, so lengths are not needed.
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


class TritonHybridOps:
    """Our Triton kernels (``kernels.linear``, ``kernels.rmsnorm``, ``kernels.causal_conv1d``, ``kernels.ssd``,
    ``kernels.attention``); forward only."""

    name = "triton"

    def __init__(self) -> None:
        from kernels import attention, causal_conv1d, linear, rmsnorm, ssd

        self._linear, self._attention = linear.linear, attention.attention
        self._rmsnorm, self._add_rmsnorm, self._gated = rmsnorm.rmsnorm, rmsnorm.add_rmsnorm, rmsnorm.gated_rmsnorm
        self._conv, self._ssd = causal_conv1d.causal_conv1d, ssd.ssd_scan

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               activation: str | None = None) -> torch.Tensor:
        return self._linear(x, weight, bias, activation)

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return self._rmsnorm(x, weight, eps)

    def add_rmsnorm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self._add_rmsnorm(x, residual, weight, eps)

    def gated_rmsnorm(self, x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, group_size: int,
                      eps: float) -> torch.Tensor:
        return self._gated(x, gate, weight, group_size, eps)

    def causal_conv1d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      silu: bool = True) -> torch.Tensor:
        return self._conv(x, weight, bias, silu=silu)

    def ssd_scan(self, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                 D: torch.Tensor, chunk_size: int, *, dt_bias: torch.Tensor | None, dt_min: float) -> torch.Tensor:
        return self._ssd(x, dt, A, B, C, D, chunk_size, dt_bias=dt_bias, dt_softplus=True, dt_min=dt_min)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
                  scale: float) -> torch.Tensor:
        return self._attention(q, k, v, lengths, scale, causal=True)


def make_hybrid_ops(use_kernels: bool) -> TorchHybridOps | TritonHybridOps:
    """The Triton kernels when ``use_kernels``, else plain PyTorch."""
    return TritonHybridOps() if use_kernels else TorchHybridOps()
