"""Documents per second of our encoder classifier vs Hugging Face transformers, same batches, same dtype.

The 5,000 documents are real English article text (../shared/data/extraction/aeb-dev): paragraphs
drawn at random and joined until a document reaches its target length. Two length mixes:
``long`` (every document over 512 tokens, so every one is truncated to 512: the "BERT-base at 512
tokens" case) and ``mixed`` (targets log-uniform between 30 and 1,000 words, like web pages after
extraction). Both models get the same padded batches (documents sorted by length, cut under a token
budget); tokenisation is timed separately and is not in the model figures.

Models: ``bert-base`` (BERT-base shape, 12 x 768, random weights with a regression head: speed does
not depend on the values), ``deberta-v3-base`` (DeBERTa-v3-base shape, random weights, 3 classes),
or a checkpoint folder (``--model models/all-minilm-l6-v2`` with a random head).

    python benchmarks/encoder_classifier.py --prepare          # writes benchmarks/_data/encoder_bench/
    python benchmarks/encoder_classifier.py --model bert-base  # on a GPU: bf16, ours vs transformers SDPA

``--prepare`` needs ../shared/data and models/all-minilm-l6-v2 (for its BERT uncased tokenizer);
the run itself needs only benchmarks/_data/encoder_bench, so it can travel to a GPU machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classifiers.encoder_batches import length_batches  # noqa: E402
from classifiers.encoder_scorer import EncoderScorer  # noqa: E402

DATA = REPO / "benchmarks" / "_data" / "encoder_bench"
TRUTH = REPO.parent / "shared" / "data" / "extraction" / "aeb-dev" / "ground-truth.json"
TOKENIZER_SOURCE = REPO / "models" / "all-minilm-l6-v2"


def prepare(n: int = 5000, seed: int = 0) -> None:
    """Write the two document sets and the tokenizer to ``DATA``."""
    paragraphs = [p.strip() for item in json.loads(TRUTH.read_text()).values()
                  for p in item["articleBody"].split("\n") if len(p.split()) >= 5]
    rng = random.Random(seed)
    DATA.mkdir(parents=True, exist_ok=True)
    for mix in ("long", "mixed"):
        docs = []
        for _ in range(n):
            target = 700 if mix == "long" else int(math.exp(rng.uniform(math.log(30), math.log(1000))))
            words: list[str] = []
            parts = []
            while len(words) < target:
                p = rng.choice(paragraphs)
                parts.append(p)
                words += p.split()
            docs.append("\n".join(parts) if mix == "long" else " ".join(words[:target]))
        with gzip.open(DATA / f"docs_{mix}.jsonl.gz", "wt") as f:
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(TOKENIZER_SOURCE / name, DATA / name)
    print(f"wrote {DATA}")


def build_model(kind: str, folder: Path) -> Path:
    """A checkpoint folder for ``kind`` (random weights of the named shape) with the bench tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, DebertaV2Config, \
        DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    if kind == "bert-base":
        model = BertForSequenceClassification(BertConfig(num_labels=1, problem_type="regression"))
    elif kind == "deberta-v3-base":
        cfg = DebertaV2Config(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=512, relative_attention=True,
                              position_buckets=256, pos_att_type=["p2c", "c2p"], share_att_key=True,
                              norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
                              num_labels=3, layer_norm_eps=1e-7)
        model = DebertaV2ForSequenceClassification(cfg)
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(DATA / name, folder / name)
    return folder


def random_head(folder: Path, out: Path) -> Path:
    """A copy of an encoder-only checkpoint with a random regression head (ours: head.safetensors)."""
    from safetensors.torch import save_file

    from classifiers.encoder_config import EncoderConfig

    shutil.copytree(folder, out, dirs_exist_ok=True)
    hidden = EncoderConfig.from_folder(folder).hidden_size
    g = torch.Generator().manual_seed(0)
    save_file({"weight": torch.randn(1, hidden, generator=g) * 0.05, "bias": torch.zeros(1)},
              str(out / "head.safetensors"))
    (out / "head.json").write_text(json.dumps({"format": "curator.encoder_head", "version": 1, "kind": "first_token",
                                               "problem_type": "regression", "labels": []}))
    return out


