"""GPU micro-benchmark of the hybrid scorer's elementwise and norm kernels against transformers' torch path.

Nemotron-H-8B layer shapes in bf16 (hidden 4096; Mamba2 mixer: 128 heads of 64 = 8192 channels, 8 groups,
state 128, so the conv runs over 8192 + 2 * 8 * 128 = 10240 channels with k = 4; MLP 4096 -> 21504), over
batch 4 x 4096 tokens:

- causal conv1d + SiLU over the xBC columns of the in_proj output (rows 18560 wide): ours, reading the slice
  in place, vs transformers' torch path (transpose to [b, c, l], F.conv1d with groups = c and k - 1 padding,
  cut to l, SiLU, transpose back, the copy a contiguous [b, l, c] result needs included);
- RMSNorm [16384, 4096]: ours vs transformers' NemotronHRMSNorm;
- add + RMSNorm (a block's residual add and the next block's norm): ours vs ``x + r`` then NemotronHRMSNorm;
- gated grouped RMSNorm [16384, 8192] in 8 groups of 1024, the gate z a slice of the in_proj output: ours vs
  NemotronHRMSNormGated;
- MLP up-projection 4096 -> 21504 with relu^2 in the epilogue: ours vs F.linear then ReLUSquaredActivation.

Times are triton.testing.do_bench medians (ms), each taken twice (the spread between the two is shown);
autotuning happens in a warm-up call first. GB/s on the least bytes (each input read once, each output written
once) and, for the linear, TFLOP/s on 2 M N K; "of floor" is the least time (bytes at the copy ceiling, or
work at the matmul ceiling, both measured first on this device) over ours. Then the max abs and
relative-norm error of ours and of transformers' against the fp32 PyTorch reference, on fresh random inputs.

Without a CUDA GPU the script runs tiny shapes through the Triton interpreter (a smoke run of this script; its
timings mean nothing).

    python benchmarks/hybrid_kernels.py
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# Take this script's folder off the import path (Python puts it first; benchmarks/kernels.py is there), so
# that `kernels` below is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before kernels is imported: triton.jit reads it then

import triton  # noqa: E402
from transformers.activations import ReLUSquaredActivation  # noqa: E402
from transformers.models.nemotron_h import modeling_nemotron_h  # noqa: E402

NemotronHRMSNorm = modeling_nemotron_h.NemotronHRMSNorm
# Older transformers releases (5.17 on the GPU machine) name the gated norm after Mamba2's.
NemotronHRMSNormGated = getattr(modeling_nemotron_h, "NemotronHRMSNormGated", None) or getattr(
    modeling_nemotron_h, "MambaRMSNormGated", None)


class GatedNormLikeTransformers(torch.nn.Module):
    """transformers' NemotronHRMSNormGated, for releases without it: the same PyTorch operations."""

    def __init__(self, hidden: int, group_size: int, eps: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden))
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        h = x.float() * torch.nn.functional.silu(gate.float())
        grouped = h.view(*h.shape[:-1], -1, self.group_size)
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * grouped.view(h.shape).to(x.dtype)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.kernel_timing import (Row, errors, measure_ceilings,  # noqa: E402
                                      print_table, print_tuned_configs, time_ms)

import kernels.causal_conv1d  # noqa: E402
import kernels.linear  # noqa: E402
from kernels.causal_conv1d import causal_conv1d, causal_conv1d_reference  # noqa: E402
from kernels.linear import linear, linear_reference  # noqa: E402
from kernels.rmsnorm import (add_rmsnorm, add_rmsnorm_reference, gated_rmsnorm,  # noqa: E402
                             gated_rmsnorm_reference, rmsnorm, rmsnorm_reference)

EPS = 1e-5


@dataclass(frozen=True)
class Shapes:
    """The layer and batch dimensions benchmarked."""

    batch: int
    length: int
    hidden: int
    mamba_heads: int
    mamba_head_dim: int
    n_groups: int
    state: int
    conv_kernel: int
    mlp: int

    @property
    def tokens(self) -> int:
        """Rows of the token-wise kernels (batch x length)."""
        return self.batch * self.length

    @property
    def inner(self) -> int:
        """The mixer's inner width (heads x head dim): x, z and the gated norm's channels."""
        return self.mamba_heads * self.mamba_head_dim

    @property
    def conv_channels(self) -> int:
        """x, B and C: the channels of the causal conv."""
        return self.inner + 2 * self.n_groups * self.state

    @property
    def projection(self) -> int:
        """The in_proj output width: z, xBC, dt."""
        return self.inner + self.conv_channels + self.mamba_heads


