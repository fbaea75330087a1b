"""RMSNorm over the last dim, three ways: plain, with the residual add fused (pre-norm blocks), and gated over
groups of channels (the Mamba2 mixer's norm: transformers' NemotronHRMSNormGated).

- ``rmsnorm(x, weight, eps)``: weight * x / sqrt(mean(x^2) + eps).
- ``add_rmsnorm(x, residual, weight, eps) -> (out, summed)``: summed = x + residual (the residual stream,
  written back), out = rmsnorm(summed).
- ``gated_rmsnorm(x, gate, weight, group_size, eps)``: h = x * silu(gate); each group of ``group_size``
  channels of h divided by its own rms; times weight.

One kernel serves all three, one program per (row, group) (a plain norm is one group of the whole row): the
group is read once, its statistics are taken in fp32, and each output is written once. Each ``*_reference``
is the same in PyTorch (differentiable, fp32 math, results in the input dtype).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, is_interpreted

MAX_CHANNELS = 16384
"""The widest group (the whole row for rmsnorm and add_rmsnorm): it is held in registers."""


@triton.jit
def _rmsnorm_kernel(
    x_ptr, residual_ptr, gate_ptr, weight_ptr, out_ptr, summed_ptr,
    GROUP, stride_x, stride_r, stride_g, stride_o, stride_s, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < GROUP
    cols = tl.program_id(1) * GROUP + offs
    h = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        h += tl.load(residual_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(summed_ptr + row * stride_s + cols, h.to(summed_ptr.dtype.element_ty), mask=mask)
    if HAS_GATE:
        gate = tl.load(gate_ptr + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
        h = h * (gate / (1.0 + tl.exp(-gate)))
    mean_square = tl.sum(h * h, axis=0) / GROUP
    y = h * (1.0 / tl.sqrt(mean_square + eps))
    y = y * tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


_INTERPRETED = is_interpreted(_rmsnorm_kernel)


def _rows(t: torch.Tensor, channels: int) -> torch.Tensor:
    """``t`` as [rows, channels] with a contiguous last dim (a view when its strides allow)."""
    rows = t.reshape(-1, channels)
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _output(name: str, what: str, given: torch.Tensor | None, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new contiguous tensor shaped like ``like`` in ``dtype``, or ``given`` once checked to be one."""
    if given is None:
        return torch.empty(like.shape, dtype=dtype, device=like.device)
    if given.shape != like.shape or given.dtype != dtype or not given.is_contiguous():
        raise ValueError(f"{name}: {what} must be a contiguous {tuple(like.shape)} {dtype} tensor")
    return given