def transformers_model(folder: Path, device: str, dtype: torch.dtype, head_kind: str):
    """The same checkpoint in transformers, SDPA attention (our random head bolted on for bare encoders)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    cfg = AutoConfig.from_pretrained(folder)
    if head_kind == "first_token":
        encoder = AutoModel.from_pretrained(folder, attn_implementation="sdpa", dtype=dtype).to(device).eval()
        from safetensors.torch import load_file

        head = load_file(str(folder / "head.safetensors"))
        w, b = head["weight"].to(device, torch.float32), head["bias"].to(device, torch.float32)

        def run(ids, mask):
            h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0].float()
            return h @ w.t() + b
        return run, cfg
    impl = "sdpa" if cfg.model_type == "bert" else "eager"  # transformers' DeBERTa-v2 has no SDPA path
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation=impl,
                                                               dtype=dtype).to(device).eval()
    return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.float()), cfg


def timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="write the documents and tokenizer, then stop")
    parser.add_argument("--model", default="bert-base", help="bert-base, deberta-v3-base, or a checkpoint folder")
    parser.add_argument("--mix", default="long,mixed")
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--batch-tokens", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="triton,torch,transformers")
    args = parser.parse_args()
    if args.prepare:
        prepare()
        return
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype if args.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tmp = Path(tempfile.mkdtemp(prefix="encoder-bench-"))
    if args.model in ("bert-base", "deberta-v3-base"):
        folder = build_model(args.model, tmp / args.model)
    else:
        folder = random_head(Path(args.model), tmp / "with-head")
    backends = args.backends.split(",")
    if device == "cpu" and "triton" in backends:
        backends.remove("triton")  # the interpreter is for correctness, not speed
    print(f"model {args.model} ({folder}), device {device}"
          f"{' ' + torch.cuda.get_device_name() if device == 'cuda' else ''}, {dtype_name}, "
          f"batch_tokens {args.batch_tokens}, torch {torch.__version__}")
    rows = []
    for mix in args.mix.split(","):
        with gzip.open(DATA / f"docs_{mix}.jsonl.gz", "rt") as f:
            texts = [json.loads(line)["text"] for line in f][: args.docs]
        base = EncoderScorer(folder, device=device, dtype=dtype_name, backend="torch", batch_tokens=args.batch_tokens)
        start = time.perf_counter()
        ids, truncated = base.tokenize(texts)
        tok_s = time.perf_counter() - start
        batches = [(b.rows, b.ids.to(device), b.lengths.to(device))
                   for b in length_batches(ids, args.batch_tokens, 4096, base.pad_id)]
        real = sum(len(t) for t in ids)
        padded = sum(b[1].numel() for b in batches)
        print(f"\n[{mix}] {len(texts)} documents, {real / len(texts):.0f} tokens/doc after truncation "
              f"({truncated} truncated), {len(batches)} batches, padding {1 - real / padded:.1%}; "
              f"tokenisation {len(texts) / tok_s:,.0f} docs/s")
        results: dict[str, torch.Tensor] = {}
        for backend in backends:
            if backend == "transformers":
                run, _ = transformers_model(folder, device, dtype, base.model.head.kind)

                def one_pass(run=run):
                    out = torch.empty(len(texts), base.model.head.outputs, device=device)
                    with torch.inference_mode():
                        for rows_, ids_, lengths_ in batches:
                            mask = (torch.arange(ids_.shape[1], device=device)[None] < lengths_[:, None]).long()
                            out[torch.as_tensor(rows_, device=device)] = run(ids_, mask)
                    return out
            else:
                scorer = EncoderScorer(folder, device=device, dtype=dtype_name, backend=backend,
                                       batch_tokens=args.batch_tokens)

                def one_pass(scorer=scorer):
                    out = torch.empty(len(texts), scorer.model.head.outputs, device=device)
                    with torch.inference_mode():
                        for rows_, ids_, lengths_ in batches:
                            out[torch.as_tensor(rows_, device=device)] = scorer.model.classify(ids_, lengths_,
                                                                                               scorer.ops)
                    return out
            holder = {}
            if device == "cuda":
                warm = timed(lambda: holder.setdefault("out", one_pass()), sync)  # compiles and autotunes
                times = [timed(one_pass, sync) for _ in range(args.repeats)]
            else:  # nothing to compile on the CPU: the first pass counts
                times = [timed(lambda: holder.setdefault("out", one_pass()), sync)]
                times += [timed(one_pass, sync) for _ in range(args.repeats - 1)]
                warm = times[0]
            best = sorted(times)[len(times) // 2]
            results[backend] = holder["out"].float().cpu()
            rows.append((mix, backend, len(texts) / best, best, warm))
            print(f"  {backend:12s} {len(texts) / best:10,.0f} docs/s  (median of {args.repeats}: {best:.3f} s; "
                  f"first pass {warm:.2f} s)")
        if "transformers" in results:
            ref = results["transformers"]
            for backend, out in results.items():
                if backend != "transformers":
                    err = (out - ref).abs().max().item()
                    scale = ref.abs().max().item()
                    print(f"  max |{backend} - transformers| = {err:.3e} (outputs up to {scale:.3f})")
    print("\nmix     backend        docs/s    speed-up vs transformers")
    for mix, backend, rate, _, _ in rows:
        ref = next((r for m, b, r, _, _ in rows if m == mix and b == "transformers"), None)
        ratio = f"{rate / ref:.2f}x" if ref else "-"
        print(f"{mix:7s} {backend:12s} {rate:10,.0f}    {ratio}")


if __name__ == "__main__":
    main()
