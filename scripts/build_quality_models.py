"""Train the small quality classifiers that the sample and Nemotron-CC pipeline files use.

Model hubs are out of reach, so the runnable pipelines score documents with classifiers we train
here, from real human labels: the HPLT v2 inspection set (../shared/data/quality/hplt-v2-inspection,
4,770 web excerpts in 22 languages labelled porn / unnatural / wrong language). A document is
``hq`` when none of the three applies, else ``lq``.

- ``models/quality/fasttext_hplt.bin``: a DCLM-style fastText classifier (``curator train fasttext``),
  with 200k hash buckets instead of DCLM's 2M so that it stays small (about 80 MB).
- ``models/quality/minilm_hplt/``: all-MiniLM-L6-v2 (``scripts/fetch_encoder_model.py``) with a
  regression head on the mean of its token states (how this sentence-transformers encoder was trained),
  fitted on the frozen encoder (``curator train encoder-head``), target 1 for hq, 0 for lq,
  on a class-balanced subset of 1,000 excerpts cut to 128 tokens (about two minutes on two CPU cores).

- ``models/quality/minilm_math/``: a stand-in for the FineMath classifier (0-5) that
  ``pipelines/nemotron_cc_math.yaml`` uses: the same encoder and head recipe, fitted to 0 for 400 HPLT
  excerpts labelled hq (web text without math), 3 for 400 GSM8K test questions with their worked
  answers (arithmetic reasoning) and 5 for 400 MATH test problems with their LaTeX solutions
  (../shared/data/contamination). It tells math with worked reasoning from other text; it does not
  judge a page's quality the way FineMath's LLM-labelled classifier does. Trained on benchmark test
  sets: fine for a demonstration, never for a model whose evaluation uses those benchmarks.

These stand in for Nemotron-CC's classifiers (two FineWeb-Edu-style regressors trained on LLM
annotations, and DCLM's fastText); point the pipeline files at your own checkpoints for real runs.
Running it again does nothing when both models are there.

    python scripts/build_quality_models.py [--data ../shared/data/quality/hplt-v2-inspection]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.hplt_inspection import hplt_rows  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "quality" / "hplt-v2-inspection"
OUT = REPO / "models" / "quality"
ENCODER = REPO / "models" / "all-minilm-l6-v2"

log = logging.getLogger("curator.build_quality_models")


def math_rows(data: Path, web_rows: list[dict], per_class: int = 400, seed: int = 0) -> list[tuple[str, float]]:
    """(text, target) pairs of the FineMath stand-in: MATH 5, GSM8K 3, HPLT hq web text 0."""
    rng = random.Random(seed)

    def read(name: str) -> list[dict]:
        path = data / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (the benchmark sets of ../shared/data/contamination)")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    competition = rng.sample(read("math_test.jsonl.gz"), per_class)
    grade_school = rng.sample(read("gsm8k_test.jsonl.gz"), per_class)
    pairs = [(f"{r['problem']}\n\n{r['solution']}", 5.0) for r in competition]
    pairs += [(f"{r['question']}\n\n{r['answer']}", 3.0) for r in grade_school]
    web = [r for r in web_rows if r["label"] == "hq"]
    pairs += [(r["text"], 0.0) for r in rng.sample(web, per_class)]
    rng.shuffle(pairs)
    return pairs


def _head_is_current(head_dir: Path) -> bool:
    """Whether ``head_dir`` holds the head this script trains now (mean pooling; earlier ones read the first token)."""
    try:
        meta = json.loads((head_dir / "head.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (head_dir / "head.safetensors").is_file() and meta.get("pooling") == "mean"


def build(data: Path, out: Path = OUT, encoder: Path = ENCODER) -> None:
    """Train whichever of the models is missing."""
    from classifiers.encoder_head import HeadTrainingSettings, train_encoder_head
    from classifiers.fasttext_quality import FastTextParams, train_quality_classifier

    rows = hplt_rows(data)
    out.mkdir(parents=True, exist_ok=True)
    fasttext_path = out / "fasttext_hplt.bin"
    if not fasttext_path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            labelled = Path(tmp) / "hplt.jsonl"
            labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
            report = train_quality_classifier(
                [labelled], fasttext_path, positive="hq", valid_fraction=0.2,
                params=FastTextParams(bucket=200_000, epoch=5, lr=0.5))
        log.info("wrote %s (held-out ROC AUC %s)", fasttext_path,
                 report.validation.roc_auc if report.validation else None)
    head_dir = out / "minilm_hplt"
    if not _head_is_current(head_dir):
        if not (encoder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{encoder}: not found; run `python scripts/fetch_encoder_model.py` first")
        rng = random.Random(0)
        hq = [r for r in rows if r["label"] == "hq"]
        lq = [r for r in rows if r["label"] == "lq"]
        subset = rng.sample(hq, 500) + rng.sample(lq, 500)
        rng.shuffle(subset)
        report = train_encoder_head(encoder, [r["text"] for r in subset],
                                    [1.0 if r["label"] == "hq" else 0.0 for r in subset], head_dir,
                                    HeadTrainingSettings(problem_type="regression", epochs=300, valid_fraction=0.2,
                                                         pooling="mean"),
                                    max_length=128, device="cpu")
        log.info("wrote %s (held out: %s)", head_dir, report["valid_metrics"])
    math_dir = out / "minilm_math"
    if not _head_is_current(math_dir):
        pairs = math_rows(data.parent.parent / "contamination", rows)
        report = train_encoder_head(encoder, [t for t, _ in pairs], [y for _, y in pairs], math_dir,
                                    HeadTrainingSettings(problem_type="regression", epochs=300, valid_fraction=0.2,
                                                         pooling="mean"),
                                    max_length=128, device="cpu")
        log.info("wrote %s (held out: %s)", math_dir, report["valid_metrics"])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the HPLT inspection set's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build(args.data)
    except FileNotFoundError as exc:
        print(f"build_quality_models: error: {exc}", file=sys.stderr)
        return 1
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
