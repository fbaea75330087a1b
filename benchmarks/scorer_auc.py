"""The sample hybrid LM scorer on held-back HPLT v2 excerpts: does lower perplexity mean High?

Data: ``../shared/data/quality/hplt-v2-inspection/annotated_round1.jsonl.gz`` (4,770 web excerpts in 22
languages labelled by people; ``hq`` when not porn, not unnatural and in the right language, else ``lq``).
The scorer (``models/scorer/hplt_hybrid``, built by ``scripts/build_scorer_model.py``) was trained on 80% of
the hq excerpts; its training.json lists the held-back ones (the other 20% of hq, all of lq), which are
scored here by mean NLL per token (the ``HybridScorer`` of the ``classify.perplexity`` stage, first
``--max-tokens`` tokens, plain-PyTorch path on CPU).

Printed: the ROC AUC of "lower mean NLL = hq" over all held-back excerpts, the mean of the per-language
AUCs (each language's own ranking: languages differ in NLL level, and lq is 2% of some and 25% of
others), per-language counts and AUCs, and the scoring speed.

    python benchmarks/scorer_auc.py [--model models/scorer/hplt_hybrid] [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# benchmarks/kernels.py would shadow the kernels package that the model imports: drop this folder from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from classifiers.hybrid_scorer import HybridScorer, PerplexityStats  # noqa: E402
HPLT_FILE = REPO.parent / "shared" / "data" / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz"
DEFAULT_MODEL = REPO / "models" / "scorer" / "hplt_hybrid"


def roc_auc(positive: list[float], negative: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney); None when a class is empty."""
    if not positive or not negative:
        return None
    scored = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum, i = 0.0, 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2  # 1-based ranks i+1 .. j
        rank_sum += mean_rank * sum(label for _, label in scored[i:j])
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def held_back_rows(model: Path, data: Path) -> list[dict]:
    """The HPLT rows the model was not trained on (ids from its training.json), with ``hq``/``lq`` labels."""
    meta = json.loads((model / "training.json").read_text())
    ids = set(meta["source"]["held_back_ids"])
    rows = []
    with gzip.open(data, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["id"] in ids:
                bad = bool(r["porn"]) or bool(r["unnatural"]) or str(r["lang_correct"]) == "0"
                rows.append({"lang": r["lang"], "text": r["text"], "label": "lq" if bad else "hq"})
    return rows


def main() -> None:
    """Score the held-back excerpts and print the AUC figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=HPLT_FILE)
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens scored per excerpt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = json.loads((args.model / "training.json").read_text())
    report = meta["report"]
    rows = held_back_rows(args.model, args.data)
    scorer = HybridScorer(args.model, max_tokens=args.max_tokens, window_tokens=args.max_tokens + 1,
                          device="cpu", dtype="float32", backend="torch")
    stats = PerplexityStats()
    start = time.perf_counter()
    scores = scorer.score_texts([r["text"] for r in rows], stats)
    seconds = time.perf_counter() - start
    # "lower NLL = hq": the score of hq-ness is -mean NLL.
    by_lang: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"hq": [], "lq": []})
    for row, score in zip(rows, scores):
        if score.tokens:
            by_lang[row["lang"]][row["label"]].append(-score.mean_nll)
    hq = [s for d in by_lang.values() for s in d["hq"]]
    lq = [s for d in by_lang.values() for s in d["lq"]]
    print(f"model: {args.model} ({report['parameters']:,} parameters, {report['steps']} steps, "
          f"{report['tokens_seen']:,} tokens, {report['seconds']:.0f}s training, held-out loss "
          f"{report['initial_held_out_loss']:.3f} -> {report['held_out_loss']:.3f})")
    print(f"held-back excerpts: {len(hq)} hq, {len(lq)} lq; scored {stats.tokens:,} tokens in {seconds:.1f}s "
          f"({stats.tokens / seconds:,.0f} tokens/s, CPU, {args.threads} threads)")
    print(f"mean NLL: hq {-statistics.mean(hq):.3f}, lq {-statistics.mean(lq):.3f} nats/token")
    print(f"ROC AUC (lower perplexity = hq), all languages pooled: {roc_auc(hq, lq):.3f}")
    per_lang = {lang: roc_auc(d["hq"], d["lq"]) for lang, d in sorted(by_lang.items())}
    defined = [a for a in per_lang.values() if a is not None and len(by_lang) > 0]
    print(f"ROC AUC, mean of per-language AUCs ({len(defined)} languages): {statistics.mean(defined):.3f}")
    print(f"{'lang':<10} {'hq':>4} {'lq':>4} {'mean NLL hq':>12} {'lq':>7} {'AUC':>6}")
    for lang, d in sorted(by_lang.items()):
        auc = per_lang[lang]
        nll_hq = -statistics.mean(d["hq"]) if d["hq"] else math.nan
        nll_lq = -statistics.mean(d["lq"]) if d["lq"] else math.nan
        print(f"{lang:<10} {len(d['hq']):>4} {len(d['lq']):>4} {nll_hq:>12.3f} {nll_lq:>7.3f} "
              f"{'n/a' if auc is None else f'{auc:.3f}':>6}")


if __name__ == "__main__":
    main()
