"""What the kernel launchers share: whether Triton runs in its interpreter, and device checks on inputs."""

from __future__ import annotations

import torch
import triton


def is_interpreted(kernel: object) -> bool:
    """True when ``kernel`` was decorated under ``TRITON_INTERPRET=1`` (it runs on CPU tensors, via numpy).

    ``triton.jit`` reads the variable when it decorates, so this reflects the mode the kernel really has.
    """
    return not isinstance(kernel, triton.runtime.JITFunction)


def check_devices(kernel_name: str, interpreted: bool, tensors: dict[str, torch.Tensor | None]) -> torch.device:
    """The one device of ``tensors`` (None entries skipped); raises a ValueError naming the kernel otherwise.

    A compiled kernel needs CUDA tensors; the interpreter needs CPU tensors.
    """
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    distinct = set(devices.values())
    if len(distinct) != 1:
        raise ValueError(f"{kernel_name}: inputs on different devices: {devices}")
    device = distinct.pop()
    if interpreted and device.type != "cpu":
        raise ValueError(f"{kernel_name}: TRITON_INTERPRET=1 runs kernels on CPU tensors, got {device}")
    if not interpreted and device.type != "cuda":
        raise ValueError(f"{kernel_name}: compiled Triton kernels need CUDA tensors, got {device}; use the "
                         f"*_reference function on CPU, or set TRITON_INTERPRET=1 before importing kernels")
    return device


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: exact fp32 ("ieee") for float32 inputs, tensor-core default otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): a coarse autotune key, so that every new batch shape
    does not start a new round of tuning."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
