"""The Mamba2 SSD scan: the Triton kernels and the chunked PyTorch reference against the step-by-step recurrence.

Without a GPU the kernels run in Triton's interpreter (fp32, 16-wide tiles, so chunks of 16 to 64 steps walk
several tiles). On a GPU they run compiled in fp32 (fixed small tiles), bf16 and fp16 (the first H100 tile
config of each kernel; every config and the autotuners are checked by their own tests), with the looser
tolerances of tests/helpers/kernel_checks.py against the fp32 reference on the same rounded inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch

from tests.helpers.kernel_checks import (DEVICE, DTYPES, ON_GPU, TILE_DTYPE, assert_matches,  # before kernels
                                         gpu_tile_config, only_configs, randn)

import kernels.ssd  # noqa: E402
from kernels.ssd import ssd_recurrence_reference, ssd_scan, ssd_scan_reference  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_gpu_config")


@pytest.fixture
def single_gpu_config() -> Iterator[None]:
    """On a GPU, the tests run the first config of each kernel untuned; the config tests cover the others."""
    with only_configs(kernels.ssd.autotuner, kernels.ssd.GPU_CONFIGS[:1]), \
            only_configs(kernels.ssd.state_autotuner, kernels.ssd.GPU_STATE_CONFIGS[:1]):
        yield


@dataclass
class ScanInputs:
    """One call's arguments: x, dt, B, C as strided views of one fused projection, as a Mamba2 mixer has them."""

    x: torch.Tensor
    dt: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None
    dt_bias: torch.Tensor | None

    def args(self) -> tuple:
        return self.x, self.dt, self.A, self.B, self.C, self.D

    def fp32(self) -> ScanInputs:
        """The same (rounded) values in fp32, for the references."""
        return ScanInputs(*(t.float() if t is not None else None for t in (self.x, self.dt, self.A, self.B,
                                                                           self.C, self.D, self.dt_bias)))


def scan_inputs(batch: int, length: int, heads: int, head_dim: int, groups: int, state: int, dtype: torch.dtype,
                with_bias: bool = True, with_d: bool = True) -> ScanInputs:
    """Fresh inputs in realistic ranges: dt around softplus(-1) (+ a bias), A = -exp(U[0, 2]) (some heads
    forget within a few steps), B and C of O(1 / sqrt(n)) so outputs stay O(1)."""
    width = heads * head_dim + 2 * groups * state + heads
    fused = randn(batch, length, width, dtype=dtype)
    x = fused[..., :heads * head_dim].unflatten(-1, (heads, head_dim))
    bc_end = heads * head_dim + 2 * groups * state
    B = fused[..., heads * head_dim:heads * head_dim + groups * state].unflatten(-1, (groups, state))
    C = fused[..., heads * head_dim + groups * state:bc_end].unflatten(-1, (groups, state))
    B.mul_(state ** -0.5)
    C.mul_(state ** -0.5)
    dt = fused[..., bc_end:]
    dt.sub_(1.0)
    A = -torch.exp(torch.rand(heads) * 2.0).to(DEVICE)
    D = randn(heads) if with_d else None
    dt_bias = randn(heads, scale=0.5) if with_bias else None
    return ScanInputs(x, dt, A, B, C, D, dt_bias)