NEMOTRON_H_8B = Shapes(batch=4, length=4096, hidden=4096, mamba_heads=128, mamba_head_dim=64, n_groups=8,
                       state=128, conv_kernel=4, mlp=21504)
TINY = Shapes(batch=2, length=40, hidden=64, mamba_heads=4, mamba_head_dim=32, n_groups=2, state=16,
              conv_kernel=4, mlp=96)


def random(shape: tuple[int, ...], gen: torch.Generator, device: torch.device, dtype: torch.dtype,
           scale: float = 1.0) -> torch.Tensor:
    """Normal values drawn in fp32 on CPU (the same on every device), then moved and cast."""
    return (torch.randn(shape, generator=gen) * scale).to(device, dtype)


def bench_conv(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """Causal conv1d + SiLU over the xBC slice of the in_proj output: ours vs transformers' torch path."""
    channels, kernel_size = s.conv_channels, s.conv_kernel

    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        projection = random((s.batch, s.length, s.projection), gen, device, dtype)
        xbc = projection[..., s.inner:s.inner + channels]
        return xbc, random((channels, kernel_size), gen, device, dtype, 0.5), random((channels,), gen, device, dtype)

    def theirs(xbc: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(xbc.transpose(1, 2), weight.unsqueeze(1), bias, padding=kernel_size - 1, groups=channels)
        return F.silu(y[..., :s.length]).transpose(1, 2).contiguous()

    xbc, weight, bias = inputs(1)
    ours_ms, spread = time_ms(lambda: causal_conv1d(xbc, weight, bias))
    torch_ms, _ = time_ms(lambda: theirs(xbc, weight, bias))
    xbc, weight, bias = inputs(2)
    ref = causal_conv1d_reference(xbc.float(), weight.float(), bias.float())
    n_bytes = 2 * s.tokens * channels * xbc.element_size()
    return Row(f"conv1d+silu [{s.tokens}, {channels}] k={kernel_size}", ours_ms, torch_ms, spread,
               2 * kernel_size * s.tokens * channels, n_bytes,
               errors(causal_conv1d(xbc, weight, bias), ref), errors(theirs(xbc, weight, bias), ref))


def bench_rmsnorm(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """RMSNorm: ours vs NemotronHRMSNorm."""
    module = NemotronHRMSNorm(s.hidden, eps=EPS).to(device, dtype)

    def inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        x, weight = random((s.tokens, s.hidden), gen, device, dtype), random((s.hidden,), gen, device, dtype)
        with torch.no_grad():
            module.weight.copy_(weight)
        return x, weight

    x, weight = inputs(3)
    with torch.no_grad():
        ours_ms, spread = time_ms(lambda: rmsnorm(x, weight, EPS))
        torch_ms, _ = time_ms(lambda: module(x))
        x, weight = inputs(4)
        ref = rmsnorm_reference(x.float(), weight.float(), EPS)
        return Row(f"rmsnorm [{s.tokens}, {s.hidden}]", ours_ms, torch_ms, spread, 4 * s.tokens * s.hidden,
                   2 * s.tokens * s.hidden * x.element_size(), errors(rmsnorm(x, weight, EPS), ref),
                   errors(module(x), ref))


def bench_add_rmsnorm(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """add + RMSNorm (both outputs): ours vs ``x + r`` then NemotronHRMSNorm."""
    module = NemotronHRMSNorm(s.hidden, eps=EPS).to(device, dtype)

    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        x, r = (random((s.tokens, s.hidden), gen, device, dtype) for _ in range(2))
        weight = random((s.hidden,), gen, device, dtype)
        with torch.no_grad():
            module.weight.copy_(weight)
        return x, r, weight

    def theirs(x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        summed = x + r
        return module(summed), summed

    x, r, weight = inputs(5)
    with torch.no_grad():
        ours_ms, spread = time_ms(lambda: add_rmsnorm(x, r, weight, EPS))
        torch_ms, _ = time_ms(lambda: theirs(x, r))
        x, r, weight = inputs(6)
        ref, _ = add_rmsnorm_reference(x.float(), r.float(), weight.float(), EPS)
        return Row(f"add+rmsnorm [{s.tokens}, {s.hidden}]", ours_ms, torch_ms, spread, 5 * s.tokens * s.hidden,
                   4 * s.tokens * s.hidden * x.element_size(), errors(add_rmsnorm(x, r, weight, EPS)[0], ref),
                   errors(theirs(x, r)[0], ref))


def bench_gated_rmsnorm(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """Gated grouped RMSNorm, gate z read from the in_proj output: ours vs NemotronHRMSNormGated."""
    group = s.inner // s.n_groups
    norm_class = NemotronHRMSNormGated or GatedNormLikeTransformers
    module = norm_class(s.inner, group_size=group, eps=EPS).to(device, dtype)

    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        y = random((s.batch, s.length, s.inner), gen, device, dtype)
        gate = random((s.batch, s.length, s.projection), gen, device, dtype)[..., :s.inner]
        weight = random((s.inner,), gen, device, dtype)
        with torch.no_grad():
            module.weight.copy_(weight)
        return y, gate, weight

    y, gate, weight = inputs(7)
    with torch.no_grad():
        ours_ms, spread = time_ms(lambda: gated_rmsnorm(y, gate, weight, group, EPS))
        torch_ms, _ = time_ms(lambda: module(y, gate))
        y, gate, weight = inputs(8)
        ref = gated_rmsnorm_reference(y.float(), gate.float(), weight.float(), group, EPS)
        return Row(f"gated rmsnorm [{s.tokens}, {s.inner}]/{group}", ours_ms, torch_ms, spread,
                   8 * s.tokens * s.inner, 3 * s.tokens * s.inner * y.element_size(),
                   errors(gated_rmsnorm(y, gate, weight, group, EPS), ref), errors(module(y, gate), ref))


def bench_linear_relu2(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """The MLP up-projection with relu^2: ours (fused) vs F.linear then ReLUSquaredActivation (no bias)."""
    act = ReLUSquaredActivation()

    def inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return (random((s.tokens, s.hidden), gen, device, dtype),
                random((s.mlp, s.hidden), gen, device, dtype, s.hidden ** -0.5))

    x, weight = inputs(9)
    ours_ms, spread = time_ms(lambda: linear(x, weight, None, "relu2"))
    torch_ms, _ = time_ms(lambda: act(F.linear(x, weight)))
    x, weight = inputs(10)
    ref = linear_reference(x.float(), weight.float(), None, "relu2")
    n_bytes = (s.tokens * s.hidden + s.mlp * s.hidden + s.tokens * s.mlp) * x.element_size()
    return Row(f"linear {s.hidden}->{s.mlp} +relu2", ours_ms, torch_ms, spread, 2 * s.tokens * s.mlp * s.hidden,
               n_bytes, errors(linear(x, weight, None, "relu2"), ref), errors(act(F.linear(x, weight)), ref))


def main() -> None:
    if ON_GPU:
        device, dtype, shapes = torch.device("cuda"), torch.bfloat16, NEMOTRON_H_8B
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; bf16")
    else:
        device, dtype, shapes = torch.device("cpu"), torch.float32, TINY
        print("no CUDA GPU: tiny shapes in fp32 through the Triton interpreter (a smoke run; timings mean nothing)")
    print(f"{shapes}")
    ceilings = measure_ceilings(device, dtype)
    print(f"ceilings: copy {ceilings.bytes_per_s / 1e9:,.0f} GB/s, matmul {ceilings.flops_per_s / 1e12:,.1f} TFLOP/s")
    rows = [bench_conv(shapes, dtype, device), bench_rmsnorm(shapes, dtype, device),
            bench_add_rmsnorm(shapes, dtype, device), bench_gated_rmsnorm(shapes, dtype, device),
            bench_linear_relu2(shapes, dtype, device)]
    if ON_GPU:
        print("autotuned configs:")
        print_tuned_configs({"causal_conv1d": kernels.causal_conv1d.autotuner, "linear": kernels.linear.autotuner})
    print_table(rows, ceilings, name_width=38)


if __name__ == "__main__":
    main()
