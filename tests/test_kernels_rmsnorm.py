"""The RMSNorm kernels (plain, add + norm, gated grouped) against their PyTorch references, and the references
against transformers' NemotronHRMSNorm and NemotronHRMSNormGated.

Without a GPU the kernels run in Triton's interpreter (fp32); on a GPU also in bf16/fp16 with the looser
tolerances documented in tests/helpers/kernel_checks.py.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers.kernel_checks import DEVICE, DTYPES, ON_GPU, assert_matches, poisoned, randn  # before kernels

from kernels.rmsnorm import (MAX_CHANNELS, add_rmsnorm, add_rmsnorm_reference, gated_rmsnorm,  # noqa: E402
                             gated_rmsnorm_reference, rmsnorm, rmsnorm_reference)

SHAPES = [
    (2, 3, 4096),   # Nemotron-H-8B's hidden size
    (5, 300),       # not a power of two
    (3, 1000),
    (1, 8192),
    (1, MAX_CHANNELS),
    (4, 1),
    (1, 2, 2, 48),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rmsnorm_matches_reference(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    channels = shape[-1]
    x = randn(*shape, dtype=dtype) + 1.0
    weight = randn(channels, dtype=dtype)
    ref = rmsnorm_reference(x.float(), weight.float(), 1e-5)
    out = poisoned(shape, dtype)
    rmsnorm(x, weight, 1e-5, out=out)
    assert_matches(out, ref, f"rmsnorm {shape} {dtype}")
    allocated = rmsnorm(x, weight, 1e-5)
    assert allocated.dtype == dtype and allocated.shape == x.shape
    assert_matches(allocated, ref, f"rmsnorm {shape} {dtype} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_rmsnorm_matches_reference(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    channels = shape[-1]
    x, residual = randn(*shape, dtype=dtype), randn(*shape, dtype=dtype, scale=3.0)
    weight = randn(channels, dtype=dtype)
    ref_out, ref_summed = add_rmsnorm_reference(x.float(), residual.float(), weight.float(), 1e-6)
    out, summed = poisoned(shape, dtype), poisoned(shape, dtype)
    got_out, got_summed = add_rmsnorm(x, residual, weight, 1e-6, out=out, summed_out=summed)
    assert got_out is out and got_summed is summed
    assert_matches(out, ref_out, f"add_rmsnorm out {shape} {dtype}")
    assert_matches(summed, ref_summed, f"add_rmsnorm summed {shape} {dtype}")
    allocated_out, allocated_summed = add_rmsnorm(x, residual, weight, 1e-6)
    assert allocated_out.dtype == dtype and allocated_summed.dtype == dtype
    assert_matches(allocated_out, ref_out, f"add_rmsnorm out {shape} {dtype} (allocated)")
    assert_matches(allocated_summed, ref_summed, f"add_rmsnorm summed {shape} {dtype} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rmsnorm_float32_stream_in_place(dtype: torch.dtype) -> None:
    """A float32 residual stream updated in place (summed_out=residual), the norm in x's dtype."""
    x, residual, weight = randn(6, 4096, dtype=dtype), randn(6, 4096), randn(4096)
    ref_out, ref_summed = add_rmsnorm_reference(x.float(), residual, weight, 1e-5)
    out, summed = add_rmsnorm(x, residual, weight, 1e-5, summed_out=residual)
    assert summed is residual and summed.dtype == torch.float32 and out.dtype == dtype
    assert_matches(out, ref_out, f"out {dtype}")
    assert_matches(residual, ref_summed, f"stream {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "group_size"), [
    ((2, 3, 8192), 1024),   # Nemotron-H-8B's mixer norm: 8192 channels in 8 groups
    ((5, 96), 48),          # groups not a power of two
    ((4, 64), 64),          # one group: a plain gated norm
    ((3, 300), 100),
    ((3, 12), 1),           # groups of one channel: sign(h) * |h| / sqrt(h^2 + eps)
])
def test_gated_rmsnorm_matches_reference(dtype: torch.dtype, shape: tuple[int, ...], group_size: int) -> None:
    channels = shape[-1]
    x, gate, weight = randn(*shape, dtype=dtype), randn(*shape, dtype=dtype, scale=2.0), randn(channels, dtype=dtype)
    ref = gated_rmsnorm_reference(x.float(), gate.float(), weight.float(), group_size, 1e-5)
    out = poisoned(shape, dtype)
    gated_rmsnorm(x, gate, weight, group_size, 1e-5, out=out)
    assert_matches(out, ref, f"gated_rmsnorm {shape}/{group_size} {dtype}")
    allocated = gated_rmsnorm(x, gate, weight, group_size, 1e-5)
    assert allocated.dtype == dtype and allocated.shape == x.shape
    assert_matches(allocated, ref, f"gated_rmsnorm {shape}/{group_size} {dtype} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_rows_as_a_mixer_hands_them_over(dtype: torch.dtype) -> None:
    """gate z and x as column slices of one wide projection (rows wider than C), and a transposed residual."""
    projection = randn(2, 9, 700, dtype=dtype)
    gate, x = projection[..., :256], projection[..., 300:556]
    weight = randn(256, dtype=dtype)
    assert gate.stride(1) == 700
    assert_matches(gated_rmsnorm(x, gate, weight, 64, 1e-5),
                   gated_rmsnorm_reference(x.float(), gate.float(), weight.float(), 64, 1e-5), f"gated {dtype}")
    assert_matches(rmsnorm(x, weight, 1e-5), rmsnorm_reference(x.float(), weight.float(), 1e-5), f"plain {dtype}")
    residual = randn(9, 2, 256, dtype=dtype).transpose(0, 1)  # not viewable as rows: copied
    out, summed = add_rmsnorm(x, residual, weight, 1e-5)
    ref_out, ref_summed = add_rmsnorm_reference(x.float(), residual.float(), weight.float(), 1e-5)
    assert_matches(out, ref_out, f"add out {dtype}")
    assert_matches(summed, ref_summed, f"add summed {dtype}")


def test_gated_rmsnorm_without_gate_and_mixed_weight_dtype() -> None:
    """gate None normalises x itself (grouped); a float32 weight with x in the test dtype."""
    x, weight = randn(3, 120), randn(120)
    assert_matches(gated_rmsnorm(x, None, weight, 40, 1e-5), gated_rmsnorm_reference(x, None, weight, 40, 1e-5),
                   "no gate")
    assert_matches(gated_rmsnorm(x, None, weight, 120, 1e-5), rmsnorm_reference(x, weight, 1e-5),
                   "one group, no gate = rmsnorm")


def test_references_match_transformers_nemotron_h() -> None:
    """Our references (and kernels) against transformers' own modules, fp32 on CPU."""
    from transformers.models.nemotron_h import modeling_nemotron_h as modeling  # a dev dependency

    x, gate, weight = torch.randn(2, 7, 96), torch.randn(2, 7, 96), torch.randn(96)
    plain = modeling.NemotronHRMSNorm(96, eps=1e-5)
    gated = modeling.NemotronHRMSNormGated(96, group_size=32, eps=1e-5)
    with torch.no_grad():
        plain.weight.copy_(weight)
        gated.weight.copy_(weight)
        expected_plain, expected_gated = plain(x), gated(x, gate)
    assert_matches(rmsnorm_reference(x, weight, 1e-5), expected_plain, "NemotronHRMSNorm")
    assert_matches(gated_rmsnorm_reference(x, gate, weight, 32, 1e-5), expected_gated, "NemotronHRMSNormGated")
    on_device = [t.to(DEVICE) for t in (x, gate, weight)]
    assert_matches(rmsnorm(on_device[0], on_device[2], 1e-5).cpu(), expected_plain, "kernel vs NemotronHRMSNorm")
    assert_matches(gated_rmsnorm(*on_device, 32, 1e-5).cpu(), expected_gated, "kernel vs NemotronHRMSNormGated")


def test_references_are_differentiable() -> None:
    x, residual, gate = (randn(3, 32).requires_grad_() for _ in range(3))
    weight = randn(32).requires_grad_()
    out, summed = add_rmsnorm_reference(x, residual, weight, 1e-5)
    (out.sum() + summed.sum() + gated_rmsnorm_reference(x, gate, weight, 8, 1e-5).sum()).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (x, residual, gate, weight))


