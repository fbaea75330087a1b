"""Train the sample pipeline's hybrid LM scorer: ``models/scorer/hplt_hybrid/``.

A small Nemotron-H model (Mamba2, attention and MLP layers, pattern ``M-M*M-``, hidden 128, about 1.4M
parameters) and its byte-level BPE tokenizer, trained from scratch on the HPLT v2 inspection excerpts
that people labelled ``hq`` (../shared/data/quality/hplt-v2-inspection; ``hq`` / ``lq`` as in
scripts/build_quality_models.py). 20% of the hq excerpts (seeded) and every ``lq`` excerpt are held back
for ``benchmarks/scorer_auc.py``; their ids are in training.json.

English only (``eng_Latn``: 136 training excerpts), because ``sample.yaml`` keeps English pages only and
because it ranks better: on its held-back English excerpts, ROC AUC 0.85 ("lower perplexity = hq", 34 hq
vs 30 lq) against 0.40 on English (28 hq vs 30 lq) for the same model trained on all 22 languages (3,375
excerpts, 300 steps; over all its held-back excerpts 0.55 pooled, 0.61 as the mean of per-language
AUCs). Much of HPLT's lq is text in the wrong language, which a monolingual model finds improbable and a
multilingual one does not.

100 steps of 8 x 256 tokens: about a minute on 2 CPU cores (training stops after 10 minutes whatever the
steps, on a very busy machine). Running it again does nothing when the model is there.

    python scripts/build_scorer_model.py [--data ../shared/data/quality/hplt-v2-inspection] [--out DIR]
        [--languages eng_Latn|all] [--steps 100]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.hplt_inspection import hplt_rows  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "quality" / "hplt-v2-inspection"
OUT = REPO / "models" / "scorer" / "hplt_hybrid"
HELD_BACK_HQ = 0.2
SPLIT_SEED = 0
TRAIN_STEPS = 100
LANGUAGES = ("eng_Latn",)
MAX_TRAIN_SECONDS = 600.0

log = logging.getLogger("curator.build_scorer_model")


def split_hplt(rows: list[dict], seed: int = SPLIT_SEED) -> tuple[list[dict], list[dict]]:
    """(training rows, held-back rows): a seeded 20% of the hq rows and all lq rows are held back."""
    hq = [r for r in rows if r["label"] == "hq"]
    held = set(random.Random(seed).sample(range(len(hq)), round(len(hq) * HELD_BACK_HQ)))
    train = [r for i, r in enumerate(hq) if i not in held]
    held_back = [r for i, r in enumerate(hq) if i in held] + [r for r in rows if r["label"] == "lq"]
    return train, held_back


def is_built(out: Path) -> bool:
    """Whether ``out`` holds a complete scorer checkpoint."""
    return all((out / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json",
                                                   "training.json"))


def build(data: Path, out: Path = OUT, steps: int = TRAIN_STEPS, max_train_seconds: float = MAX_TRAIN_SECONDS,
          languages: tuple[str, ...] = LANGUAGES) -> Path:
    """Train the scorer into ``out`` unless it is there (on the excerpts of ``languages`` only, when given)."""
    if is_built(out):
        log.info("%s: already built", out)
        return out
    from classifiers.scorer_builder import ScorerShape, train_scorer
    from classifiers.scorer_training import TrainingSettings

    rows = [r for r in hplt_rows(data) if not languages or r["lang"] in languages]
    if not rows:
        raise FileNotFoundError(f"{data}: no excerpt in the languages {', '.join(languages)}")
    train, held_back = split_hplt(rows)
    held_hq = [r for r in held_back if r["label"] == "hq"]
    shape = ScorerShape(hidden=128, layers="M-M*M-", vocab_size=8192, head_dim=64, ssm_state_size=64)
    settings = TrainingSettings(seq_len=256, batch_size=8, steps=steps, max_seconds=max_train_seconds,
                                learning_rate=3e-3, warmup_steps=20, eval_every=50, eval_windows=32, seed=0)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    result = train_scorer([r["text"] for r in train], tmp, shape, settings,
                          held_out_texts=[r["text"] for r in held_hq], device="cpu",
                          source={"data": str(data / "annotated_round1.jsonl.gz"), "label": "hq",
                                  "split_seed": SPLIT_SEED, "languages": list(languages),
                                  "held_back_hq_fraction": HELD_BACK_HQ,
                                  "held_back_ids": sorted(r["id"] for r in held_back)})
    tmp.rename(out)  # a killed run leaves no half-written model behind
    report = result.report
    log.info("wrote %s: %s parameters, %d steps, %d tokens, held-out loss %.3f -> %.3f, %.0fs (training %.0fs, "
             "%.0f CPU seconds)", out, f"{report.parameters:,}", report.steps, report.tokens_seen,
             report.initial_held_out_loss or 0.0, report.held_out_loss or 0.0, result.seconds, report.seconds,
             report.cpu_seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the HPLT inspection set's folder")
    parser.add_argument("--out", type=Path, default=OUT, help="the checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS, help="training steps")
    parser.add_argument("--max-train-seconds", type=float, default=MAX_TRAIN_SECONDS,
                        help="stop training after this long even if the steps are not done (a busy machine)")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help="comma-separated HPLT languages (eng_Latn,rus_Cyrl,...), or all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build(args.data, args.out, args.steps, args.max_train_seconds,
              () if args.languages == "all" else tuple(lang for lang in args.languages.split(",") if lang))
    except FileNotFoundError as exc:
        print(f"build_scorer_model: error: {exc}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
