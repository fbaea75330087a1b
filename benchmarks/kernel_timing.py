"""What the kernel micro-benchmarks share: timing, the device's ceilings, errors and the results table.

Imported as ``benchmarks.kernel_timing`` by ``kernels.py`` and ``hybrid_kernels.py`` (which take their own folder
off the import path, since ``benchmarks/kernels.py`` would shadow the ``kernels`` package). Set TRITON_INTERPRET
before importing this on a machine without a GPU, as those scripts do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import triton.testing

ON_GPU = torch.cuda.is_available()


@dataclass
class Row:
    """One line of the table: both timings, the work and least bytes of the case, both errors."""

    name: str
    ours_ms: float
    torch_ms: float
    spread: float
    flops: float
    bytes: float
    ours_err: tuple[float, float]
    torch_err: tuple[float, float]


@dataclass
class Ceilings:
    """What this device sustains: bytes/s of a large copy (read + write) and FLOP/s of a large matmul."""

    bytes_per_s: float
    flops_per_s: float

    def floor_ms(self, flops: float, n_bytes: float) -> float:
        """The least time a case can take: its work or its bytes at the ceiling, whichever is longer."""
        return 1e3 * max(flops / self.flops_per_s, n_bytes / self.bytes_per_s)


def time_ms(fn: Callable[[], object]) -> tuple[float, float]:
    """Median milliseconds of ``fn`` taken twice: (the lower median, spread between the two in %)."""
    fn()  # autotuning and compilation happen here, outside the timed region
    medians = []
    for _ in range(2):
        if ON_GPU:
            torch.cuda.synchronize()
            medians.append(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))
        else:
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                fn()
                runs.append((time.perf_counter() - start) * 1e3)
            medians.append(statistics.median(runs))
    return min(medians), 100 * abs(medians[0] - medians[1]) / min(medians)


def measure_ceilings(device: torch.device, dtype: torch.dtype) -> Ceilings:
    """A 1 GiB device copy and an 8192^3 matmul (smaller on CPU), on random data."""
    n_bytes, size = (1 << 30, 8192) if ON_GPU else (1 << 24, 256)
    src = torch.randint(0, 255, (n_bytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms, _ = time_ms(lambda: dst.copy_(src))
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    matmul_ms, _ = time_ms(lambda: a @ b)
    return Ceilings(2 * n_bytes / copy_ms * 1e3, 2 * size ** 3 / matmul_ms * 1e3)


def errors(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, ||got - ref|| / ||ref||) against an fp32 reference."""
    diff = got.float() - ref.float()
    return diff.abs().max().item(), (diff.norm() / ref.float().norm()).item()




def print_table(rows: list[Row], ceilings: Ceilings, name_width: int = 50) -> None:
    """The results, one line per case."""
    print(f"{'case':{name_width}s} {'ours ms':>8s} {'torch ms':>8s} {'speedup':>7s} {'spread':>6s} {'floor ms':>8s} "
          f"{'of floor':>8s} {'TFLOP/s':>7s} {'GB/s':>6s}  {'ours err: max, rel':>19s}  {'torch err: max, rel':>19s}")
    for r in rows:
        floor = ceilings.floor_ms(r.flops, r.bytes)
        print(f"{r.name:{name_width}s} {r.ours_ms:8.3f} {r.torch_ms:8.3f} {r.torch_ms / r.ours_ms:6.2f}x "
              f"{r.spread:5.1f}% {floor:8.3f} {100 * floor / r.ours_ms:7.0f}% {r.flops / r.ours_ms / 1e9:7.1f} "
              f"{r.bytes / r.ours_ms / 1e6:6.0f}  {r.ours_err[0]:9.2e} {r.ours_err[1]:9.2e}  "
              f"{r.torch_err[0]:9.2e} {r.torch_err[1]:9.2e}")


def print_tuned_configs(tuners: dict[str, Any]) -> None:
    """The configs the autotuners (name -> autotuner, None under the interpreter) settled on."""
    for name, tuner in tuners.items():
        for key, config in (getattr(tuner, "cache", None) or {}).items():
            print(f"  {name} {key}: {config}")
