"""The causal depthwise conv1d (+ SiLU) kernel against its PyTorch reference, and the reference against the
definition and against nn.Conv1d run the way transformers' Mamba2 mixer runs it.

Without a GPU the kernel runs in Triton's interpreter (fp32, 16-step x 32-channel tiles); on a GPU it runs
compiled in fp32, bf16 and fp16 with the looser tolerances documented in tests/helpers/kernel_checks.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.helpers.kernel_checks import (DEVICE, DTYPES, ON_GPU, TILE_DTYPE, assert_matches, gpu_tile_config,  # first
                                         only_configs, poisoned, randn)

import kernels.causal_conv1d  # noqa: E402
from kernels.causal_conv1d import causal_conv1d, causal_conv1d_reference  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_gpu_config")


@pytest.fixture
def single_gpu_config() -> Iterator[None]:
    """On a GPU, the tests run the first config untuned; the config tests below cover the others."""
    with only_configs(kernels.causal_conv1d.autotuner, kernels.causal_conv1d.GPU_CONFIGS[:1]):
        yield


def check_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool, what: str) -> None:
    """The kernel into a NaN-poisoned buffer and into its own, both against the fp32 reference."""
    ref = causal_conv1d_reference(x.float(), weight.float(), bias.float() if bias is not None else None, silu=silu)
    out = poisoned(tuple(x.shape), x.dtype)
    causal_conv1d(x, weight, bias, silu=silu, out=out)
    assert_matches(out, ref, what)
    allocated = causal_conv1d(x, weight, bias, silu=silu)
    assert allocated.dtype == x.dtype and allocated.shape == x.shape and allocated.is_contiguous()
    assert_matches(allocated, ref, f"{what} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "length", "channels", "kernel_size", "with_bias"), [
    (2, 37, 90, 4, True),    # neither l nor c a multiple of the tiles: Mamba2's k = 4
    (1, 3, 5, 4, True),      # fewer steps than the kernel: every output reads padding
    (3, 16, 32, 1, False),   # k = 1: a per-channel scale, whole tiles
    (2, 50, 70, 2, True),
    (1, 33, 48, 3, False),
    (2, 21, 40, 8, True),    # the widest kernel supported
])
def test_causal_conv1d_matches_reference(dtype: torch.dtype, batch: int, length: int, channels: int,
                                         kernel_size: int, with_bias: bool) -> None:
    x = randn(batch, length, channels, dtype=dtype)
    weight = randn(channels, kernel_size, dtype=dtype, scale=0.5)
    bias = randn(channels, dtype=dtype) if with_bias else None
    for silu in (True, False):
        check_conv(x, weight, bias, silu, f"conv b{batch} l{length} c{channels} k{kernel_size} silu={silu} {dtype}")


def test_reference_is_the_mixers_conv() -> None:
    """The reference equals nn.Conv1d(c, c, k, groups=c, padding=k - 1) cut to l steps, then SiLU: the conv of
    transformers' Mamba2 mixers (on CPU, where it runs in exact fp32)."""
    for kernel_size, with_bias, silu in ((1, True, True), (2, False, True), (3, True, False), (4, True, True)):
        x, weight, bias = torch.randn(2, 19, 24), torch.randn(24, kernel_size), torch.randn(24)
        conv = torch.nn.Conv1d(24, 24, kernel_size, groups=24, padding=kernel_size - 1, bias=with_bias)
        with torch.no_grad():
            conv.weight.copy_(weight.unsqueeze(1))
            if with_bias:
                conv.bias.copy_(bias)
            mixer = conv(x.transpose(1, 2))[..., :19].transpose(1, 2)
        mixer = torch.nn.functional.silu(mixer) if silu else mixer
        what = f"k{kernel_size} bias={with_bias} silu={silu}"
        assert_matches(causal_conv1d_reference(x, weight, bias if with_bias else None, silu=silu), mixer, what)
        got = causal_conv1d(x.to(DEVICE), weight.to(DEVICE), bias.to(DEVICE) if with_bias else None, silu=silu)
        assert_matches(got.cpu(), mixer, f"kernel {what}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_conv1d_reads_a_slice_of_a_projection(dtype: torch.dtype) -> None:
    """x as a Mamba2 mixer hands it over: the xBC columns of the in_proj output (rows wider than c)."""
    projection = randn(2, 41, 230, dtype=dtype)
    x = projection[:, :, 64:164]
    assert x.stride() == (41 * 230, 230, 1)
    weight, bias = randn(100, 4, dtype=dtype, scale=0.5), randn(100, dtype=dtype)
    check_conv(x, weight, bias, True, f"strided x {dtype}")
    # A non-contiguous weight (a column-major [c, k]) and a time-major x (copied before the kernel).
    check_conv(x, weight.t().contiguous().t(), bias, True, f"column-major weight {dtype}")
    time_major = randn(41, 2, 100, dtype=dtype).transpose(0, 1)
    check_conv(time_major, weight, bias, False, f"time-major x {dtype}")
    channel_major = randn(2, 100, 41, dtype=dtype).transpose(1, 2)  # last dim not contiguous
    check_conv(channel_major, weight, None, True, f"channel-major x {dtype}")


def test_causal_conv1d_nemotron_h_8b_width() -> None:
    """Nemotron-H-8B's conv: 8192 + 2 * 8 * 128 = 10240 channels, k = 4 (a few steps; in 256-channel tiles, so
    the interpreter runs 40 programs rather than 320)."""
    x = randn(1, 5, 10240, dtype=TILE_DTYPE)
    with gpu_tile_config(kernels.causal_conv1d, kernels.causal_conv1d.GPU_CONFIGS[2]):
        check_conv(x, randn(10240, 4, dtype=TILE_DTYPE, scale=0.5), randn(10240, dtype=TILE_DTYPE), True,
                   "c=10240")


def test_causal_conv1d_is_causal() -> None:
    """Changing step t changes no output before t."""
    x, weight, bias = randn(1, 30, 20), randn(20, 4), randn(20)
    before = causal_conv1d(x, weight, bias)
    changed = x.clone()
    changed[:, 17] += 5.0
    after = causal_conv1d(changed, weight, bias)
    assert torch.equal(before[:, :17], after[:, :17])
    assert not torch.equal(before[:, 17:21], after[:, 17:21])
    assert torch.equal(before[:, 21:], after[:, 21:])  # k = 4: step 17 reaches outputs 17..20 only


def test_reference_is_differentiable() -> None:
    x = randn(2, 9, 6).requires_grad_()
    weight, bias = randn(6, 4).requires_grad_(), randn(6).requires_grad_()
    causal_conv1d_reference(x, weight, bias).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (x, weight, bias))


