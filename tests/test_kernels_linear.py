"""The linear kernel (bias and activation in the epilogue) against its PyTorch reference.

Without a GPU the kernel runs in Triton's interpreter (fp32, 32x32x16 tiles). On a GPU it runs compiled in
fp32 (fixed small tiles), bf16 and fp16 (the first H100 tile config; every config and the autotuner are
checked by their own tests), with the looser tolerances documented in tests/helpers/kernel_checks.py, and
on larger BERT-like shapes as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from tests.helpers.kernel_checks import (DTYPES, ON_GPU, TILE_DTYPE, assert_matches, gpu_tile_config,  # first
                                         only_configs, poisoned, randn)

import kernels.linear  # noqa: E402
from kernels.linear import linear, linear_reference  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_gpu_config")


@pytest.fixture
def single_gpu_config() -> Iterator[None]:
    """On a GPU, the tests run the first config untuned; the config tests below cover the others."""
    with only_configs(kernels.linear.autotuner, kernels.linear.GPU_CONFIGS[:1]):
        yield

SHAPES = [  # (leading dims of x, K, N): none a multiple of the tiles, K both ragged and whole
    ((37,), 50, 70),
    ((2, 19), 48, 33),
    ((1,), 16, 16),
    ((65,), 100, 17),
]
GPU_SHAPES = [((300,), 768, 3072), ((2, 257), 3072, 768), ((129,), 100, 2304)]


def check_linear(lead: tuple[int, ...], k_in: int, n_out: int, activation: str | None, dtype: torch.dtype,
                 with_bias: bool = True) -> None:
    """Fresh inputs; the kernel into a NaN-poisoned buffer and into its own, both against the fp32 reference."""
    x = randn(*lead, k_in, dtype=dtype)
    weight = randn(n_out, k_in, dtype=dtype, scale=1 / math.sqrt(k_in))  # O(1) outputs, so GELU's curve matters
    bias = randn(n_out, dtype=dtype) if with_bias else None
    ref = linear_reference(x.float(), weight.float(), bias.float() if bias is not None else None, activation)
    what = f"linear {lead}x{k_in}->{n_out} {activation} {dtype}"
    out = poisoned((*lead, n_out), dtype)
    linear(x, weight, bias, activation, out=out)
    assert_matches(out, ref, what)
    allocated = linear(x, weight, bias, activation)
    assert allocated.dtype == dtype and allocated.shape == (*lead, n_out)
    assert_matches(allocated, ref, f"{what} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("lead", "k_in", "n_out"), SHAPES + (GPU_SHAPES if ON_GPU else []))
def test_linear_gelu_matches_reference(dtype: torch.dtype, lead: tuple[int, ...], k_in: int, n_out: int) -> None:
    check_linear(lead, k_in, n_out, "gelu", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("activation", "with_bias"), [(None, True), (None, False), ("gelu_tanh", True),
                                                       ("tanh", False), ("relu2", False), ("relu2", True)])
def test_linear_activations_match_reference(dtype: torch.dtype, activation: str | None, with_bias: bool) -> None:
    check_linear((37,), 50, 70, activation, dtype, with_bias)
    check_linear((2, 33), 64, 48, activation, dtype, with_bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_without_bias_on_strided_input(dtype: torch.dtype) -> None:
    wide = randn(23, 90, dtype=dtype)
    x = wide[:, 10:74]  # rows 90 apart
    weight = randn(40, 64, dtype=dtype, scale=0.125)
    ref = linear_reference(x.float(), weight.float())
    assert_matches(linear(x, weight), ref, f"strided x, no bias {dtype}")
    assert_matches(linear(x, weight.t().contiguous().t()), ref, f"column-major weight {dtype}")


def test_linear_gelu_is_torch_gelu() -> None:
    """The epilogue's exact GELU is torch's erf GELU (BERT's hidden_act "gelu"), not the tanh form."""
    x = randn(20, 32, scale=2.0)
    weight = torch.eye(32, device=x.device)
    assert_matches(linear(x, weight, activation="gelu"), torch.nn.functional.gelu(x), "gelu")
    assert_matches(linear(x, weight, activation="gelu_tanh"),
                   torch.nn.functional.gelu(x, approximate="tanh"), "gelu_tanh")
    big = torch.tensor([[-60.0, -3.0, 0.0, 3.0, 60.0] + [0.0] * 11], device=x.device)
    assert_matches(linear(big, torch.eye(16, device=x.device), activation="tanh"), torch.tanh(big), "tanh tails")


def test_linear_relu2_is_nemotron_h_relu_squared() -> None:
    """relu2 is relu(x)^2 (transformers' ReLUSquaredActivation, Nemotron-H's MLP): zero for x <= 0."""
    x = randn(20, 32, scale=2.0)
    x[0, :4] = torch.tensor([-1.0, 0.0, 1.5, 3.0])
    weight = torch.eye(32, device=x.device)
    out = linear(x, weight, activation="relu2")
    assert_matches(out, torch.relu(x) ** 2, "relu2")
    assert out[0, :4].tolist() == [0.0, 0.0, 2.25, 9.0]


def test_linear_rejects_bad_arguments() -> None:
    x, weight = randn(4, 16), randn(8, 16)
    with pytest.raises(ValueError, match="activation 'relu'"):
        linear(x, weight, activation="relu")
    with pytest.raises(ValueError, match="do not match"):
        linear(x, randn(8, 12))
    with pytest.raises(ValueError, match="bias must be"):
        linear(x, weight, randn(7))
    assert linear(randn(0, 16), weight).shape == (0, 8)


@pytest.mark.parametrize("config", kernels.linear.GPU_CONFIGS, ids=str)
@pytest.mark.parametrize("activation", [None, "gelu"] + (["relu2"] if ON_GPU else []))  # relu2 is not pruned
def test_each_gpu_config_matches_reference(config: object, activation: str | None) -> None:
    with gpu_tile_config(kernels.linear, config):
        check_linear((2, 300), 768, 1000, activation, TILE_DTYPE)  # ragged M and N, whole K tiles
        check_linear((129,), 100, 2304, activation, TILE_DTYPE)    # a ragged last K tile


def test_autotuned_linear_matches_reference() -> None:
    """The public entry point as callers use it: autotuned among GPU_CONFIGS in bf16 on a GPU; under the
    interpreter (no autotuner there) its one config in fp32."""
    dtype, lead = (torch.bfloat16, (4, 512)) if ON_GPU else (TILE_DTYPE, (2, 64))  # BERT-base's MLP shapes
    with only_configs(kernels.linear.autotuner, kernels.linear.GPU_CONFIGS):
        check_linear(lead, 768, 3072, "gelu", dtype)
        check_linear(lead, 3072, 768, None, dtype)