def check_scan(inputs: ScanInputs, chunk_size: int, what: str, **dt_options: object) -> None:
    """The kernel against the chunked reference, both against the recurrence (fp32, same rounded inputs)."""
    ref_inputs = inputs.fp32()
    truth = ssd_recurrence_reference(*ref_inputs.args(), chunk_size, dt_bias=ref_inputs.dt_bias, **dt_options)
    chunked = ssd_scan_reference(*ref_inputs.args(), chunk_size, dt_bias=ref_inputs.dt_bias, **dt_options)
    assert_matches(chunked, truth, f"{what}: chunked reference vs recurrence")
    out = ssd_scan(*inputs.args(), chunk_size, dt_bias=inputs.dt_bias, **dt_options)
    assert out.dtype == inputs.x.dtype and out.is_contiguous()
    assert_matches(out, chunked, f"{what}: ssd_scan vs chunked reference")
    assert_matches(out, truth, f"{what}: ssd_scan vs recurrence")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "length", "heads", "groups", "with_bias"), [
    (2, 40, 4, 2, True),   # two full chunks and a ragged one, g = h / 2
    (1, 17, 4, 1, False),  # one full chunk and one step, g = 1
    (3, 1, 2, 1, True),    # a single step
    (1, 32, 2, 2, True),   # whole chunks only, g = h
])
def test_ssd_scan_matches_references(dtype: torch.dtype, batch: int, length: int, heads: int, groups: int,
                                     with_bias: bool) -> None:
    inputs = scan_inputs(batch, length, heads, 16, groups, 16, dtype, with_bias=with_bias)
    check_scan(inputs, 16, f"b={batch} l={length} h={heads} g={groups} bias={with_bias} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("head_dim", "state", "chunk_size", "length"), [
    (32, 32, 32, 70),    # several p and n tiles of 16
    (24, 20, 16, 37),    # neither p nor n a power of two: masked tiles
    (64, 128, 64, 50),   # Nemotron-H's p and n, l < chunk
    (16, 16, 256, 270),  # the larger chunk some models use
])
def test_ssd_scan_sizes(dtype: torch.dtype, head_dim: int, state: int, chunk_size: int, length: int) -> None:
    inputs = scan_inputs(1, length, 2, head_dim, 1, state, dtype)
    check_scan(inputs, chunk_size, f"p={head_dim} n={state} chunk={chunk_size} l={length} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ssd_scan_dt_options(dtype: torch.dtype) -> None:
    """Without D (and softplus's linear branch above 20), with both clamps binding, without softplus (dt taken
    as given, made positive here)."""
    inputs = scan_inputs(2, 23, 4, 16, 2, 16, dtype, with_d=False)
    inputs.dt[:, ::5, 1] = 30.0  # softplus(x) = x above 20: head 1 forgets everything at these steps
    check_scan(inputs, 16, f"no D, large dt {dtype}")
    check_scan(inputs, 16, f"clamped {dtype}", dt_min=0.3, dt_max=0.6)
    inputs.dt.abs_()
    check_scan(inputs, 16, f"no softplus {dtype}", dt_softplus=False)
    check_scan(inputs, 16, f"no softplus, dt_max {dtype}", dt_softplus=False, dt_max=0.5)


def test_ssd_scan_keeps_precision_under_large_cumulative_decays() -> None:
    """Chunks whose dt A sums to hundreds: decays between nearby steps stay exact (plain fp32 cumulative sums
    put this case's error near 1e-3)."""
    inputs = scan_inputs(2, 64, 4, 16, 2, 16, TILE_DTYPE)
    inputs.dt[:, ::5, :] = 30.0
    inputs.A.mul_(3.0)
    check_scan(inputs, 64, f"large decays {TILE_DTYPE}")


def test_ssd_scan_reads_strided_views_in_place() -> None:
    """x, dt, B, C as the mixer slices them (row stride = the fused width): same result as contiguous copies."""
    inputs = scan_inputs(2, 21, 4, 16, 2, 16, TILE_DTYPE)
    assert not inputs.x.is_contiguous() and inputs.x.stride(-1) == 1
    strided = ssd_scan(*inputs.args(), 16, dt_bias=inputs.dt_bias)
    copies = ssd_scan(inputs.x.contiguous(), inputs.dt.contiguous(), inputs.A, inputs.B.contiguous(),
                      inputs.C.contiguous(), inputs.D, 16, dt_bias=inputs.dt_bias)
    assert torch.equal(strided, copies)


def test_chunked_reference_matches_recurrence_on_long_sequences() -> None:
    """A long-ish sequence (many chunks of state passing), with large cumulative decays, in fp32 on CPU."""
    torch.manual_seed(3)
    for length, chunk_size in [(600, 16), (777, 64), (300, 256)]:
        inputs = scan_inputs(2, length, 4, 8, 2, 8, torch.float32).fp32()
        inputs = ScanInputs(*(t.cpu() if t is not None else None for t in vars(inputs).values()))
        truth = ssd_recurrence_reference(*inputs.args(), chunk_size, dt_bias=inputs.dt_bias)
        chunked = ssd_scan_reference(*inputs.args(), chunk_size, dt_bias=inputs.dt_bias)
        assert torch.isfinite(truth).all()
        diff = (chunked - truth).abs().max().item()
        assert diff <= 1e-4, f"l={length} chunk={chunk_size}: max abs diff {diff:.3g}"


def test_kernel_on_a_longer_sequence() -> None:
    """Many chunks through the fused state passing, against the recurrence."""
    inputs = scan_inputs(1, 200, 2, 16, 1, 16, TILE_DTYPE)
    check_scan(inputs, 16, f"l=200 chunk=16 {TILE_DTYPE}")


def test_chunked_reference_gradients_match_recurrence() -> None:
    """The training path differentiates the chunked reference: its gradients are the recurrence's."""
    torch.manual_seed(4)
    leaves = [t.cpu().requires_grad_(True) for t in vars(scan_inputs(2, 37, 4, 8, 2, 8, torch.float32).fp32())
              .values()]
    weights = torch.randn(2, 37, 4, 8)

    def grads(fn: object) -> list[torch.Tensor]:
        for leaf in leaves:
            leaf.grad = None
        x, dt, A, B, C, D, dt_bias = leaves
        (fn(x, dt, A, B, C, D, 16, dt_bias=dt_bias) * weights).sum().backward()  # type: ignore[operator]
        return [leaf.grad.clone() for leaf in leaves]

    chunked, truth = grads(ssd_scan_reference), grads(ssd_recurrence_reference)
    for name, got, want in zip(("x", "dt", "A", "B", "C", "D", "dt_bias"), chunked, truth):
        scale = max(1.0, want.abs().max().item())
        assert (got - want).abs().max().item() <= 1e-4 * scale, f"gradient of {name}"


def test_empty_sequence() -> None:
    inputs = scan_inputs(2, 0, 2, 16, 1, 16, TILE_DTYPE)
    for fn in (ssd_scan, ssd_scan_reference, ssd_recurrence_reference):
        assert fn(*inputs.args(), 16, dt_bias=inputs.dt_bias).shape == (2, 0, 2, 16)


def test_ssd_scan_rejects_bad_arguments() -> None:
    good = scan_inputs(1, 8, 4, 16, 2, 16, TILE_DTYPE)
    x, dt, A, B, C, D = good.args()
    with pytest.raises(ValueError, match="ssd_scan: chunk_size must be a power of two >= 16"):
        ssd_scan(x, dt, A, B, C, D, 24)
    with pytest.raises(ValueError, match="ssd_scan_reference: chunk_size"):
        ssd_scan_reference(x, dt, A, B, C, D, 8)
    with pytest.raises(ValueError, match="ssd_scan: heads 4 not a multiple of groups 3"):
        ssd_scan(x, dt, A, randn(1, 8, 3, 16, dtype=x.dtype), randn(1, 8, 3, 16, dtype=x.dtype), D, 16)
    with pytest.raises(ValueError, match="ssd_scan: state size 512 not supported"):
        ssd_scan(x, dt, A, randn(1, 8, 2, 512, dtype=x.dtype), randn(1, 8, 2, 512, dtype=x.dtype), D, 16)
    with pytest.raises(ValueError, match="ssd_scan: dt must be"):
        ssd_scan(x, dt[:, :4], A, B, C, D, 16)
    with pytest.raises(ValueError, match="ssd_recurrence_reference: A must be"):
        ssd_recurrence_reference(x, dt, A[:3], B, C, D, 16)
    with pytest.raises(ValueError, match="ssd_scan: inputs on different devices"):
        ssd_scan(x, dt, A, B, C, torch.zeros(4, device="meta"), 16)


@contextmanager
def state_tile_config(config: object) -> Iterator[None]:
    """The chunk-state kernel's counterpart of ``gpu_tile_config``: narrowed on a GPU, its block sizes put in
    place of the interpreter's own under TRITON_INTERPRET."""
    if kernels.ssd.state_autotuner is not None:
        with only_configs(kernels.ssd.state_autotuner, [config]):
            yield
        return
    saved = kernels.ssd._INTERPRETER_STATE_META
    kernels.ssd._INTERPRETER_STATE_META = {**saved, **config.kwargs}  # type: ignore[attr-defined]
    try:
        yield
    finally:
        kernels.ssd._INTERPRETER_STATE_META = saved


@pytest.mark.parametrize("config", kernels.ssd.GPU_CONFIGS, ids=str)
def test_each_chunk_scan_config_matches_reference(config: object) -> None:
    # The state kernel runs its first GPU config (under the interpreter too: big tiles are fewer programs).
    with gpu_tile_config(kernels.ssd, config), state_tile_config(kernels.ssd.GPU_STATE_CONFIGS[0]):
        check_scan(scan_inputs(1, 150, 2, 64, 1, 32, TILE_DTYPE), 128, f"{config} chunk 128")
        check_scan(scan_inputs(1, 40, 2, 32, 2, 32, TILE_DTYPE), 16, f"{config} chunk 16 (blocks cut)")


@pytest.mark.parametrize("config", kernels.ssd.GPU_STATE_CONFIGS, ids=str)
def test_each_state_config_matches_reference(config: object) -> None:
    with state_tile_config(config), gpu_tile_config(kernels.ssd, kernels.ssd.GPU_CONFIGS[0]):
        check_scan(scan_inputs(1, 100, 2, 64, 1, 128, TILE_DTYPE), 64, f"{config} chunk 64")
        check_scan(scan_inputs(1, 40, 2, 32, 2, 32, TILE_DTYPE), 16, f"{config} chunk 16 (blocks cut)")


def test_autotuned_ssd_scan_matches_reference() -> None:
    """The public entry point as the model calls it: autotuned among all configs in bf16 on a GPU at
    Nemotron-H-8B's head shapes (fewer heads); under the interpreter its one config in fp32 on a small shape."""
    if ON_GPU:
        dtype, inputs, chunk = torch.bfloat16, scan_inputs(2, 1000, 16, 64, 2, 128, torch.bfloat16), 128
    else:
        dtype, inputs, chunk = TILE_DTYPE, scan_inputs(1, 70, 2, 16, 1, 16, TILE_DTYPE), 32
    with only_configs(kernels.ssd.autotuner, kernels.ssd.GPU_CONFIGS), \
            only_configs(kernels.ssd.state_autotuner, kernels.ssd.GPU_STATE_CONFIGS):
        check_scan(inputs, chunk, f"autotuned {dtype}")
