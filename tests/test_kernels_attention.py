"""The attention kernel against its PyTorch reference and against transformers' DeBERTa-v2 attention.

Without a GPU the kernel runs in Triton's interpreter (fp32). On a GPU it runs compiled in fp32 (fixed small
tiles), bf16 and fp16 (the first H100 tile config; every config and the autotuner are checked by their own
tests), with the looser tolerances documented in tests/helpers/kernel_checks.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from tests.helpers.kernel_checks import (ON_GPU, DEVICE, DTYPES, TILE_DTYPE, assert_matches,  # before kernels
                                         gpu_tile_config, only_configs, poisoned, randn)

import kernels.attention  # noqa: E402
from kernels.attention import attention, attention_reference  # noqa: E402
from kernels.relative_position import log_bucket_position, relative_index_tables  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_gpu_config")


@pytest.fixture
def single_gpu_config() -> Iterator[None]:
    """On a GPU, the tests run the first config untuned; the config tests below cover the others."""
    with only_configs(kernels.attention.autotuner, kernels.attention.GPU_CONFIGS[:1]):
        yield


def qkv(batch: int, heads: int, length: int, head_dim: int,
        dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh q, k, v as strided views of one fused [B, L, 3, H, D] projection (as an encoder makes them)."""
    fused = randn(batch, length, 3, heads, head_dim, dtype=dtype)
    return fused[:, :, 0].transpose(1, 2), fused[:, :, 1].transpose(1, 2), fused[:, :, 2].transpose(1, 2)


