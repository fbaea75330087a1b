"""Speed and error of the Mamba2 SSD scan: our Triton kernels (``kernels.ssd.ssd_scan``) vs the chunked PyTorch
path (``ssd_scan_reference``, the algorithm of transformers' torch fallback, fp32 math).

GPU: Nemotron-H-8B's mixer shapes (128 heads of 64, state 128, 8 groups, chunk 128) in bf16, batch 4 x 2048 and
4 x 4096 tokens, with x, dt, B and C as strided views of one projection as the model has them. Times are
triton.testing.do_bench medians (ms) after a warm-up call (autotuning happens there); tokens/s = batch x length
/ time. Rates on the least work: bytes (x, dt, B, C read once, y written once) and FLOPs of the chunked
algorithm (causal half of the in-chunk C B^T and its product with x, chunk states, carried-in states).
Errors: max abs and relative norm of ours (bf16 out) and of the PyTorch path on bf16 inputs, against the fp32
reference on the same rounded inputs. Then a per-kernel breakdown from torch.profiler.

Without a CUDA GPU the script runs one tiny shape through the Triton interpreter (a smoke run of this script;
its timings mean nothing).

    python benchmarks/ssd_scan.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

# benchmarks/kernels.py would shadow the `kernels` package: take this script's folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before kernels is imported: triton.jit reads it then

import triton  # noqa: E402

from kernels.ssd import ssd_scan, ssd_scan_reference  # noqa: E402


@dataclass(frozen=True)
class Shapes:
    """One benchmarked call: batch and length, and the mixer's SSM dimensions."""

    batch: int
    length: int
    heads: int
    head_dim: int
    groups: int
    state: int
    chunk: int

    @property
    def tokens(self) -> int:
        return self.batch * self.length

    def least_bytes(self, element_size: int) -> float:
        """x, B, C, dt read once and y written once."""
        per_token = 2 * self.heads * self.head_dim + 2 * self.groups * self.state + self.heads
        return float(self.tokens * per_token * element_size)

    def flops(self) -> float:
        """The chunked algorithm's useful work: in-chunk C B^T and its product with x (causal half), each chunk's
        state x^T B, and the carried-in state C S^T; per token and head."""
        in_chunk = self.chunk * (self.state + self.head_dim)  # 2 Q/2 (n + p)
        states = 4 * self.head_dim * self.state
        return float(self.tokens * self.heads * (in_chunk + states))


NEMOTRON_H_8B = [Shapes(4, 2048, 128, 64, 8, 128, 128), Shapes(4, 4096, 128, 64, 8, 128, 128)]
TINY = [Shapes(1, 40, 4, 16, 2, 16, 16)]


def inputs(s: Shapes, dtype: torch.dtype, device: torch.device, seed: int) -> tuple:
    """(x, dt, A, B, C, D, dt_bias): x, B, C, dt strided views of one projection; dt_bias and A as a trained
    Mamba2 layer has them (dt around 0.001..0.1, A = -(1..16))."""
    gen = torch.Generator().manual_seed(seed)
    width = s.heads * s.head_dim + 2 * s.groups * s.state + s.heads
    fused = torch.randn(s.batch, s.length, width, generator=gen).to(device, dtype)
    xw, gw = s.heads * s.head_dim, s.groups * s.state
    x = fused[..., :xw].unflatten(-1, (s.heads, s.head_dim))
    B = fused[..., xw:xw + gw].unflatten(-1, (s.groups, s.state))
    C = fused[..., xw + gw:xw + 2 * gw].unflatten(-1, (s.groups, s.state))
    dt = fused[..., xw + 2 * gw:]
    dt_init = torch.exp(torch.rand(s.heads, generator=gen) * (torch.log(torch.tensor(0.1)) - torch.log(
        torch.tensor(0.001))) + torch.log(torch.tensor(0.001)))
    dt_bias = (dt_init + torch.log(-torch.expm1(-dt_init))).to(device)  # inverse softplus
    A = -torch.empty(s.heads).uniform_(1.0, 16.0, generator=gen).to(device)
    D = torch.ones(s.heads, device=device)
    return x, dt, A, B, C, D, dt_bias


def time_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds of ``fn`` (do_bench on a GPU, three wall-clock runs under the interpreter)."""
    fn()  # compilation and autotuning happen here, outside the timed region
    if ON_GPU:
        torch.cuda.synchronize()
        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return statistics.median(runs)


def errors(got: torch.Tensor, ref: torch.Tensor) -> str:
    diff = got.float() - ref
    return f"max abs {diff.abs().max().item():.2e}, rel norm {(diff.norm() / ref.norm()).item():.2e}"


def kernel_breakdown(fn: Callable[[], object]) -> list[tuple[str, float]]:
    """(kernel name, ms per call) of ``fn``'s GPU kernels over 10 calls, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / 1e3 / 10) for e in prof.key_averages() if e.device_time_total > 0]
    return sorted(rows, key=lambda row: -row[1])


def bench(s: Shapes, dtype: torch.dtype, device: torch.device) -> None:
    x, dt, A, B, C, D, dt_bias = inputs(s, dtype, device, seed=1)
    kwargs = {"dt_bias": dt_bias}
    ours_ms = time_ms(lambda: ssd_scan(x, dt, A, B, C, D, s.chunk, **kwargs))
    torch_ms = time_ms(lambda: ssd_scan_reference(x, dt, A, B, C, D, s.chunk, **kwargs))
    name = f"b={s.batch} l={s.length} h={s.heads} p={s.head_dim} g={s.groups} n={s.state} chunk={s.chunk}"
    print(f"\n{name} ({str(dtype).removeprefix('torch.')})")
    gbs = s.least_bytes(x.element_size()) / ours_ms / 1e6
    tflops = s.flops() / ours_ms / 1e9
    print(f"  ours (Triton)      {ours_ms:9.3f} ms  {s.tokens / ours_ms * 1e3:14,.0f} tokens/s  "
          f"({gbs:,.0f} GB/s, {tflops:,.1f} TFLOP/s on the least work)")
    print(f"  torch chunked path {torch_ms:9.3f} ms  {s.tokens / torch_ms * 1e3:14,.0f} tokens/s  "
          f"speed-up {torch_ms / ours_ms:.1f}x")

    ref = ssd_scan_reference(x.float(), dt.float(), A, B.float(), C.float(), D, s.chunk, **kwargs).float()
    print(f"  error vs fp32 reference: ours {errors(ssd_scan(x, dt, A, B, C, D, s.chunk, **kwargs), ref)}; "
          f"torch path {errors(ssd_scan_reference(x, dt, A, B, C, D, s.chunk, **kwargs), ref)}")
    del ref
    if ON_GPU:
        print("  per kernel (torch.profiler, ms per call):")
        for kernel, ms in kernel_breakdown(lambda: ssd_scan(x, dt, A, B, C, D, s.chunk, **kwargs)):
            print(f"    {ms:8.3f}  {kernel[:90]}")
        torch.cuda.empty_cache()


def main() -> None:
    if ON_GPU:
        device, dtype, shapes = torch.device("cuda"), torch.bfloat16, NEMOTRON_H_8B
        print(f"SSD scan on {torch.cuda.get_device_name()}; Nemotron-H-8B mixer shapes")
    else:
        device, dtype, shapes = torch.device("cpu"), torch.float32, TINY
        print("No CUDA GPU: a tiny smoke run through the Triton interpreter (timings mean nothing)")
    for s in shapes:
        bench(s, dtype, device)


if __name__ == "__main__":
    main()
