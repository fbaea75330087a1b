"""Causal depthwise conv1d over time, with an optional SiLU: the short convolution of a Mamba2 mixer.

x is channels-last [b, l, c] (in a Mamba2 mixer, a slice of the in_proj output, so rows are wider than c).
out[b, t, c] = act(bias[c] + sum_j weight[c, j] * x[b, t - (k - 1) + j, c]), with x = 0 before t = 0: the same
as ``nn.Conv1d(c, c, k, groups=c, padding=k - 1)`` cut to the first l steps, which is how transformers'
Mamba2 mixers run it. Programs tile (time block, channel block, batch); each reads its time block and the
k - 1 steps before it (k loads of one tile shifted by one step, the overlap served from cache), sums in fp32
and writes once in x's dtype. ``causal_conv1d_reference`` is the same in PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, is_interpreted, next_power_of_two

MAX_KERNEL_SIZE = 8


@triton.jit
def _causal_conv1d_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    L, C, L_KEY,
    stride_xb, stride_xl, stride_wc, stride_wk, stride_ob, stride_ol,
    KERNEL_SIZE: tl.constexpr, HAS_BIAS: tl.constexpr, APPLY_SILU: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # L_KEY only keys the autotuner (a power of two at or above L); the kernel does not read it.
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    times = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    channels = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    channel_mask = channels < C
    x_batch = x_ptr + batch * stride_xb

    acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + channels, mask=channel_mask, other=0.0).to(tl.float32)[None, :]
    for j in tl.static_range(KERNEL_SIZE):
        w = tl.load(w_ptr + channels * stride_wc + j * stride_wk, mask=channel_mask, other=0.0).to(tl.float32)
        source = times - (KERNEL_SIZE - 1) + j  # steps before 0 are the zero padding
        mask = ((source >= 0) & (source < L))[:, None] & channel_mask[None, :]
        x = tl.load(x_batch + source.to(tl.int64)[:, None] * stride_xl + channels[None, :], mask=mask, other=0.0)
        acc += x.to(tl.float32) * w[None, :]
    if APPLY_SILU:
        acc = acc / (1.0 + tl.exp(-acc))  # exp overflows to inf for very negative acc: the quotient is then -0

    out_ptrs = out_ptr + batch * stride_ob + times.to(tl.int64)[:, None] * stride_ol + channels[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=(times < L)[:, None] & channel_mask[None, :])


_INTERPRETED = is_interpreted(_causal_conv1d_kernel)
# The interpreter runs one config (autotuning several fails there); small tiles make the tests cross several
# time and channel blocks.
_INTERPRETER_META = {"BLOCK_T": 16, "BLOCK_C": 32}
# Memory-bound tiles for sm_90: 64 to 256 channels (whole 16-byte vectors per thread in bf16) by enough steps
# that the k - 1 steps re-read at a tile's top stay a small share. All build without spills (k = 4, bf16);
# 32 to 64 values per thread per shifted load, as the k loads are all in flight at once.
GPU_CONFIGS = [
    triton.Config({"BLOCK_T": 32, "BLOCK_C": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_T": 64, "BLOCK_C": 128}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_T": 16, "BLOCK_C": 256}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_T": 32, "BLOCK_C": 256}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_T": 64, "BLOCK_C": 64}, num_warps=4, num_stages=2),
]

# The compiled kernel behind the autotuner (None under the interpreter); tests may narrow its configs.
autotuner = None if _INTERPRETED else triton.autotune(
    configs=GPU_CONFIGS, key=["L_KEY", "C", "KERNEL_SIZE", "HAS_BIAS", "APPLY_SILU"])(_causal_conv1d_kernel)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, silu: bool = True,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Causal depthwise conv1d over time, then SiLU when ``silu`` (Triton).

    x: [b, l, c], any strides (a contiguous last dim avoids a copy: a column slice of a wider projection is
    read in place); weight: [c, k] with 1 <= k <= 8; bias: [c] or None. Weight and bias may be in any float
    dtype (read as fp32). Returns a new contiguous [b, l, c] tensor in x's dtype (or fills ``out``, same
    shape and dtype, contiguous).
    """
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x must be [b, l, c], got {tuple(x.shape)}")
    batch, length, channels = x.shape
    if weight.dim() != 2 or weight.shape[0] != channels:
        raise ValueError(f"causal_conv1d: weight must be [c, k] = [{channels}, k], got {tuple(weight.shape)}")
    kernel_size = weight.shape[1]
    if not 1 <= kernel_size <= MAX_KERNEL_SIZE:
        raise ValueError(f"causal_conv1d: kernel size {kernel_size} outside 1..{MAX_KERNEL_SIZE}")
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"causal_conv1d: bias must be [{channels}], got {tuple(bias.shape)}")
    check_devices("causal_conv1d", _INTERPRETED, {"x": x, "weight": weight, "bias": bias})
    x = x if x.stride(-1) == 1 else x.contiguous()
    bias = bias.contiguous() if bias is not None else None
    if out is None:
        out = torch.empty((batch, length, channels), dtype=x.dtype, device=x.device)
    elif out.shape != x.shape or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"causal_conv1d: out must be a contiguous {tuple(x.shape)} {x.dtype} tensor")
    if out.numel() == 0:
        return out

    def grid(meta: dict) -> tuple[int, int, int]:
        return triton.cdiv(length, meta["BLOCK_T"]), triton.cdiv(channels, meta["BLOCK_C"]), batch

    args = (x, weight, bias if bias is not None else weight, out, length, channels, next_power_of_two(length),
            x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), out.stride(0), out.stride(1))
    flags = {"KERNEL_SIZE": kernel_size, "HAS_BIAS": bias is not None, "APPLY_SILU": silu}
    if autotuner is None:
        _causal_conv1d_kernel[grid](*args, **flags, **_INTERPRETER_META)
    else:
        autotuner[grid](*args, **flags)
    return out


def causal_conv1d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                            silu: bool = True) -> torch.Tensor:
    """``causal_conv1d`` in PyTorch (differentiable): the sum of k shifted, weighted copies of x in fp32 (the
    same as ``nn.Conv1d(c, c, k, groups=c, padding=k - 1)`` cut to l steps, but exact fp32 on a GPU too, where
    cuDNN may run convolutions in TF32), then SiLU; a contiguous result in x's dtype."""
    length, kernel_size = x.shape[1], weight.shape[1]
    padded = torch.nn.functional.pad(x.float(), (0, 0, kernel_size - 1, 0))  # zeros before t = 0
    w = weight.float()
    y = w[:, 0] * padded[:, :length]
    for j in range(1, kernel_size):
        y = y + w[:, j] * padded[:, j:j + length]
    if bias is not None:
        y = y + bias.float()
    if silu:
        y = torch.nn.functional.silu(y)
    return y.to(x.dtype)