def as_fp32(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The same values in fp32 (None stays None), for the reference."""
    return [t.float() if t is not None and t.is_floating_point() else t for t in tensors]


def check_output(out: torch.Tensor, ref: torch.Tensor, lengths: list[int], what: str) -> None:
    """Rows within each length match the reference; padded rows are exactly zero; nothing left unwritten."""
    assert not torch.isnan(out).any(), f"{what}: {int(torch.isnan(out).sum())} elements unwritten (NaN)"
    for b, n in enumerate(lengths):
        n = max(0, min(n, out.shape[2]))
        assert_matches(out[b, :, :n], ref[b, :, :n], f"{what} batch row {b}")
        assert (out[b, :, n:] == 0).all(), f"{what}: padded query rows of batch row {b} are not zero"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("head_dim", "length", "lengths"), [
    (16, 37, [1, 7, 37]),         # heavy padding, odd length
    (32, 37, [37, 20, 33, 2]),    # mixed lengths
    (64, 24, [24, 17]),
    (128, 19, [5, 19]),
])
def test_attention_matches_reference_with_padding(dtype: torch.dtype, head_dim: int, length: int,
                                                  lengths: list[int]) -> None:
    heads = 2
    q, k, v = qkv(len(lengths), heads, length, head_dim, dtype)
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    scale = 1 / math.sqrt(head_dim)
    ref = attention_reference(*as_fp32(q, k, v), lens, scale)

    out = poisoned((len(lengths), length, heads, head_dim), dtype).transpose(1, 2)  # strided output
    attention(q, k, v, lens, scale, out=out)
    check_output(out, ref, lengths, f"D={head_dim} L={length} {dtype}")

    allocated = attention(q, k, v, lens, scale)
    assert allocated.dtype == dtype and allocated.shape == q.shape
    check_output(allocated, ref, lengths, f"D={head_dim} L={length} {dtype} (allocated)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("terms", ["c2p", "p2c", "c2p+p2c"])
@pytest.mark.parametrize(("head_dim", "length", "lengths", "span"), [
    (16, 37, [37, 3, 18], 8),
    (32, 33, [1, 33], 20),
])
def test_attention_relative_terms_match_reference(dtype: torch.dtype, terms: str, head_dim: int, length: int,
                                                  lengths: list[int], span: int) -> None:
    heads, batch, positions = 2, len(lengths), 2 * span
    q, k, v = qkv(batch, heads, length, head_dim, dtype)
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    c2p = randn(batch, heads, length, positions, dtype=dtype) if "c2p" in terms else None
    p2c = randn(batch, heads, length, positions, dtype=dtype) if "p2c" in terms else None
    # Fresh random tables (any entry in [0, P) is legal), so every (i - j) diagonal reads its own entry.
    c2p_index = torch.randint(0, positions, (2 * length - 1,), dtype=torch.int32).to(DEVICE) if c2p is not None \
        else None
    p2c_index = torch.randint(0, positions, (2 * length - 1,), dtype=torch.int32).to(DEVICE) if p2c is not None \
        else None
    scale = 1 / math.sqrt(head_dim * 3)
    ref = attention_reference(*as_fp32(q, k, v), lens, scale, *as_fp32(c2p, p2c), c2p_index, p2c_index)
    out = poisoned(tuple(q.shape), dtype)
    attention(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index, out=out)
    check_output(out, ref, lengths, f"{terms} D={head_dim} {dtype}")


def test_attention_with_deberta_tables_and_nan_padding() -> None:
    """Padding content (here NaN in q, k, v, c2p, p2c past each length) never reaches the output."""
    batch, heads, length, head_dim, span = 3, 2, 41, 32, 16
    lengths = [41, 9, 26]
    q, k, v = qkv(batch, heads, length, head_dim, torch.float32)
    c2p = randn(batch, heads, length, 2 * span)
    p2c = randn(batch, heads, length, 2 * span)
    c2p_index, p2c_index = (t.to(DEVICE) for t in relative_index_tables(length, span, 64, span))
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    scale = 1 / math.sqrt(head_dim * 3)
    ref = attention_reference(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index)
    for b, n in enumerate(lengths):
        for t in (q, k, v, c2p, p2c):
            t[b, :, n:] = float("nan")
    out = attention(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index)
    check_output(out, ref, lengths, "NaN padding")


def test_attention_zero_and_overlong_lengths() -> None:
    """A length of 0 gives an all-zero row; a length past L counts as L."""
    q, k, v = qkv(2, 1, 20, 16, torch.float32)
    out = attention(q, k, v, torch.tensor([0, 25], dtype=torch.int32, device=DEVICE), 0.25)
    assert (out[0] == 0).all()
    full = attention_reference(q, k, v, torch.tensor([0, 20], device=DEVICE), 0.25)
    assert_matches(out[1], full[1], "overlong length")


def test_attention_rejects_bad_arguments() -> None:
    q, k, v = qkv(2, 2, 8, 16, torch.float32)
    lens = torch.tensor([8, 8], dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="head dim 24"):
        attention(*qkv(2, 2, 8, 24, torch.float32), lens, 1.0)
    with pytest.raises(ValueError, match="c2p and c2p_index"):
        attention(q, k, v, lens, 1.0, c2p=randn(2, 2, 8, 4))
    with pytest.raises(ValueError, match="2L - 1 = 15"):
        attention(q, k, v, lens, 1.0, c2p=randn(2, 2, 8, 4), c2p_index=torch.zeros(8, dtype=torch.int32))
    with pytest.raises(ValueError, match="lengths must be"):
        attention(q, k, v, lens[:1], 1.0)


def test_relative_index_tables_shape_and_range() -> None:
    length, span = 300, 64
    c2p_index, p2c_index = relative_index_tables(length, 128, 512, span)
    assert c2p_index.dtype == torch.int32 and c2p_index.shape == (2 * length - 1,)
    assert int(c2p_index.min()) >= 0 and int(c2p_index.max()) <= 2 * span - 1
    centre = length - 1  # i == j
    assert int(c2p_index[centre]) == span and int(c2p_index[centre + 5]) == span + 5  # short distances as is
    assert torch.equal(c2p_index, p2c_index)  # log buckets are odd in the distance
    raw_c2p, _ = relative_index_tables(10, -1, -1, 4)  # no buckets: clamp(i - j + span)
    assert raw_c2p.tolist() == [max(0, min(7, d + 4)) for d in range(-9, 10)]


@pytest.mark.parametrize(("bucket_size", "max_position"), [(256, 512), (8, 32), (32, 100)])
def test_log_bucket_position_is_transformers(bucket_size: int, max_position: int) -> None:
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    distances = torch.arange(-1100, 1100)
    assert torch.equal(log_bucket_position(distances, bucket_size, max_position),
                       make_log_bucket_position(distances, bucket_size, max_position))


@pytest.mark.parametrize(("pos_att_type", "share_att_key", "position_buckets", "max_relative_positions"), [
    (["p2c", "c2p"], True, 8, 32),     # the deberta-v3 form (shared keys, log buckets)
    (["c2p", "p2c"], False, 8, 32),    # separate pos_key_proj / pos_query_proj
    (["c2p"], False, -1, 16),          # no buckets, distances past the span clamped
    (["p2c"], True, 16, 40),
])
def test_attention_matches_transformers_disentangled_attention(
        pos_att_type: list[str], share_att_key: bool, position_buckets: int, max_relative_positions: int) -> None:
    from transformers import DebertaV2Config
    from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention

    hidden, heads, length, lengths = 32, 2, 37, [37, 12, 1, 30]
    batch, head_dim = len(lengths), hidden // heads
    config = DebertaV2Config(hidden_size=hidden, num_attention_heads=heads, intermediate_size=64,
                             num_hidden_layers=1, max_position_embeddings=64, relative_attention=True,
                             position_buckets=position_buckets, max_relative_positions=max_relative_positions,
                             pos_att_type=pos_att_type, share_att_key=share_att_key, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)
    module = DisentangledSelfAttention(config).eval().to(DEVICE)
    span = position_buckets if position_buckets > 0 else max_relative_positions
    hidden_states = randn(batch, length, hidden)
    rel_embeddings = randn(2 * span, hidden)
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    valid = torch.arange(length, device=DEVICE)[None, :] < lens[:, None]
    mask = (valid[:, None, None, :] & valid[:, None, :, None]).to(torch.int64)  # as DebertaV2Encoder builds it
    with torch.no_grad():
        expected, _ = module(hidden_states, mask, rel_embeddings=rel_embeddings)

        def heads_of(x: torch.Tensor) -> torch.Tensor:
            return x.view(*x.shape[:-1], heads, head_dim).transpose(-3, -2)

        q = heads_of(module.query_proj(hidden_states))
        k = heads_of(module.key_proj(hidden_states))
        v = heads_of(module.value_proj(hidden_states))
        c2p = p2c = c2p_index = p2c_index = None
        tables = [t.to(DEVICE) for t in relative_index_tables(length, position_buckets, max_relative_positions, span)]
        if "c2p" in pos_att_type:
            pos_key = heads_of((module.key_proj if share_att_key else module.pos_key_proj)(rel_embeddings))
            c2p, c2p_index = q @ pos_key.transpose(-1, -2), tables[0]
        if "p2c" in pos_att_type:
            pos_query = heads_of((module.query_proj if share_att_key else module.pos_query_proj)(rel_embeddings))
            p2c, p2c_index = k @ pos_query.transpose(-1, -2), tables[1]
        scale = 1 / math.sqrt(head_dim * (1 + len(pos_att_type)))
        ours = attention(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index)
        reference = attention_reference(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index)
    for name, result in (("kernel", ours), ("reference", reference)):
        merged = result.transpose(1, 2).reshape(batch, length, hidden)
        for b, n in enumerate(lengths):  # transformers' padded query rows are not meaningful
            diff = (merged[b, :n] - expected[b, :n]).abs().max().item()
            assert diff <= 1e-5, f"{name} vs transformers, {pos_att_type}, batch row {b}: max abs diff {diff:.3g}"


def deberta_case(dtype: torch.dtype) -> tuple[list[torch.Tensor | None], list[int]]:
    """A fresh padded batch with both relative terms and real DeBERTa tables (L = 200, D = 64)."""
    lengths, heads, length, head_dim, span = [200, 57, 1, 130], 2, 200, 64, 64
    q, k, v = qkv(len(lengths), heads, length, head_dim, dtype)
    c2p, p2c = (randn(len(lengths), heads, length, 2 * span, dtype=dtype) for _ in range(2))
    c2p_index, p2c_index = (t.to(DEVICE) for t in relative_index_tables(length, span, 512, span))
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    return [q, k, v, lens, c2p, p2c, c2p_index, p2c_index], lengths


# Each config the autotuner may launch: all of them without relative terms, the unpruned ones with them (a test
# that forces a pruned config would check a kernel no caller ever runs).
LAUNCHABLE = [(c, False) for c in kernels.attention.GPU_CONFIGS] + [
    (c, True) for c in kernels.attention.prune_gpu_configs(kernels.attention.GPU_CONFIGS, {}, HAS_C2P=True,
                                                           HAS_P2C=True)]


@pytest.mark.parametrize(("config", "relative"), LAUNCHABLE, ids=str)
def test_each_gpu_config_matches_reference(config: object, relative: bool) -> None:
    (q, k, v, lens, c2p, p2c, c2p_index, p2c_index), lengths = deberta_case(TILE_DTYPE)
    if not relative:
        c2p = p2c = c2p_index = p2c_index = None
    scale = 1 / math.sqrt(q.shape[-1] * 3)
    ref = attention_reference(*as_fp32(q, k, v), lens, scale, *as_fp32(c2p, p2c), c2p_index, p2c_index)
    with gpu_tile_config(kernels.attention, config):
        out = poisoned(tuple(q.shape), q.dtype)
        attention(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index, out=out)
    check_output(out, ref, lengths, f"config {config}, relative={relative}")


def test_autotuned_attention_matches_reference() -> None:
    """The public entry point as callers use it: autotuned among GPU_CONFIGS in bf16 on a GPU; under the
    interpreter (no autotuner there) its one config in fp32."""
    dtype = torch.bfloat16 if ON_GPU else TILE_DTYPE
    (q, k, v, lens, c2p, p2c, c2p_index, p2c_index), lengths = deberta_case(dtype)
    scale = 1 / math.sqrt(q.shape[-1] * 3)
    ref = attention_reference(*as_fp32(q, k, v), lens, scale, *as_fp32(c2p, p2c), c2p_index, p2c_index)
    with only_configs(kernels.attention.autotuner, kernels.attention.GPU_CONFIGS):
        out = attention(q, k, v, lens, scale, c2p, p2c, c2p_index, p2c_index)
    check_output(out, ref, lengths, "autotuned")


# Causal, grouped-query attention (the decoder form: Nemotron-H's attention layers, no position encoding).

def grouped_qkv(batch: int, heads: int, kv_heads: int, length: int, head_dim: int,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B, H, L, D] and k, v [B, Hkv, L, D] as strided views of one fused [B, L, H + 2 Hkv, D] projection."""
    fused = randn(batch, length, heads + 2 * kv_heads, head_dim, dtype=dtype)
    q, k, v = fused.split([heads, kv_heads, kv_heads], dim=2)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def sdpa_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], scale: float,
                   causal: bool) -> torch.Tensor:
    """torch's SDPA in fp32 with k, v repeated per query head and an explicit causal + key-padding mask."""
    group = q.shape[1] // k.shape[1]
    length = q.shape[2]
    positions = torch.arange(length, device=q.device)
    lens = torch.tensor(lengths, device=q.device)
    visible = (positions[None, :] < lens[:, None])[:, None, None, :]
    if causal:
        visible = visible & (positions[None, :] <= positions[:, None])
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1),
        attn_mask=visible, scale=scale)
    valid = positions[None, :] < lens[:, None]
    return out.masked_fill(~valid[:, None, :, None], 0.0)  # SDPA's padded rows carry no meaning


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])  # H = 4: multi-query, grouped, multi-head
@pytest.mark.parametrize(("head_dim", "length", "lengths"), [
    (16, 37, [37, 1, 20, 33]),    # ragged, L not a multiple of any block
    (32, 50, [50, 50]),           # no padding
    (128, 45, [45, 13]),          # the 8B model's head dim
])
def test_causal_grouped_attention_matches_reference(dtype: torch.dtype, causal: bool, kv_heads: int, head_dim: int,
                                                    length: int, lengths: list[int]) -> None:
    heads = 4
    q, k, v = grouped_qkv(len(lengths), heads, kv_heads, length, head_dim, dtype)
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    scale = head_dim ** -0.5
    ref = attention_reference(*as_fp32(q, k, v), lens, scale, causal=causal)
    what = f"causal={causal} H={heads} Hkv={kv_heads} D={head_dim} L={length} {dtype}"
    assert_matches(ref, sdpa_reference(q, k, v, lengths, scale, causal), f"reference vs SDPA, {what}")

    out = poisoned((len(lengths), length, heads, head_dim), dtype).transpose(1, 2)
    attention(q, k, v, lens, scale, out=out, causal=causal)
    check_output(out, ref, lengths, what)


