"""classify.ensemble on a sample run: time, search rounds, exactness, the five-label shares, and what a
sample-based calibration or approximate token counts would change.

The documents are real English text (the aeb-dev article bodies in ../shared/data, cut into pieces
of 200-6,000 characters at random); the three classifier scores are synthetic (no trained
classifier here): a fastText-like probability (beta), and two FineWeb-Edu-like regressions
(float32, 0-5, correlated with each other), all mildly higher for longer documents so that
weighting by tokens matters. The dataset is generated once under ``benchmarks/_data/`` (git-ignored).

The stage runs through the runner on a 2-worker LocalCluster (start-up not timed) with the default
weight (tokens, approximated without a tokenizer). Printed:

- the stage's wall time and its phases (from the ``_done`` markers' times), the search rounds;
- whether the thresholds equal an in-memory numpy computation over all documents;
- the share of documents whose ``quality_bucket`` would differ with thresholds from a 1 % sample
  (what Nemotron-CC's reference script does), averaged over 5 samples;
- with ``--tokenizer PATH`` (a tokenizer.json), the ratio of approximate to real token counts and the
  share of documents whose bucket would differ if weighted by real tokens;
- the label shares (documents and tokens) and the report written for the run.

    python benchmarks/ensemble_calibration.py [--docs 100000] [--shards 16] [--tokenizer models/x/tokenizer.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from heuristic_filters import article_chunks

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from classifiers.ensemble import ARTIFACT_FILE, document_weights, load_tokenizer  # noqa: E402
from classifiers.percentiles import bucketize, weighted_thresholds  # noqa: E402
from classifiers.quality_labels import LABEL_BUCKETS  # noqa: E402
from curator.pipeline import load_pipeline  # noqa: E402
from curator.plan import ENSEMBLE_SUMMARY  # noqa: E402
from curator.progress import ProgressBoard  # noqa: E402
from curator.report import write_report  # noqa: E402
from curator.runner import PipelineRunner  # noqa: E402

DATA_ROOT = REPO / "benchmarks" / "_data"
COLUMNS = ("ft_hq_prob", "edu_nemotron", "edu_mixtral")
LABEL_OF = np.array([next(i for i, (lo, hi) in enumerate(LABEL_BUCKETS.values()) if lo <= b <= hi) for b in range(20)])


def generate(directory: Path, docs: int, shards: int, seed: int = 0) -> None:
    """Write the sample dataset (skipped when it is there already)."""
    if (directory / "_complete").exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    text = "\n\n".join(article_chunks())
    for s in range(shards):
        n = docs // shards + (1 if s < docs % shards else 0)
        lengths = rng.integers(200, 6000, n)
        starts = rng.integers(0, len(text) - 6000, n)
        texts = [text[a:a + k] for a, k in zip(starts.tolist(), lengths.tolist())]
        size = np.log(lengths) - np.log(2000)
        nemotron = np.clip(rng.normal(1.4 + 0.3 * size, 0.8), 0, 5).astype(np.float32)
        mixtral = np.clip(0.7 * nemotron + rng.normal(0.5, 0.6, n), 0, 5).astype(np.float32)
        ft = rng.beta(0.5 + 0.1 * (size + 2), 2.0)
        table = pa.table({"id": [f"{s}-{i}" for i in range(n)], "text": texts, "ft_hq_prob": ft,
                          "edu_nemotron": nemotron, "edu_mixtral": mixtral})
        pq.write_table(table, directory / f"part-{s:05d}.parquet")
    (directory / "_complete").write_text("ok")


def load_columns(directory: Path) -> tuple[dict[str, np.ndarray], np.ndarray, pa.Table]:
    """Scores per column and approximate token weights of the whole dataset, in memory."""
    table = pq.read_table(directory, columns=["text", *COLUMNS])
    weights = document_weights(table, "tokens", "text")
    scores = {c: table.column(c).to_numpy().astype(np.float64) for c in COLUMNS}
    return scores, weights, table


def quality(scores: dict[str, np.ndarray], thresholds: dict[str, np.ndarray]) -> np.ndarray:
    return np.max(np.stack([bucketize(scores[c], thresholds[c]) for c in COLUMNS]), axis=0)


def phase_times(stage_dir: Path, start: float) -> list[tuple[str, float]]:
    """Each phase's end (its last ``_done`` marker), in order, as seconds after ``start``."""
    ends = {}
    for marker in (stage_dir / "_work").glob("*/_done/*.json"):
        phase = marker.parent.parent.name
        ends[phase] = max(ends.get(phase, 0.0), marker.stat().st_mtime - start)
    stats = [p.stat().st_mtime - start for p in (stage_dir / "_stats").glob("part-*.json")]
    out = sorted(ends.items(), key=lambda kv: kv[1])
    return out + [("output", max(stats))] if stats else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--tokenizer", help="a tokenizer.json to compare the approximate token counts with")
    args = parser.parse_args()
    data = DATA_ROOT / f"ensemble-{args.docs}-{args.shards}"
    generate(data, args.docs, args.shards)
    run_root = DATA_ROOT / "runs" / f"ensemble-{args.docs}"
    shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True)
    classifiers = ", ".join(COLUMNS)
    pipeline_file = run_root / "ensemble.yaml"
    pipeline_file.write_text(f"""
name: ensemble_sample
run_dir: run
imports: [classifiers.ensemble]
inputs:
  docs: {{dataset: {data}}}
stages:
  - {{id: ensemble, uses: classify.ensemble, from: docs, with: {{classifiers: [{classifiers}]}}}}
""")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        start = time.time()
        result = PipelineRunner(load_pipeline(str(pipeline_file), []), client, ProgressBoard(interactive=False)).run()
        wall = time.time() - start
    assert result.ok, result.failures
    stage_dir = run_root / "run" / "ensemble"
    summary = json.loads((stage_dir / ENSEMBLE_SUMMARY).read_text())
    artifact = json.loads((stage_dir / ARTIFACT_FILE).read_text())
    scores, weights, table = load_columns(data)
    print(f"{args.docs:,} documents in {args.shards} shards, {int(weights.sum()):,} tokens (approximate); "
          f"2 workers")
    print(f"classify.ensemble: {wall:.2f} s ({args.docs / wall:,.0f} docs/s), "
          f"search rounds: {summary['thresholds']['search_rounds']}")
    print("  phases ended at: " + ", ".join(f"{name} {t:.2f} s" for name, t in phase_times(stage_dir, start)))

    exact = {c: np.array(artifact["classifiers"][c]["thresholds"]) for c in COLUMNS}
    in_memory = {c: weighted_thresholds(scores[c], weights) for c in COLUMNS}
    same = all(np.array_equal(exact[c], in_memory[c]) for c in COLUMNS)
    print(f"thresholds identical to numpy over all documents in memory: {'yes' if same else 'NO'}")

    best = quality(scores, exact)
    rng = np.random.default_rng(1)
    bucket_changed, label_changed = [], []
    for _ in range(5):
        pick = rng.random(len(weights)) < 0.01
        sampled = quality(scores, {c: weighted_thresholds(scores[c][pick], weights[pick]) for c in COLUMNS})
        bucket_changed.append(float(np.mean(sampled != best)))
        label_changed.append(float(np.mean(LABEL_OF[sampled] != LABEL_OF[best])))
    print(f"thresholds from a 1 % sample ({len(weights) // 100:,} documents) instead: quality_bucket differs for "
          f"{np.mean(bucket_changed):.1%} of documents, quality_label for {np.mean(label_changed):.1%} "
          "(mean of 5 samples)")

    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
        started = time.perf_counter()
        real = document_weights(table, "tokens", "text", tokenizer)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        document_weights(table, "tokens", "text")
        approx_seconds = time.perf_counter() - started
        megabytes = sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
        print(f"counting tokens: approximate {megabytes / approx_seconds:.1f} MB/s (one thread), "
              f"{Path(args.tokenizer).parent.name} tokenizer {megabytes / seconds:.1f} MB/s (tokenizers' own threads)")
        ratio = weights / np.maximum(real, 1)
        real_best = quality(scores, {c: weighted_thresholds(scores[c], real) for c in COLUMNS})
        print(f"approximate / {Path(args.tokenizer).parent.name} tokens per document: median {np.median(ratio):.3f}, "
              f"p10 {np.percentile(ratio, 10):.3f}, p90 {np.percentile(ratio, 90):.3f}; weighting by real tokens "
              f"changes quality_bucket for {np.mean(real_best != best):.2%} of documents")

    print("labels:")
    for label in LABEL_BUCKETS:
        entry = summary["labels"][label]
        print(f"  {label:12s} buckets {entry['buckets'][0]:2d}-{entry['buckets'][1]:2d}  "
              f"{entry['documents']:8,} documents ({entry['document_share']:6.1%})  "
              f"{entry['weight']:12,} tokens ({entry['weight_share']:6.1%})")
    print(f"report: {write_report(str(run_root / 'run'))}")


if __name__ == "__main__":
    main()
