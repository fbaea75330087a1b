"""Tokens/s of the hybrid LM scorer: ours (Triton kernels, and our PyTorch path) vs transformers' NemotronH.

One random-weight Nemotron-H model is built by transformers and shared, tensor for tensor, with ours, so both score
the same documents with the same weights. The documents are random token ids with lengths drawn log-normally (many
short, a few long), cut at ``--max-len`` and batched the way the ``classify.perplexity`` stage batches them: sorted by
length, right-padded, at most ``--batch-tokens`` padded tokens a batch. Each backend computes every document's
per-token NLL: ours through ``HybridLM.token_nll`` (logits a chunk of positions at a time), transformers through its
logits and a cross-entropy with the padding masked. Times are the best of ``--repeats`` passes after a warm-up (which
also autotunes our kernels); the NLL columns show how far each backend's document means are from our fp32 PyTorch
path when ``--check`` is given (CPU only: a GPU holds one copy of the 8B weights comfortably, not two).

    python benchmarks/hybrid_scorer.py --size 8b            # on a GPU: Nemotron-H-8B's shapes, bf16
    python benchmarks/hybrid_scorer.py --size small --check # on a CPU: a few-million-parameter model, fp32

Without a GPU the Triton path runs in the interpreter (correct, not fast), so on a CPU only the PyTorch paths are
timed unless ``--backends`` names triton.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before kernels are imported

from classifiers.encoder_batches import length_batches  # noqa: E402
from classifiers.hybrid_config import HybridConfig  # noqa: E402
from classifiers.hybrid_model import HybridLM  # noqa: E402

# Nemotron-H-8B-Base-8K's config.json (52 layers: 24 Mamba2, 4 attention, 24 MLP).
NEMOTRON_H_8B = dict(
    vocab_size=131072, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    intermediate_size=21504, mamba_num_heads=128, mamba_head_dim=64, ssm_state_size=128, n_groups=8, conv_kernel=4,
    chunk_size=128, layer_norm_epsilon=1e-5,
    hybrid_override_pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-")
SMALL = dict(
    vocab_size=8192, hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
    intermediate_size=1024, mamba_num_heads=8, mamba_head_dim=64, ssm_state_size=64, n_groups=1, conv_kernel=4,
    chunk_size=128, layer_norm_epsilon=1e-5, hybrid_override_pattern="M-M*M-")
SIZES = {"8b": NEMOTRON_H_8B, "small": SMALL}


def build_models(size: str, layers: int | None, device: str, dtype: torch.dtype):
    """transformers' model with random weights, and ours sharing its tensors."""
    from transformers import NemotronHConfig, NemotronHForCausalLM

    spec = dict(SIZES[size])
    if layers is not None:
        spec["hybrid_override_pattern"] = spec["hybrid_override_pattern"][:layers]
    config = NemotronHConfig(**spec)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            theirs = NemotronHForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    ours = HybridLM(HybridConfig.from_dict(config.to_dict()), device="meta")
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    return theirs, ours.eval(), config