def _launch(name: str, x: torch.Tensor, residual: torch.Tensor | None, gate: torch.Tensor | None,
            weight: torch.Tensor, group_size: int, eps: float, out: torch.Tensor | None,
            summed: torch.Tensor | None) -> torch.Tensor:
    """Check the arguments and run the kernel over every (row, group); returns ``out``."""
    channels = x.shape[-1] if x.dim() else 0
    if channels < 1:
        raise ValueError(f"{name}: x must have a last dim of >= 1 channels, got {tuple(x.shape)}")
    if not 1 <= group_size <= MAX_CHANNELS or channels % group_size:
        raise ValueError(f"{name}: group size {group_size} must divide the last dim {channels} and lie in "
                         f"1..{MAX_CHANNELS}")
    for what, other in (("residual", residual), ("gate", gate)):
        if other is not None and other.shape != x.shape:
            raise ValueError(f"{name}: {what} shape {tuple(other.shape)} != x shape {tuple(x.shape)}")
    if tuple(weight.shape) != (channels,):
        raise ValueError(f"{name}: weight must be [{channels}], got {tuple(weight.shape)}")
    check_devices(name, _INTERPRETED, {"x": x, "residual": residual, "gate": gate, "weight": weight})
    out = _output(name, "out", out, x, x.dtype)
    x_rows = _rows(x, channels)
    if x_rows.shape[0] == 0:
        return out
    residual_rows = _rows(residual, channels) if residual is not None else x_rows
    gate_rows = _rows(gate, channels) if gate is not None else x_rows
    summed_rows = summed.view(-1, channels) if summed is not None else x_rows
    out_rows = out.view(-1, channels)
    block = triton.next_power_of_2(group_size)
    # About 8 elements per thread (16-byte bf16 vectors), 1 to 16 warps.
    launch = {} if _INTERPRETED else {"num_warps": min(max(block // 256, 1), 16)}
    # Absent inputs: x stands in for the pointer; HAS_* = False keeps the kernel from reading or writing it.
    _rmsnorm_kernel[(x_rows.shape[0], channels // group_size)](
        x_rows, residual_rows, gate_rows, weight.contiguous(), out_rows, summed_rows, group_size,
        x_rows.stride(0), residual_rows.stride(0), gate_rows.stride(0), out_rows.stride(0), summed_rows.stride(0),
        float(eps), HAS_RESIDUAL=residual is not None, HAS_GATE=gate is not None, BLOCK=block, **launch)
    return out


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """weight * x / sqrt(mean(x^2) + eps) over the last dim (Triton), as transformers' NemotronHRMSNorm.

    x: [..., C] with 1 <= C <= 16384, any strides; weight: [C] in any float dtype. Statistics in fp32; returns
    a new contiguous tensor shaped like x in x's dtype (or fills ``out``, same shape and dtype, contiguous).
    """
    return _launch("rmsnorm", x, None, None, weight, x.shape[-1] if x.dim() else 0, eps, out, None)


def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, *,
                out: torch.Tensor | None = None,
                summed_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rmsnorm(x + residual), x + residual) in one pass (Triton): the norm and the new residual stream.

    x, residual: [..., C] (1 <= C <= 16384), same shape, any strides; weight: [C]. The sum is taken in fp32;
    ``out`` is in x's dtype, ``summed`` in residual's (so a float32 residual stream stays float32). Both are
    new contiguous tensors unless ``out`` / ``summed_out`` are given (contiguous, right shape and dtype);
    ``summed_out`` may be ``residual`` itself, updating the stream in place (each row is read before it is
    written).
    """
    channels = x.shape[-1] if x.dim() else 0
    summed = _output("add_rmsnorm", "summed_out", summed_out, x, residual.dtype)
    out = _launch("add_rmsnorm", x, residual, None, weight, channels, eps, out, summed)
    return out, summed


def gated_rmsnorm(x: torch.Tensor, gate: torch.Tensor | None, weight: torch.Tensor, group_size: int, eps: float,
                  *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Grouped RMSNorm of x * silu(gate) (Triton), as transformers' NemotronHRMSNormGated.

    x, gate: [..., C], same shape, any strides (gate is typically a column slice of the in_proj output);
    gate None normalises x itself. Each run of ``group_size`` channels (which must divide C, at most 16384)
    is normalised by its own rms (fp32), then multiplied by weight [C]. Returns a new contiguous tensor shaped
    like x in x's dtype (or fills ``out``, same shape and dtype, contiguous).
    """
    return _launch("gated_rmsnorm", x, None, gate, weight, group_size, eps, out, None)


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``rmsnorm`` in PyTorch: fp32 statistics and weight product, the result in x's dtype."""
    h = x.float()
    return (weight.float() * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def add_rmsnorm_reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``add_rmsnorm`` in PyTorch: (rmsnorm of the fp32 sum in x's dtype, the sum in residual's dtype)."""
    summed = x.float() + residual.float()
    return rmsnorm_reference(summed, weight, eps).to(x.dtype), summed.to(residual.dtype)


def gated_rmsnorm_reference(x: torch.Tensor, gate: torch.Tensor | None, weight: torch.Tensor, group_size: int,
                            eps: float) -> torch.Tensor:
    """``gated_rmsnorm`` in PyTorch: gate, group statistics and weight product in fp32, result in x's dtype."""
    h = x.float()
    if gate is not None:
        h = h * torch.nn.functional.silu(gate.float())
    groups = h.unflatten(-1, (h.shape[-1] // group_size, group_size))
    normed = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * normed.flatten(-2)).to(x.dtype)
