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

Times are triton.testing.do_bench medians (ms), each taken twice (the spread between the two is shown);
autotuning happens in a warm-up call first. Our rates: TFLOP/s on the useful work (4 H D per real query x
real key pair for attention, 2 M N K for linear) and GB/s on the least bytes (each input read once, the
output written once). The floor is max(work / matmul ceiling, bytes / copy ceiling), both ceilings
measured first on this device (a 1 GiB device copy, an 8192^3 torch matmul). Then the max abs and
relative-norm error of ours and of torch's against the fp32 PyTorch reference, on fresh random inputs
(valid query rows only for attention).

Without a CUDA GPU the script runs tiny shapes through the Triton interpreter (a smoke run of this
script; its timings mean nothing).

    python benchmarks/kernels.py
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
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


def print_table(rows: list[Row], ceilings: Ceilings) -> None:
    """The results, one line per case."""
    print(f"{'case':36s} {'ours ms':>8s} {'torch ms':>8s} {'speedup':>7s} {'spread':>6s} {'floor ms':>8s} "
          f"{'of floor':>8s} {'TFLOP/s':>7s} {'GB/s':>6s}  {'ours err: max, rel':>19s}  {'torch err: max, rel':>19s}")
    for r in rows:
        floor = ceilings.floor_ms(r.flops, r.bytes)
        print(f"{r.name:36s} {r.ours_ms:8.3f} {r.torch_ms:8.3f} {r.torch_ms / r.ours_ms:6.2f}x {r.spread:5.1f}% "
              f"{floor:8.3f} {100 * floor / r.ours_ms:7.0f}% {r.flops / r.ours_ms / 1e9:7.1f} "
              f"{r.bytes / r.ours_ms / 1e6:6.0f}  {r.ours_err[0]:9.2e} {r.ours_err[1]:9.2e}  "
              f"{r.torch_err[0]:9.2e} {r.torch_err[1]:9.2e}")


def print_tuned_configs() -> None:
    """The configs the autotuners settled on (GPU only)."""
    for name, tuner in (("attention", kernels.attention.autotuner), ("linear", kernels.linear.autotuner)):
        cache = getattr(tuner, "cache", None) or {}
        for key, config in cache.items():
            print(f"  {name} {key}: {config}")


def main() -> None:
    if ON_GPU:
        device, dtype, shapes = torch.device("cuda"), torch.bfloat16, BERT_BASE
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; bf16")
    else:
        device, dtype, shapes = torch.device("cpu"), torch.float32, TINY
        print("no CUDA GPU: tiny shapes in fp32 through the Triton interpreter (a smoke run; timings mean nothing)")
    print(f"{shapes}")
    ceilings = measure_ceilings(device, dtype)
    print(f"ceilings: copy {ceilings.bytes_per_s / 1e9:,.0f} GB/s, matmul {ceilings.flops_per_s / 1e12:,.1f} TFLOP/s")
    rows = [bench_attention(shapes, dtype, device, padded=False), bench_attention(shapes, dtype, device, padded=True)]
    rows += bench_deberta_attention(shapes, dtype, device)
    rows.append(bench_layernorm(shapes, dtype, device))
    hidden, inter = shapes.hidden, shapes.intermediate
    for n_out, k_in, activation, label in ((3 * hidden, hidden, None, "qkv"), (hidden, hidden, None, "attn-out"),
                                           (inter, hidden, "gelu", "ffn-up"), (hidden, inter, None, "ffn-down")):
        rows.append(bench_linear(shapes, dtype, device, n_out, k_in, activation, label))
    if ON_GPU:
        print("autotuned configs:")
        print_tuned_configs()
    print_table(rows, ceilings)


if __name__ == "__main__":
    main()