def documents(count: int, max_len: int, vocab: int, seed: int) -> list[list[int]]:
    """Random token ids, lengths log-normal around 600 tokens, clipped to [16, max_len]."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.exp(torch.randn(count, generator=gen) * 0.9 + math.log(600)).clamp(16, max_len).long()
    return [torch.randint(3, vocab, (int(n),), generator=gen).tolist() for n in lengths]


def nll_ours(model: HybridLM, batches: list, count: int, device: str) -> torch.Tensor:
    out = torch.zeros(count, dtype=torch.float64)
    with torch.inference_mode():
        for rows, ids, lengths in batches:
            per_token = model.token_nll(ids, lengths.long())
            out[torch.as_tensor(rows)] = (per_token.sum(1) / (lengths - 1).clamp_min(1)).double().cpu()
    return out


def nll_transformers(model, batches: list, count: int, device: str) -> torch.Tensor:
    out = torch.zeros(count, dtype=torch.float64)
    with torch.inference_mode():
        for rows, ids, lengths in batches:
            positions = torch.arange(ids.shape[1], device=device)
            mask = (positions[None, :] < lengths[:, None]).long()
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            per_token = per_token.masked_fill(mask[:, 1:] == 0, 0.0)
            out[torch.as_tensor(rows)] = (per_token.sum(1) / (lengths - 1).clamp_min(1)).double().cpu()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="8b" if torch.cuda.is_available() else "small")
    parser.add_argument("--layers", type=int, default=None, help="keep the first N layers of the pattern")
    parser.add_argument("--docs", type=int, default=None, help="documents (default: 96 on GPU, 24 on CPU)")
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--transformers-batch-tokens", type=int, default=None, help=(
        "padded tokens a batch for transformers (default: --batch-tokens; its torch SSD path materialises "
        "[tokens, chunk, heads, state] tensors, so at 8B shapes it needs about 2048)"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default=None, help="comma list of triton, torch, transformers")
    parser.add_argument("--check", action="store_true", help="compare document NLLs with our fp32 PyTorch path")
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    backends = (args.backends or ("triton,torch,transformers" if on_gpu else "torch,transformers")).split(",")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    start = time.perf_counter()
    theirs, ours, config = build_models(args.size, args.layers, device, dtype)
    params = sum(p.numel() for p in ours.parameters())
    count = args.docs or (96 if on_gpu else 24)
    docs = documents(count, args.max_len, config.vocab_size, seed=1)
    batches = [(b.rows, b.ids.to(device), b.lengths.to(device))
               for b in length_batches(docs, args.batch_tokens, 256, 0)]
    their_batches = batches if args.transformers_batch_tokens is None else [
        (b.rows, b.ids.to(device), b.lengths.to(device))
        for b in length_batches(docs, args.transformers_batch_tokens, 256, 0)]
    real = sum(len(d) for d in docs)
    padded = sum(b[1].numel() for b in batches)
    name = torch.cuda.get_device_name() if on_gpu else "CPU"
    print(f"model: Nemotron-H {args.size} shapes, {config.hybrid_override_pattern} ({len(ours.config.layer_kinds)} "
          f"layers), {params / 1e6:,.1f}M parameters, {str(dtype).removeprefix('torch.')} on {name}; built in "
          f"{time.perf_counter() - start:.1f} s")
    print(f"documents: {count}, {real:,} tokens (mean {real / count:.0f}, max {max(len(d) for d in docs)}), "
          f"{len(batches)} batches of <= {args.batch_tokens} padded tokens, padding {1 - real / padded:.1%}"
          + (f"; transformers: {len(their_batches)} batches of <= {args.transformers_batch_tokens}"
             if their_batches is not batches else ""))
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}")

    results: dict[str, tuple[float, torch.Tensor]] = {}
    for backend in backends:
        if backend == "transformers":
            def run() -> torch.Tensor:
                return nll_transformers(theirs, their_batches, count, device)
        else:
            ours.set_kernels(backend == "triton")

            def run() -> torch.Tensor:
                return nll_ours(ours, batches, count, device)
        nll = run()  # warm-up (and autotuning)
        best = math.inf
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            nll = run()
            sync()
            best = min(best, time.perf_counter() - t0)
        results[backend] = (best, nll)
        if on_gpu:
            torch.cuda.empty_cache()

    reference = None
    if args.check:
        ours.set_kernels(False)
        reference = nll_ours(ours.float(), batches, count, device) if not on_gpu else None
    base = results.get("transformers", (None,))[0]
    print(f"\n{'backend':<14}{'seconds':>10}{'tokens/s':>14}{'vs transformers':>18}{'mean doc NLL':>15}"
          f"{'max |dNLL| vs fp32 torch':>26}")
    for backend, (seconds, nll) in results.items():
        speed = f"{base / seconds:.2f}x" if base else "-"
        diff = f"{(nll - reference).abs().max().item():.2e}" if reference is not None else "-"
        print(f"{backend:<14}{seconds:>10.3f}{real / seconds:>14,.0f}{speed:>18}{nll.mean().item():>15.4f}{diff:>26}")
    if "transformers" in results and len(results) > 1:
        for backend, (_, nll) in results.items():
            if backend != "transformers":
                gap = (nll - results["transformers"][1]).abs().max().item()
                print(f"max |doc NLL {backend} - transformers| = {gap:.3e} (both {str(dtype).removeprefix('torch.')})")


if __name__ == "__main__":
    main()