def test_causal_conv1d_empty_and_bad_arguments() -> None:
    weight = randn(8, 4)
    assert causal_conv1d(randn(0, 5, 8), weight, None).shape == (0, 5, 8)
    assert causal_conv1d(randn(2, 0, 8), weight, None).shape == (2, 0, 8)
    with pytest.raises(ValueError, match=r"x must be \[b, l, c\]"):
        causal_conv1d(randn(5, 8), weight, None)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d(randn(1, 5, 8), randn(7, 4), None)
    with pytest.raises(ValueError, match="kernel size 9"):
        causal_conv1d(randn(1, 5, 8), randn(8, 9), None)
    with pytest.raises(ValueError, match="bias must be"):
        causal_conv1d(randn(1, 5, 8), weight, randn(4))
    with pytest.raises(ValueError, match="out must be"):
        causal_conv1d(randn(1, 5, 8), weight, None, out=poisoned((1, 8, 5), torch.float32).transpose(1, 2))


@pytest.mark.parametrize("config", kernels.causal_conv1d.GPU_CONFIGS, ids=str)
def test_each_gpu_config_matches_reference(config: object) -> None:
    with gpu_tile_config(kernels.causal_conv1d, config):
        projection = randn(2, 70, 400, dtype=TILE_DTYPE)
        x = projection[:, :, 30:330]  # ragged in time and channels for every config, strided rows
        check_conv(x, randn(300, 4, dtype=TILE_DTYPE, scale=0.5), randn(300, dtype=TILE_DTYPE), True,
                   f"config {config}")


def test_autotuned_causal_conv1d_matches_reference() -> None:
    """The public entry point as callers use it: autotuned among GPU_CONFIGS (bf16 on a GPU, Nemotron-H-8B's
    width over 1000 steps); under the interpreter its one config in fp32 on a small shape."""
    dtype, shape = (torch.bfloat16, (2, 1000, 10240)) if ON_GPU else (TILE_DTYPE, (1, 40, 100))
    with only_configs(kernels.causal_conv1d.autotuner, kernels.causal_conv1d.GPU_CONFIGS):
        x = randn(*shape, dtype=dtype)
        check_conv(x, randn(shape[-1], 4, dtype=dtype, scale=0.5), randn(shape[-1], dtype=dtype), True, "autotuned")
