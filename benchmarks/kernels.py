"""GPU micro-benchmark of the Triton kernels in kernels/ against the obvious PyTorch alternatives.

BERT-base shapes in bf16: batch 64 x 512 tokens, hidden 768, 12 heads of 64, intermediate 3072.

- attention, key-padding mask: ours vs F.scaled_dot_product_attention with the boolean key mask, on full
  rows (every length 512) and on padded rows (lengths uniform in 128..512, as in an unsorted batch);
- attention with DeBERTa-v3 relative terms (position_buckets 256, so c2p and p2c are [B, H, L, 512]):
  ours vs gathering the dense [B, H, L, L] bias as transformers does + SDPA with that additive mask
  (the bias build timed in, and SDPA alone on a prebuilt bias);
- add + LayerNorm over [32768, 768]: ours vs F.layer_norm(x + r);
- linear at the encoder's four shapes (QKV 768->2304, attention output 768->768, FFN up 768->3072 + GELU,
  FFN down 3072->768): ours vs F.linear (+ F.gelu).

Causal section, Nemotron-H-8B's attention layer in bf16: batch 4 x 4096 tokens, 32 query heads and 8 key/value
heads of 128, no position encoding, scale 128^-0.5:
- causal GQA on full rows: ours vs F.scaled_dot_product_attention(is_causal=True, enable_gqa=True), and vs
  SDPA is_causal on k, v repeated to 32 heads beforehand (the repeat not timed);
- causal GQA on padded rows (lengths uniform in 1024..4096): ours vs SDPA with k, v repeated and a boolean
  causal + key-padding mask (the only way SDPA takes both).
Causal useful work counts each real query's visible keys only (n (n + 1) / 2 pairs per row of n tokens).

Times are triton.testing.do_bench medians (ms), each taken twice (the spread between the two is shown);
autotuning happens in a warm-up call first. Our rates: TFLOP/s on the useful work (4 H D per real query x
real key pair for attention, 2 M N K for linear) and GB/s on the least bytes (each input read once, the
output written once). The floor is max(work / matmul ceiling, bytes / copy ceiling), both ceilings
measured first on this device (a 1 GiB device copy, an 8192^3 torch matmul). Then the max abs and
relative-norm error of ours and of torch's against the fp32 PyTorch reference, on fresh random inputs
(valid query rows only for attention).

Without a CUDA GPU the script runs tiny shapes through the Triton interpreter (a smoke run of this
script; its timings mean nothing).

    python benchmarks/kernels.py [--section encoder|causal|all]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# This script is named like the package it measures: take its own folder off the import path (Python puts it
# first), so that `kernels` below is the package and not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before kernels is imported: triton.jit reads it then

import triton  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.kernel_timing import (Row, errors, measure_ceilings,  # noqa: E402
                                      print_table, print_tuned_configs, time_ms)

import kernels.attention  # noqa: E402
import kernels.linear  # noqa: E402

from kernels.attention import attention, attention_reference  # noqa: E402
from kernels.layernorm import add_layernorm, add_layernorm_reference  # noqa: E402
from kernels.linear import linear, linear_reference  # noqa: E402
from kernels.relative_position import relative_index_tables  # noqa: E402


@dataclass(frozen=True)
class Shapes:
    """The model and batch dimensions benchmarked."""

    batch: int
    length: int
    heads: int
    head_dim: int
    intermediate: int
    position_buckets: int

    @property
    def hidden(self) -> int:
        """Model width."""
        return self.heads * self.head_dim

    @property
    def tokens(self) -> int:
        """Rows of the token-wise kernels (batch x length)."""
        return self.batch * self.length


BERT_BASE = Shapes(batch=64, length=512, heads=12, head_dim=64, intermediate=3072, position_buckets=256)
TINY = Shapes(batch=2, length=40, heads=2, head_dim=32, intermediate=96, position_buckets=8)


@dataclass(frozen=True)
class CausalShapes:
    """A decoder's attention layer and batch: grouped-query heads, no position encoding."""

    batch: int
    length: int
    heads: int
    kv_heads: int
    head_dim: int