def test_causal_reference_is_sdpa_is_causal() -> None:
    """Full rows: the causal reference is torch's own is_causal attention, grouped heads through enable_gqa."""
    q, k, v = grouped_qkv(2, 8, 2, 70, 32, torch.float32)
    lens = torch.tensor([70, 70], device=DEVICE)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.2, enable_gqa=True)
    assert_matches(attention_reference(q, k, v, lens, 0.2, causal=True), expected, "reference vs SDPA is_causal")
    assert_matches(attention(q, k, v, lens, 0.2, causal=True), expected, "kernel vs SDPA is_causal")


def test_causal_rows_ignore_later_and_padded_tokens() -> None:
    """Causal: changing token t (or padding, here NaN) changes no output row before t."""
    batch, heads, kv_heads, length, head_dim = 2, 4, 2, 41, 32
    lengths = [41, 26]
    q, k, v = grouped_qkv(batch, heads, kv_heads, length, head_dim, torch.float32)
    lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    before = attention(q, k, v, lens, 0.3, causal=True)
    for b, n in enumerate(lengths):
        for t in (q, k, v):
            t[b, :, n:] = float("nan")
    q[0, :, 30:], k[0, :, 30:], v[0, :, 30:] = (randn(heads, 11, head_dim), randn(kv_heads, 11, head_dim),
                                                randn(kv_heads, 11, head_dim))
    after = attention(q, k, v, lens, 0.3, causal=True)
    assert torch.equal(after[0, :, :30], before[0, :, :30])
    assert torch.equal(after[1], before[1])


