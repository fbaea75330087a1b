"""The fused add + LayerNorm kernel against its PyTorch reference (and torch's own layer_norm).

Without a GPU the kernel runs in Triton's interpreter (fp32); on a GPU also in bf16/fp16 with the looser
tolerances documented in tests/helpers/kernel_checks.py.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers.kernel_checks import DTYPES, assert_matches, poisoned, randn  # before kernels

from kernels.layernorm import add_layernorm, add_layernorm_reference  # noqa: E402


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "with_residual"), [
    ((2, 3, 768), True),      # BERT-base hidden size, not a power of two
    ((5, 300), True),
    ((3, 1000), False),
    ((2, 4096), True),        # the largest supported row
    ((4, 1), True),
    ((1, 2, 2, 48), True),
])
def test_add_layernorm_matches_reference(dtype: torch.dtype, shape: tuple[int, ...], with_residual: bool) -> None:
    channels = shape[-1]
    x = randn(*shape, dtype=dtype) + 3.0  # an offset, so a one-pass variance would lose digits
    residual = randn(*shape, dtype=dtype) if with_residual else None
    weight, bias = randn(channels, dtype=dtype), randn(channels, dtype=dtype)
    out = poisoned(shape, dtype)
    add_layernorm(x, residual, weight, bias, 1e-5, out=out)
    ref = add_layernorm_reference(x.float(), residual.float() if residual is not None else None,
                                  weight.float(), bias.float(), 1e-5)
    assert_matches(out, ref, f"add_layernorm {shape} {dtype}")
    allocated = add_layernorm(x, residual, weight, bias, 1e-5)
    assert allocated.dtype == dtype and allocated.shape == x.shape
    assert_matches(allocated, ref, f"add_layernorm {shape} {dtype} (allocated)")


def test_add_layernorm_strided_rows_and_no_affine() -> None:
    """Rows that are slices of wider rows, and LayerNorm without weight or bias."""
    wide = randn(7, 130)
    x, residual = wide[:, :90], wide[:, 40:]
    assert x.stride(0) == 130
    out = add_layernorm(x, residual, None, None, 1e-6)
    assert_matches(out, add_layernorm_reference(x, residual, None, None, 1e-6), "strided, no affine")
    total = x + residual
    expected = torch.nn.functional.layer_norm(total, (90,), eps=1e-6)
    assert_matches(out, expected, "vs torch layer_norm")


def test_add_layernorm_weight_only_and_empty() -> None:
    x, weight = randn(3, 50), randn(50)
    assert_matches(add_layernorm(x, None, weight, None, 1e-5),
                   add_layernorm_reference(x, None, weight, None, 1e-5), "weight only")
    empty = add_layernorm(randn(0, 50), None, weight, None, 1e-5)
    assert empty.shape == (0, 50)


def test_add_layernorm_rejects_bad_arguments() -> None:
    x = randn(2, 16)
    with pytest.raises(ValueError, match="residual shape"):
        add_layernorm(x, randn(2, 8), None, None, 1e-5)
    with pytest.raises(ValueError, match="weight must be"):
        add_layernorm(x, None, randn(8), None, 1e-5)
    with pytest.raises(ValueError, match="outside 1..4096"):
        add_layernorm(randn(1, 5000), None, None, None, 1e-5)