NEMOTRON_H_8B = CausalShapes(batch=4, length=4096, heads=32, kv_heads=8, head_dim=128)
TINY_CAUSAL = CausalShapes(batch=2, length=40, heads=4, kv_heads=2, head_dim=32)


def valid_rows(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Attention output [B, H, L, D] with padded query rows zeroed (they carry no meaning in SDPA's output)."""
    keep = torch.arange(t.shape[2], device=t.device)[None, :] < lengths[:, None]
    return t.float() * keep[:, None, :, None]


def attention_inputs(s: Shapes, dtype: torch.dtype, device: torch.device, padded: bool,
                     seed: int) -> tuple[torch.Tensor, ...]:
    """q, k, v [B, H, L, D] and lengths (all L, or uniform in L/4..L)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (torch.randn(s.batch, s.heads, s.length, s.head_dim, generator=gen).to(device, dtype) for _ in range(3))
    if padded:
        lengths = torch.randint(s.length // 4, s.length + 1, (s.batch,), generator=gen)
    else:
        lengths = torch.full((s.batch,), s.length)
    return q, k, v, lengths.to(device=device, dtype=torch.int32)


def attention_work(s: Shapes, lengths: torch.Tensor, element_size: int, positions: int) -> tuple[float, float]:
    """(useful FLOPs, least bytes) of one attention call: real query x real key pairs; q, k, v and the real
    rows of c2p and p2c read once (``positions`` = P, 0 without them), the output written once."""
    lens = lengths.double()
    flops = 4 * s.heads * s.head_dim * float((lens * lens).sum())
    tokens = s.batch * s.heads * s.length
    return flops, float(element_size * (4 * tokens * s.head_dim + 2 * tokens * positions))


def key_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """SDPA's boolean mask [B, 1, 1, L]: True where the key is real."""
    return (torch.arange(length, device=lengths.device)[None, :] < lengths[:, None])[:, None, None, :]


def bench_attention(s: Shapes, dtype: torch.dtype, device: torch.device, padded: bool) -> Row:
    """Key-padding attention: ours vs SDPA with a boolean mask."""
    scale = 1 / math.sqrt(s.head_dim)
    q, k, v, lengths = attention_inputs(s, dtype, device, padded, seed=1)
    mask = key_mask(lengths, s.length)
    ours_ms, spread = time_ms(lambda: attention(q, k, v, lengths, scale))
    torch_ms, _ = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale))
    work = attention_work(s, lengths, q.element_size(), 0)  # of the timed inputs

    q, k, v, lengths = attention_inputs(s, dtype, device, padded, seed=2)
    mask = key_mask(lengths, s.length)
    ref = attention_reference(q.float(), k.float(), v.float(), lengths, scale)
    ours = attention(q, k, v, lengths, scale)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    name = f"attention, {'padded (L/4..L)' if padded else 'full rows'}"
    return Row(name, ours_ms, torch_ms, spread, *work,
               errors(valid_rows(ours, lengths), valid_rows(ref, lengths)),
               errors(valid_rows(theirs, lengths), valid_rows(ref, lengths)))


def dense_deberta_bias(c2p: torch.Tensor, p2c: torch.Tensor, c2p_index: torch.Tensor, p2c_index: torch.Tensor,
                       lengths: torch.Tensor, scale: float) -> torch.Tensor:
    """The additive SDPA mask transformers' way: gather c2p/p2c into [B, H, L, L], scale, -inf on padded keys."""
    batch, heads, length, _ = c2p.shape
    positions = torch.arange(length, device=c2p.device)
    distance = positions[:, None] - positions[None, :] + length - 1
    full = (batch, heads, length, length)
    bias = torch.gather(c2p, -1, c2p_index.long()[distance].expand(full))
    bias = bias + torch.gather(p2c, -1, p2c_index.long()[distance].T.expand(full)).transpose(-1, -2)
    return (bias * scale).masked_fill(~key_mask(lengths, length), float("-inf"))