def causal_case(dtype: torch.dtype) -> tuple[list[torch.Tensor], list[int]]:
    """A fresh padded grouped batch at 8B-like head size (H = 4, Hkv = 2, D = 128, L = 200)."""
    lengths = [200, 57, 1, 130]
    q, k, v = grouped_qkv(len(lengths), 4, 2, 200, 128, dtype)
    return [q, k, v, torch.tensor(lengths, dtype=torch.int32, device=DEVICE)], lengths


@pytest.mark.parametrize("config", kernels.attention.GPU_CONFIGS, ids=str)
def test_each_gpu_config_matches_reference_causal(config: object) -> None:
    """Every tile config's diagonal split (BLOCK_M / BLOCK_N masked blocks) and unmasked blocks below it."""
    (q, k, v, lens), lengths = causal_case(TILE_DTYPE)
    ref = attention_reference(*as_fp32(q, k, v), lens, 128 ** -0.5, causal=True)
    with gpu_tile_config(kernels.attention, config):
        out = poisoned(tuple(q.shape), q.dtype)
        attention(q, k, v, lens, 128 ** -0.5, out=out, causal=True)
    check_output(out, ref, lengths, f"causal config {config}")


def test_autotuned_causal_attention_matches_reference() -> None:
    """Causal GQA through the public entry point, autotuned in bf16 on a GPU (its own autotune key)."""
    (q, k, v, lens), lengths = causal_case(torch.bfloat16 if ON_GPU else TILE_DTYPE)
    ref = attention_reference(*as_fp32(q, k, v), lens, 128 ** -0.5, causal=True)
    with only_configs(kernels.attention.autotuner, kernels.attention.GPU_CONFIGS):
        out = attention(q, k, v, lens, 128 ** -0.5, causal=True)
    check_output(out, ref, lengths, "autotuned causal")


def test_reference_gradients_are_finite_with_empty_rows() -> None:
    """The reference is the training path: a length-0 row must not turn gradients into NaN."""
    q, k, v = (t.detach().requires_grad_() for t in grouped_qkv(2, 4, 2, 9, 16, torch.float32))
    lens = torch.tensor([0, 6], device=DEVICE)
    for causal in (False, True):
        out = attention_reference(q, k, v, lens, 0.25, causal=causal)
        assert (out[0] == 0).all()
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        assert all(torch.isfinite(g).all() for g in grads), f"causal={causal}: non-finite gradients"


def test_grouped_attention_rejects_bad_heads() -> None:
    lens = torch.tensor([8, 8], dtype=torch.int32, device=DEVICE)
    q, k, v = grouped_qkv(2, 6, 4, 8, 16, torch.float32)
    for fn in (attention, attention_reference):
        with pytest.raises(ValueError, match="multiple of key/value heads"):
            fn(q, k, v, lens, 1.0)
        with pytest.raises(ValueError, match="one \\[B, Hkv, L, D\\] shape"):
            fn(q, k, v[:, :2], lens, 1.0)
