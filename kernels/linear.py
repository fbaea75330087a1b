"""y = activation(x @ weight^T + bias): a tiled matmul with the bias and activation in its epilogue.

``weight`` is [N, K] as in ``torch.nn.Linear``. Programs walk the output tiles in groups of GROUP_M tile rows
(so neighbouring programs share x and weight tiles in L2), accumulate in fp32 and write once in x's dtype.
Activations: None, "gelu" (exact, erf: BERT/DeBERTa's hidden_act "gelu"), "gelu_tanh", "tanh", "relu2"
(relu(x)^2: Nemotron-H's MLP, transformers' ReLUSquaredActivation).
``linear_reference`` is the same in PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, dot_precision, is_interpreted, next_power_of_two

ACTIVATIONS = (None, "gelu", "gelu_tanh", "tanh", "relu2")


@triton.jit
def _tanh(x):
    # tanh from exp (tl.math has no tanh on every Triton we run); written on |x| so exp never overflows.
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _linear_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    M, N, K, M_KEY,
    stride_xm, stride_wn, stride_om,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, DOT_PRECISION: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # M_KEY only keys the autotuner (a power of two at or above M); the kernel does not read it.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Rows and columns past the edge wrap onto real ones, so the loads need no M/N mask; the store is masked.
    rows_in = (rows % M).to(tl.int64)
    cols_in = (cols % N).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + rows_in[:, None] * stride_xm + offs_k[None, :]
    w_ptrs = w_ptr + cols_in[None, :] * stride_wn + offs_k[:, None]

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k_tile in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(x_ptrs)
            b = tl.load(w_ptrs)
        else:
            k_left = K - k_tile * BLOCK_K
            a = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K

    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols_in).to(tl.float32)[None, :]
    # Literal constants: 1 / sqrt(2) and sqrt(2 / pi) (a jitted function reads no plain Python globals).
    if ACTIVATION == "gelu":
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    elif ACTIVATION == "gelu_tanh":
        acc = 0.5 * acc * (1.0 + _tanh(0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)))
    elif ACTIVATION == "tanh":
        acc = _tanh(acc)
    elif ACTIVATION == "relu2":
        acc = tl.maximum(acc, 0.0)
        acc = acc * acc

    out_ptrs = out_ptr + rows.to(tl.int64)[:, None] * stride_om + cols[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


_INTERPRETED = is_interpreted(_linear_kernel)
# The interpreter runs one config (autotuning several fails there); every tl.dot side stays >= 16. Small tiles
# make the tests walk several K steps and N tiles; model-sized matrices take the large ones, because the
# interpreter's cost is per program and per loop step (a MiniLM layer: 4 s with the small tiles, 0.6 s).
_INTERPRETER_META = {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16, "GROUP_M": 2}
_INTERPRETER_LARGE_META = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 2}
# Exact fp32 dots run on CUDA cores, not tensor cores: small tiles keep them from spilling (no tuning; fp32 on
# the GPU is for checks, not speed).
_FP32_GPU_META = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "num_warps": 4, "num_stages": 2}
# Tiles for sm_90 bf16/fp16, first the one that compiled without spills with and without an activation.
GPU_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 8}, num_warps=4, num_stages=4),
]


def prune_gpu_configs(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """With an activation, keep tiles of <= 64 fp32 accumulators per thread: the epilogue's temporaries made
    larger ones spill (sm_90 builds with GELU: 128x256 and 256x128 with 8 warps, 128x128 with 4 warps).
    relu2 works in place on the accumulator: every config built for sm_90 without a spill, so all stay."""
    if kwargs.get("ACTIVATION", "none") in ("none", "relu2"):
        return configs
    return [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 64 * 32 * c.num_warps]


# The compiled kernel behind the autotuner (None under the interpreter); tests may narrow its configs.
autotuner = None if _INTERPRETED else triton.autotune(
    configs=GPU_CONFIGS, key=["M_KEY", "N", "K", "HAS_BIAS", "ACTIVATION"],
    prune_configs_by={"early_config_prune": prune_gpu_configs})(_linear_kernel)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: str | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(x @ weight^T + bias) (Triton), x: [..., K], weight: [N, K], bias: [N]; returns [..., N].

    fp32 accumulation, result in x's dtype (or written into ``out``, a contiguous [..., N] tensor).
    ``activation``: None, "gelu" (exact erf GELU), "gelu_tanh", "tanh" or "relu2" (relu(x)^2).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"linear: activation {activation!r} not one of {ACTIVATIONS}")
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x [..., K] and weight [N, K] do not match: {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")
    n_out, k_in = weight.shape
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"linear: bias must be [{n_out}], got {tuple(bias.shape)}")
    if weight.dtype != x.dtype:
        raise ValueError(f"linear: weight dtype {weight.dtype} != x dtype {x.dtype}")
    check_devices("linear", _INTERPRETED, {"x": x, "weight": weight, "bias": bias})
    x_rows = x.reshape(-1, k_in)
    x_rows = x_rows if x_rows.stride(-1) == 1 else x_rows.contiguous()
    weight = weight if weight.stride(-1) == 1 else weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    out_shape = (*x.shape[:-1], n_out)
    if out is None:
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    elif tuple(out.shape) != out_shape or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"linear: out must be a contiguous {out_shape} {x.dtype} tensor")
    out_rows = out.view(-1, n_out)
    m_rows = x_rows.shape[0]
    if m_rows == 0 or n_out == 0:
        return out
    if k_in == 0:
        raise ValueError("linear: K must be >= 1")

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(m_rows, meta["BLOCK_M"]) * triton.cdiv(n_out, meta["BLOCK_N"]),)

    args = (x_rows, weight, bias if bias is not None else weight, out_rows,
            m_rows, n_out, k_in, next_power_of_two(m_rows), x_rows.stride(0), weight.stride(0), out_rows.stride(0))
    flags = {"HAS_BIAS": bias is not None, "ACTIVATION": activation or "none",
             "DOT_PRECISION": dot_precision(x.dtype)}
    if autotuner is None or x.dtype == torch.float32:
        if autotuner is not None:
            meta = _FP32_GPU_META
        else:
            meta = _INTERPRETER_LARGE_META if min(n_out, k_in) >= 256 else _INTERPRETER_META
        _linear_kernel[grid](*args, **flags, EVEN_K=k_in % meta["BLOCK_K"] == 0, **meta)
    else:
        autotuner[grid](*args, **flags, EVEN_K=k_in % 64 == 0)  # every GPU config has BLOCK_K = 64
    return out


def linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     activation: str | None = None) -> torch.Tensor:
    """``linear`` in PyTorch: fp32 matmul, bias, activation, then x's dtype."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"linear_reference: activation {activation!r} not one of {ACTIVATIONS}")
    y = torch.nn.functional.linear(x.float(), weight.float(), bias.float() if bias is not None else None)
    if activation == "gelu":
        y = torch.nn.functional.gelu(y)
    elif activation == "gelu_tanh":
        y = torch.nn.functional.gelu(y, approximate="tanh")
    elif activation == "tanh":
        y = torch.tanh(y)
    elif activation == "relu2":
        y = torch.relu(y).square()
    return y.to(x.dtype)