def time_sdpa_on(bias: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> float:
    """Median ms of SDPA with a prebuilt additive mask (freed on return)."""
    return time_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale))[0]


def bench_deberta_attention(s: Shapes, dtype: torch.dtype, device: torch.device) -> list[Row]:
    """Attention with c2p and p2c: ours vs bias build + SDPA, and vs SDPA alone on a prebuilt bias."""
    span = s.position_buckets
    scale = 1 / math.sqrt(s.head_dim * 3)
    c2p_index, p2c_index = (t.to(device) for t in relative_index_tables(s.length, span, s.length, span))

    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        q, k, v, lengths = attention_inputs(s, dtype, device, True, seed)
        gen = torch.Generator(device="cpu").manual_seed(seed + 100)
        c2p, p2c = (torch.randn(s.batch, s.heads, s.length, 2 * span, generator=gen).to(device, dtype)
                    for _ in range(2))
        return q, k, v, lengths, c2p, p2c

    q, k, v, lengths, c2p, p2c = inputs(3)
    ours_ms, spread = time_ms(lambda: attention(q, k, v, lengths, scale, c2p, p2c, c2p_index, p2c_index))
    build_ms, _ = time_ms(lambda: F.scaled_dot_product_attention(
        q, k, v, attn_mask=dense_deberta_bias(c2p, p2c, c2p_index, p2c_index, lengths, scale), scale=scale))
    sdpa_ms = time_sdpa_on(dense_deberta_bias(c2p, p2c, c2p_index, p2c_index, lengths, scale), q, k, v, scale)
    work = attention_work(s, lengths, q.element_size(), 2 * span)  # of the timed inputs

    q, k, v, lengths, c2p, p2c = inputs(4)
    ref = attention_reference(q.float(), k.float(), v.float(), lengths, scale, c2p.float(), p2c.float(),
                              c2p_index, p2c_index)
    ours = attention(q, k, v, lengths, scale, c2p, p2c, c2p_index, p2c_index)
    theirs = F.scaled_dot_product_attention(
        q, k, v, attn_mask=dense_deberta_bias(c2p, p2c, c2p_index, p2c_index, lengths, scale), scale=scale)
    ours_err = errors(valid_rows(ours, lengths), valid_rows(ref, lengths))
    torch_err = errors(valid_rows(theirs, lengths), valid_rows(ref, lengths))
    return [
        Row("deberta attn vs bias build+SDPA", ours_ms, build_ms, spread, *work, ours_err, torch_err),
        Row("deberta attn vs SDPA, bias prebuilt", ours_ms, sdpa_ms, spread, *work, ours_err, torch_err),
    ]


def causal_inputs(s: CausalShapes, dtype: torch.dtype, device: torch.device, padded: bool,
                  seed: int) -> tuple[torch.Tensor, ...]:
    """q [B, H, L, D], k, v [B, Hkv, L, D] and lengths (all L, or uniform in L/4..L)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(s.batch, s.heads, s.length, s.head_dim, generator=gen).to(device, dtype)
    k, v = (torch.randn(s.batch, s.kv_heads, s.length, s.head_dim, generator=gen).to(device, dtype)
            for _ in range(2))
    low = s.length // 4 if padded else s.length
    lengths = torch.randint(low, s.length + 1, (s.batch,), generator=gen)
    return q, k, v, lengths.to(device=device, dtype=torch.int32)


def causal_work(s: CausalShapes, lengths: torch.Tensor, element_size: int) -> tuple[float, float]:
    """(useful FLOPs, least bytes) of one causal call: n (n + 1) / 2 visible pairs per row of n real tokens;
    q, k, v read once, the output written once."""
    lens = lengths.double()
    flops = 4 * s.heads * s.head_dim * float((lens * (lens + 1) / 2).sum())
    elements = s.batch * s.length * s.head_dim * (2 * s.heads + 2 * s.kv_heads)
    return flops, float(element_size * elements)


def causal_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """The fp32 reference one batch row at a time (its dense scores of a whole 8B batch would take 34 GB)."""
    return torch.cat([attention_reference(q[b:b + 1].float(), k[b:b + 1].float(), v[b:b + 1].float(),
                                          lengths[b:b + 1], scale, causal=True) for b in range(q.shape[0])])


def causal_key_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """SDPA's boolean mask [B, 1, L, L]: True where the key is real and not after the query."""
    positions = torch.arange(length, device=lengths.device)
    return key_mask(lengths, length) & (positions[None, :] <= positions[:, None])


