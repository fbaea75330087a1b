"""LayerNorm(x + residual) over the last dim, the residual add fused into the same pass (post-LN encoders).

One program per row: the row is read once (x and residual), mean and variance are taken in fp32, and the
normalised row is written once in x's dtype. ``add_layernorm_reference`` is the same in PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, is_interpreted

MAX_CHANNELS = 4096


@triton.jit
def _add_layernorm_kernel(
    x_ptr, residual_ptr, weight_ptr, bias_ptr, out_ptr,
    C, stride_x, stride_r, stride_o, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    mask = cols < C
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(residual_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / C
    centered = tl.where(mask, x - mean, 0.0)
    variance = tl.sum(centered * centered, axis=0) / C
    y = centered * (1.0 / tl.sqrt(variance + eps))
    if HAS_WEIGHT:
        y = y * tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(bias_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


_INTERPRETED = is_interpreted(_add_layernorm_kernel)


def _rows(t: torch.Tensor, channels: int) -> torch.Tensor:
    """``t`` as [rows, channels] with a contiguous last dim (a view when its strides allow)."""
    rows = t.reshape(-1, channels)
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def add_layernorm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None,
                  bias: torch.Tensor | None, eps: float, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """LayerNorm(x + residual) over the last dim (Triton); residual, weight, bias may be None.

    x: [..., C] with C <= 4096 (any C); residual like x; weight, bias: [C]. Statistics in fp32; returns a
    new tensor shaped like x in x's dtype (or fills ``out``, same shape and dtype, contiguous).
    """
    channels = x.shape[-1]
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"add_layernorm: last dim {channels} outside 1..{MAX_CHANNELS}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"add_layernorm: residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and tuple(param.shape) != (channels,):
            raise ValueError(f"add_layernorm: {name} must be [{channels}], got {tuple(param.shape)}")
    check_devices("add_layernorm", _INTERPRETED, {"x": x, "residual": residual, "weight": weight, "bias": bias})
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    x_rows = _rows(x, channels)
    residual_rows = _rows(residual, channels) if residual is not None else x_rows
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    elif out.shape != x.shape or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"add_layernorm: out must be a contiguous {tuple(x.shape)} {x.dtype} tensor")
    out_rows = out.view(-1, channels)
    n_rows = x_rows.shape[0]
    if n_rows == 0:
        return out
    block = triton.next_power_of_2(channels)
    launch = {} if _INTERPRETED else {"num_warps": min(max(block // 256, 1), 8)}
    _add_layernorm_kernel[(n_rows,)](
        x_rows, residual_rows, weight if weight is not None else x_rows, bias if bias is not None else x_rows,
        out_rows, channels, x_rows.stride(0), residual_rows.stride(0), out_rows.stride(0), float(eps),
        HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
        BLOCK_C=block, **launch)
    return out


def add_layernorm_reference(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None,
                            bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``add_layernorm`` in PyTorch: the sum and the normalisation in fp32, the result in x's dtype."""
    total = x.float() if residual is None else x.float() + residual.float()
    return torch.nn.functional.layer_norm(
        total, (x.shape[-1],), weight.float() if weight is not None else None,
        bias.float() if bias is not None else None, eps).to(x.dtype)
