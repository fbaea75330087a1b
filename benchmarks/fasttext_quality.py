"""The fastText quality classifier on HPLT v2's human-labelled excerpts: held-out quality and speed.

Data: ``../shared/data/quality/hplt-v2-inspection/annotated_round1.jsonl.gz``, 4,770 web excerpts
of up to about 1,000 characters in 22 languages, each labelled by a person for ``porn``,
``unnatural`` (SEO word lists, mostly boilerplate) and ``lang_correct``. Our label: ``hq`` when the
excerpt is none of porn, unnatural or in the wrong language, else ``lq`` (4,180 hq, 590 lq). All
languages are used: English alone has 200 rows with 30 lq, too few to train or measure on, and
the classifier is meant for multilingual crawls; fastText's word features are per language anyway.

(a) ``train_quality_classifier`` with a random 20 % holdout, over several split seeds: ROC AUC of
    the hq probability, accuracy / precision / recall at p >= 0.5, and the accuracy of always
    answering hq (the figure accuracy has to beat). The data set is small, so the model uses more
    epochs and a higher lr than the defaults (DCLM's, meant for ~10^5 documents or more).
(b) The speed of the ``classify.fasttext_quality`` stage's batch path (``run_batch`` on batches of
    1,000 rows, one process, one thread) on the excerpts and on longer documents (5 excerpts of
    one language joined by newlines, ~4,700 characters: the length of a typical extracted web
    page), and, for comparison, fastText's own one-at-a-time ``predict`` on the excerpts.

    python benchmarks/fasttext_quality.py [--splits 3] [--epoch 5] [--lr 0.5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from classifiers.fasttext_quality import FastTextParams, TrainingReport, prepare_text, train_quality_classifier
from classifiers.fasttext_stage import FastTextQualityScore

REPO = Path(__file__).resolve().parents[1]
HPLT_FILE = REPO.parent / "shared" / "data" / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz"
BATCH_ROWS = 1_000


def quality_label(row: dict[str, Any]) -> str:
    """``hq`` for an excerpt that is not porn, not unnatural and in its language; else ``lq``."""
    return "hq" if not row["porn"] and not row["unnatural"] and row["lang_correct"] else "lq"


def load_hplt_labelled(path: Path = HPLT_FILE) -> list[dict[str, Any]]:
    """HPLT's rows as ``{id, lang, text, label}`` with :func:`quality_label`."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"id": r["id"], "lang": r["lang"], "text": r["text"], "label": quality_label(r)} for r in rows]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSONL (the training command's input)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def long_documents(rows: list[dict[str, Any]], parts: int = 5) -> list[str]:
    """Longer documents: ``parts`` consecutive excerpts of one language joined by newlines."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_lang[row["lang"]].append(row["text"])
    return ["\n".join(texts[i:i + parts]) for texts in by_lang.values()
            for i in range(0, len(texts) - parts + 1, parts)]


def docs_per_second(stage: FastTextQualityScore, texts: list[str], repeats: int) -> float:
    """Median documents per second of ``run_batch`` over ``texts`` on this (single) thread."""
    tables = [pa.table({"id": [str(i) for i in range(start, start + len(chunk))], "text": chunk})
              for start in range(0, len(texts), BATCH_ROWS)
              for chunk in [texts[start:start + BATCH_ROWS]]]
    stage.run_batch(tables[0])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for table in tables:
            stage.run_batch(table)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def one_at_a_time_per_second(stage: FastTextQualityScore, texts: list[str], repeats: int) -> float:
    """Median documents per second of fastText's single-line ``predict`` (text preparation included)."""
    model = stage.model
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            line = prepare_text(text, stage.max_chars)
            if line:
                model.probability_one(line)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    """Train on several holdout splits, then time the stage; print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3, help="Holdout splits (seeds 0..N-1).")
    parser.add_argument("--valid-fraction", type=float, default=0.2)
    parser.add_argument("--dim", type=int, default=FastTextParams.dim)
    parser.add_argument("--bucket", type=int, default=FastTextParams.bucket)
    parser.add_argument("--epoch", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows = load_hplt_labelled()
    n_hq = sum(r["label"] == "hq" for r in rows)
    print(f"HPLT v2 excerpts: {len(rows)} rows, {len({r['lang'] for r in rows})} languages; "
          f"hq {n_hq}, lq {len(rows) - n_hq}")
    with tempfile.TemporaryDirectory(prefix="fasttext-bench-") as tmp:
        data = write_jsonl(rows, Path(tmp) / "hplt.jsonl")
        model_path = Path(tmp) / "quality.bin"
        print(f"\n(a) held-out {args.valid_fraction:.0%}; fastText dim {args.dim}, {args.bucket:,} buckets, "
              f"word bigrams, epoch {args.epoch}, lr {args.lr}, one thread")
        print("| split seed | held out (lq) | ROC AUC | accuracy | always-hq accuracy | precision | recall "
              "| train s |")
        print("|---|---|---|---|---|---|---|---|")
        reports: list[TrainingReport] = []
        for seed in range(args.splits):
            params = FastTextParams(dim=args.dim, bucket=args.bucket, epoch=args.epoch, lr=args.lr, seed=seed)
            report = train_quality_classifier([data], model_path, positive="hq", valid_fraction=args.valid_fraction,
                                              params=params)
            v = report.validation
            assert v is not None
            reports.append(report)
            print(f"| {seed} | {v.rows} ({v.negative}) | {_fmt(v.roc_auc)} | {_fmt(v.accuracy)} | "
                  f"{_fmt(v.majority_accuracy)} | {_fmt(v.precision)} | {_fmt(v.recall)} | {report.seconds:.1f} |")
        metrics = [r.validation for r in reports if r.validation is not None]
        aucs = [m.roc_auc for m in metrics if m.roc_auc is not None]
        print(f"| **mean** | | **{statistics.fmean(aucs):.3f}** (min {min(aucs):.3f}) | "
              f"{statistics.fmean(m.accuracy for m in metrics):.3f} | "
              f"{statistics.fmean(m.majority_accuracy for m in metrics):.3f} | | | |")

        # The last split's model (trained with the same parameters) is the one timed.
        stage = FastTextQualityScore(model_path=str(model_path))
        stage.setup()
        excerpts = [r["text"] for r in rows]
        longer = long_documents(rows)
        print(f"\n(b) speed on one core: one process, one thread, median of {args.repeats}; model "
              f"{model_path.stat().st_size / 1e6:,.0f} MB")
        print("| path | documents | count | mean chars | docs/s per core | MB/s per core |")
        print("|---|---|---|---|---|---|")
        for label, texts, rate_of in (
                ("stage run_batch (C++ multilinePredict)", excerpts, docs_per_second),
                ("stage run_batch (C++ multilinePredict)", longer, docs_per_second),
                ("fastText predict, one at a time", excerpts, one_at_a_time_per_second)):
            rate = rate_of(stage, texts, args.repeats)
            mean_chars = statistics.fmean(len(t) for t in texts)
            mb = statistics.fmean(len(t.encode()) for t in texts) * rate / 1e6
            kind = "HPLT excerpts" if texts is excerpts else "5 excerpts joined"
            print(f"| {label} | {kind} | {len(texts)} | {mean_chars:,.0f} | {rate:,.0f} | {mb:.1f} |")


if __name__ == "__main__":
    main()