def sdpa_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float,
                padded: bool) -> dict[str, Callable[[], torch.Tensor]]:
    """torch's ways of computing the same: is_causal (grouped, and on k, v repeated) on full rows; a boolean
    causal + key-padding mask on k, v repeated when padded. The repeats and the mask are made here, untimed."""
    group = q.shape[1] // k.shape[1]
    k_rep, v_rep = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    if padded:
        mask = causal_key_mask(lengths, q.shape[2])
        return {"masked SDPA, k/v repeated": lambda: F.scaled_dot_product_attention(
            q, k_rep, v_rep, attn_mask=mask, scale=scale)}
    return {"SDPA is_causal, k/v repeated": lambda: F.scaled_dot_product_attention(
                q, k_rep, v_rep, is_causal=True, scale=scale),
            "SDPA is_causal+enable_gqa": lambda: F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=scale, enable_gqa=True)}


def bench_causal_attention(s: CausalShapes, dtype: torch.dtype, device: torch.device) -> list[Row]:
    """Causal GQA: ours vs SDPA is_causal (repeated k, v, and enable_gqa) on full rows, vs masked SDPA padded."""
    scale = s.head_dim ** -0.5
    rows = []
    for padded in (False, True):
        q, k, v, lengths = causal_inputs(s, dtype, device, padded, seed=11 + padded)
        ours_ms, spread = time_ms(lambda: attention(q, k, v, lengths, scale, causal=True))
        timed = {label: time_ms(fn)[0] for label, fn in sdpa_causal(q, k, v, lengths, scale, padded).items()}
        work = causal_work(s, lengths, q.element_size())  # of the timed inputs

        q, k, v, lengths = causal_inputs(s, dtype, device, padded, seed=21 + padded)
        ref = valid_rows(causal_reference(q, k, v, lengths, scale), lengths)
        ours_err = errors(valid_rows(attention(q, k, v, lengths, scale, causal=True), lengths), ref)
        first_of_theirs = next(iter(sdpa_causal(q, k, v, lengths, scale, padded).values()))
        torch_err = errors(valid_rows(first_of_theirs(), lengths), ref)
        for label, torch_ms in timed.items():
            rows.append(Row(f"causal GQA{', padded' if padded else ''} vs {label}", ours_ms, torch_ms, spread,
                            *work, ours_err, torch_err))
    return rows


def bench_layernorm(s: Shapes, dtype: torch.dtype, device: torch.device) -> Row:
    """add + LayerNorm: ours vs F.layer_norm(x + r)."""
    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x, r = (torch.randn(s.tokens, s.hidden, generator=gen).to(device, dtype) for _ in range(2))
        weight, bias = (torch.randn(s.hidden, generator=gen).to(device, dtype) for _ in range(2))
        return x, r, weight, bias

    x, r, weight, bias = inputs(5)
    ours_ms, spread = time_ms(lambda: add_layernorm(x, r, weight, bias, 1e-7))
    torch_ms, _ = time_ms(lambda: F.layer_norm(x + r, (s.hidden,), weight, bias, 1e-7))
    x, r, weight, bias = inputs(6)
    ref = add_layernorm_reference(x.float(), r.float(), weight.float(), bias.float(), 1e-7)
    n_bytes = (3 * s.tokens + 2) * s.hidden * x.element_size()
    return Row(f"add+layernorm [{s.tokens}, {s.hidden}]", ours_ms, torch_ms, spread, 8 * s.tokens * s.hidden, n_bytes,
               errors(add_layernorm(x, r, weight, bias, 1e-7), ref),
               errors(F.layer_norm(x + r, (s.hidden,), weight, bias, 1e-7), ref))


