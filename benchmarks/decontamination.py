"""Speed of dedup.decontaminate on ~2 KB documents against the five shared benchmark test sets.

Documents: the article bodies of ../shared/data/extraction/aeb-dev cut into ~2 KB pieces, repeated
to ``--docs``, with 1 % of them carrying a GSM8K, MATH or MMLU item in the middle (so the hit path
is exercised too). Benchmarks: GSM8K, MATH, MATH-500, MMLU-STEM and HumanEval, 10,001 items.

Printed:
- the index: items, distinct n-grams, build time (once per worker process);
- per core, in this process: the word hashing alone, and the stage's ``process`` (hash + scan +
  columns) with the defaults (13-grams, min_item_words 8) and with min_item_words 1 (every short
  item matched whole, 12 more window lengths); "per core" is documents per CPU-second of this
  process (``time.process_time``, one thread), wall-clock docs/s beside it; best of ``--repeats``;
- the obvious alternative: a Python set of 13-gram tuples with the same normalisation done with
  ``str`` methods (lm-eval-harness janitor style), on ``--python-docs`` documents;
- with ``--pipeline``: the whole stage through the runner on a LocalCluster of ``--workers``
  single-threaded workers (read Parquet, scan, report, write Parquet), wall-clock docs/s.

    python benchmarks/decontamination.py [--docs 20000] [--batch 10000] [--repeats 3]
                                         [--python-docs 2000] [--pipeline] [--workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from heuristic_filters import article_chunks  # benchmarks/ is on sys.path when run as a script
from stages.decontaminate import Decontaminate
from stages.ngram_index import normalize_words, word_hashes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = DATA / "contamination"
BENCHMARKS = [("gsm8k", "gsm8k_test.jsonl.gz"), ("math", "math_test.jsonl.gz"),
              ("math500", "math500_test.jsonl.gz"), ("mmlu_stem", "mmlu_stem_test.jsonl.gz"),
              ("humaneval", "humaneval.jsonl.gz")]


def documents(n: int) -> list[str]:
    """``n`` documents of about 2 KB of article text; every 100th carries a benchmark item."""
    pieces = article_chunks()
    items = []
    for name, field in (("gsm8k_test", "question"), ("math_test", "problem"), ("mmlu_stem_test", "question")):
        with gzip.open(BENCH / f"{name}.jsonl.gz", "rt") as fh:
            items += [json.loads(line)[field] for line in fh]
    rng = random.Random(0)
    docs = []
    for i in range(n):
        text = pieces[i % len(pieces)]
        if i % 100 == 50:
            half = len(text) // 2
            text = f"{text[:half]}\n{rng.choice(items)}\n{text[half:]}"
        docs.append(text)
    return docs


def stage(**kwargs) -> Decontaminate:
    return Decontaminate(benchmarks=[{"name": n, "path": str(BENCH / f)} for n, f in BENCHMARKS], **kwargs)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeats`` calls."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def python_baseline(texts: list[str], index: set[tuple[str, ...]], n: int = 13) -> int:
    """The obvious alternative: normalise with str methods, look 13-gram tuples up in a set."""
    found = 0
    for text in texts:
        words = normalize_words(text)
        if any(tuple(words[i:i + n]) in index for i in range(len(words) - n + 1)):
            found += 1
    return found


def run_pipeline(texts: list[str], workers: int, shards: int) -> None:
    from distributed import Client, LocalCluster

    from curator.pipeline import load_pipeline
    from curator.progress import ProgressBoard
    from curator.runner import PipelineRunner

    tmp = Path(tempfile.mkdtemp(prefix="decon-bench-"))
    try:
        data = tmp / "in"
        data.mkdir()
        per = (len(texts) + shards - 1) // shards
        for s in range(shards):
            part = texts[s * per:(s + 1) * per]
            pq.write_table(pa.table({"id": [f"{s}-{i}" for i in range(len(part))], "text": part}),
                           data / f"part-{s:05d}.parquet", compression="zstd")
        bench_yaml = "\n".join(f"        - {{name: {n}, path: {BENCH / f}}}" for n, f in BENCHMARKS)
        (tmp / "p.yaml").write_text(f"""
name: bench
run_dir: run
inputs: {{docs: {{dataset: {data}}}}}
stages:
  - id: decon
    uses: dedup.decontaminate
    from: docs
    with:
      benchmarks:
{bench_yaml}
""")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            # Warm the workers (numba cache load, code point table) outside the timing.
            client.run(lambda: word_hashes(pa.array(["warm up"])))
            start = time.perf_counter()
            result = PipelineRunner(load_pipeline(str(tmp / "p.yaml")), client, ProgressBoard(interactive=False)).run()
            seconds = time.perf_counter() - start
        assert result.ok, result.failures
        report = json.loads((tmp / "run" / "decon" / "_contamination.json").read_text())
        print(f"pipeline, {workers} workers, {shards} shards: {len(texts) / seconds:,.0f} docs/s wall "
              f"({len(texts) / seconds / workers:,.0f} per worker; {seconds:.1f} s, including each worker's "
              f"index build), {report['docs_contaminated']} docs flagged")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python-docs", type=int, default=2_000)
    parser.add_argument("--pipeline", action="store_true", help="also run the stage through the runner")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()

    texts = documents(args.docs)
    mean = sum(len(t) for t in texts) / len(texts)
    batches = [pa.table({"text": texts[i:i + args.batch]}) for i in range(0, len(texts), args.batch)]
    print(f"{len(texts):,} documents, mean {mean:,.0f} characters, batches of {args.batch:,}; "
          f"best of {args.repeats}")

    start = time.perf_counter()
    default = stage()
    default.setup()
    index = default.index
    print(f"index: {index.n_items:,} items, {index.size:,} distinct n-grams, short lengths "
          f"{index.short.tolist()}; built in {time.perf_counter() - start:.2f} s")
    loose = stage(min_item_words=1)
    loose.setup()
    default.process(batches[0].slice(0, 100))  # compile (or load the numba cache) before timing

    def per_core(label: str, fn) -> None:
        cpu, wall = timed(fn, args.repeats)
        print(f"{label:44s} {len(texts) / cpu:9,.0f} docs/s per core   ({len(texts) / wall:,.0f} wall)")

    per_core("word hashing alone", lambda: [word_hashes(b.column("text")) for b in batches])
    flagged = sum(sum(1 for x in default.process(b).column("contamination").to_pylist() if x) for b in batches)
    per_core(f"stage, defaults ({flagged} docs flagged)", lambda: [default.process(b) for b in batches])
    flagged = sum(sum(1 for x in loose.process(b).column("contamination").to_pylist() if x) for b in batches)
    per_core(f"stage, min_item_words 1 ({flagged} flagged)", lambda: [loose.process(b) for b in batches])

    # The obvious alternative, 13-grams only (no short items), on fewer documents.
    grams: set[tuple[str, ...]] = set()
    for bench in default.read_items():
        for segments in bench.segments:
            for seg in segments:
                words = normalize_words(seg)
                grams.update(tuple(words[i:i + 13]) for i in range(len(words) - 12))
    sample = texts[: args.python_docs]
    cpu, _ = timed(lambda: python_baseline(sample, grams), 1)
    print(f"{'Python set of 13-gram tuples':44s} {len(sample) / cpu:9,.0f} docs/s per core   "
          f"({python_baseline(sample, grams)} of {len(sample)} flagged)")

    if args.pipeline:
        run_pipeline(texts, args.workers, args.shards)


if __name__ == "__main__":
    main()