def test_empty_rows_and_bad_arguments() -> None:
    weight = randn(16)
    assert rmsnorm(randn(0, 16), weight, 1e-5).shape == (0, 16)
    out, summed = add_rmsnorm(randn(0, 16), randn(0, 16), weight, 1e-5)
    assert out.shape == summed.shape == (0, 16)
    assert gated_rmsnorm(randn(2, 0, 16), randn(2, 0, 16), weight, 4, 1e-5).shape == (2, 0, 16)
    with pytest.raises(ValueError, match="weight must be"):
        rmsnorm(randn(2, 16), randn(8), 1e-5)
    with pytest.raises(ValueError, match="residual shape"):
        add_rmsnorm(randn(2, 16), randn(2, 8), weight, 1e-5)
    with pytest.raises(ValueError, match="gate shape"):
        gated_rmsnorm(randn(2, 16), randn(3, 16), weight, 4, 1e-5)
    with pytest.raises(ValueError, match="group size 5 must divide the last dim 16"):
        gated_rmsnorm(randn(2, 16), None, weight, 5, 1e-5)
    with pytest.raises(ValueError, match=f"1..{MAX_CHANNELS}"):
        rmsnorm(randn(1, MAX_CHANNELS + 2), randn(MAX_CHANNELS + 2), 1e-5)
    with pytest.raises(ValueError, match="summed_out must be"):
        add_rmsnorm(randn(2, 16), randn(2, 16), weight, 1e-5, summed_out=randn(2, 16, dtype=torch.float64))
    if ON_GPU:
        with pytest.raises(ValueError, match="compiled Triton kernels need CUDA tensors"):
            rmsnorm(torch.randn(2, 16), torch.randn(16), 1e-5)