def bench_linear(s: Shapes, dtype: torch.dtype, device: torch.device, n_out: int, k_in: int,
                 activation: str | None, label: str) -> Row:
    """One linear layer: ours (bias and activation fused) vs F.linear then F.gelu."""
    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(s.tokens, k_in, generator=gen).to(device, dtype)
        weight = (torch.randn(n_out, k_in, generator=gen) / math.sqrt(k_in)).to(device, dtype)
        return x, weight, torch.randn(n_out, generator=gen).to(device, dtype)

    def theirs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, weight, bias)
        return F.gelu(y) if activation == "gelu" else y

    x, weight, bias = inputs(7)
    ours_ms, spread = time_ms(lambda: linear(x, weight, bias, activation))
    torch_ms, _ = time_ms(lambda: theirs(x, weight, bias))
    x, weight, bias = inputs(8)
    ref = linear_reference(x.float(), weight.float(), bias.float(), activation)
    n_bytes = (s.tokens * k_in + n_out * k_in + n_out + s.tokens * n_out) * x.element_size()
    return Row(f"linear {label} {k_in}->{n_out}{' +gelu' if activation else ''}", ours_ms, torch_ms, spread,
               2 * s.tokens * n_out * k_in, n_bytes,
               errors(linear(x, weight, bias, activation), ref), errors(theirs(x, weight, bias), ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=["encoder", "causal", "all"], default="all",
                        help="the encoder kernels (BERT-base shapes), causal GQA attention (Nemotron-H-8B), or both")
    section = parser.parse_args().section
    if ON_GPU:
        device, dtype, shapes, causal_shapes = torch.device("cuda"), torch.bfloat16, BERT_BASE, NEMOTRON_H_8B
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; bf16")
    else:
        device, dtype, shapes, causal_shapes = torch.device("cpu"), torch.float32, TINY, TINY_CAUSAL
        print("no CUDA GPU: tiny shapes in fp32 through the Triton interpreter (a smoke run; timings mean nothing)")
    ceilings = measure_ceilings(device, dtype)
    print(f"ceilings: copy {ceilings.bytes_per_s / 1e9:,.0f} GB/s, matmul {ceilings.flops_per_s / 1e12:,.1f} TFLOP/s")
    rows = []
    if section in ("encoder", "all"):
        print(f"{shapes}")
        rows += [bench_attention(shapes, dtype, device, padded=False),
                 bench_attention(shapes, dtype, device, padded=True)]
        rows += bench_deberta_attention(shapes, dtype, device)
        rows.append(bench_layernorm(shapes, dtype, device))
        hidden, inter = shapes.hidden, shapes.intermediate
        for n_out, k_in, activation, label in ((3 * hidden, hidden, None, "qkv"), (hidden, hidden, None, "attn-out"),
                                               (inter, hidden, "gelu", "ffn-up"), (hidden, inter, None, "ffn-down")):
            rows.append(bench_linear(shapes, dtype, device, n_out, k_in, activation, label))
    if section in ("causal", "all"):
        print(f"{causal_shapes}")
        rows += bench_causal_attention(causal_shapes, dtype, device)
    if ON_GPU:
        print("autotuned configs:")
        print_tuned_configs({"attention": kernels.attention.autotuner, "linear": kernels.linear.autotuner})
    print_table(rows, ceilings, name_width=50)

if __name__ == "__main__":
    main()
