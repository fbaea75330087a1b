"""What the kernel tests share: where the kernels run, in which dtypes, and how close counts as equal.

Without a usable CUDA GPU the kernels run in Triton's interpreter on CPU tensors, in fp32 only (the
interpreter gets bf16 wrong). On a GPU they run compiled, in fp32, bf16 and fp16. Import this module before
``kernels``: Triton picks the interpreter when ``triton.jit`` decorates, from TRITON_INTERPRET.

Tolerances, against the PyTorch reference run in fp32 on the same (rounded) inputs:
- fp32: max abs difference <= 1e-4 (interpreter, or GPU with exact fp32 dots).
- bf16: relative norm ||out - ref|| / ||ref|| <= 1e-2 and max abs <= 5e-2 * max(1, max |ref|): bf16 keeps
  8 mantissa bits, so one rounding of an O(1) value is up to 4e-3, and attention also rounds P to bf16.
- fp16: relative norm <= 3e-3 and max abs <= 1e-2 * max(1, max |ref|) (11 mantissa bits).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
DTYPES = [torch.float32, torch.bfloat16, torch.float16] if ON_GPU else [torch.float32]
FP32_MAX_ABS = 1e-4
LOW_PRECISION = {torch.bfloat16: (1e-2, 5e-2), torch.float16: (3e-3, 1e-2)}  # (relative norm, max abs scale)
TILE_DTYPE = torch.bfloat16 if ON_GPU else torch.float32
"""The dtype the per-config tests run in: the GPU configs' own, or fp32 under the interpreter."""


def poisoned(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An output buffer full of NaN, so any element the kernel fails to write shows."""
    return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)


def randn(*shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Fresh normal values (drawn in fp32 on CPU, then moved and cast)."""
    return (torch.randn(*shape) * scale).to(device=DEVICE, dtype=dtype)


def assert_matches(out: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """Assert ``out`` (any dtype) matches the fp32 reference ``ref`` within the tolerance of out's dtype."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    got = out.float()
    assert torch.isfinite(got).all(), f"{what}: {int((~torch.isfinite(got)).sum())} non-finite values"
    diff = (got - ref.float()).abs()
    if out.dtype == torch.float32:
        assert diff.max().item() <= FP32_MAX_ABS, f"{what}: max abs diff {diff.max().item():.3g} > {FP32_MAX_ABS}"
        return
    max_rel_norm, max_abs_scale = LOW_PRECISION[out.dtype]
    rel_norm = (diff.norm() / ref.float().norm().clamp_min(1e-12)).item()
    max_abs = max_abs_scale * max(1.0, ref.abs().max().item())
    assert rel_norm <= max_rel_norm, f"{what}: relative norm error {rel_norm:.3g} > {max_rel_norm} ({out.dtype})"
    assert diff.max().item() <= max_abs, f"{what}: max abs diff {diff.max().item():.3g} > {max_abs:.3g}"


@contextmanager
def only_configs(tuner: Any, configs: list[Any]) -> Iterator[None]:
    """Let an autotuned kernel choose among ``configs`` only, inside the block (with one config it tunes
    nothing); a no-op when ``tuner`` is None (interpreter). On a GPU this keeps the tests from tuning, and
    compiling, every config for every shape they try; each config is checked once on its own instead."""
    if tuner is None:
        yield
        return
    saved = tuner.configs
    tuner.configs = list(configs)
    try:
        yield
    finally:
        tuner.configs = saved


@contextmanager
def gpu_tile_config(module: Any, config: Any) -> Iterator[None]:
    """Run ``module``'s kernel with one of its GPU tile configs inside the block.

    On a GPU the autotuner is narrowed to it. Under the interpreter (no GPU, as in CI) the config's block
    sizes replace the interpreter's own (warps and stages mean nothing there), so the tiling and masks of
    every GPU config are checked on the CPU too, in fp32.
    """
    if module.autotuner is not None:
        with only_configs(module.autotuner, [config]):
            yield
        return
    names = [n for n in ("_INTERPRETER_META", "_INTERPRETER_LARGE_META") if hasattr(module, n)]
    saved = {n: getattr(module, n) for n in names}
    for n in names:
        setattr(module, n, {**saved[n], **config.kwargs})
    try:
        yield
    finally:
        for n, meta in saved.items():
            setattr(module, n, meta)
