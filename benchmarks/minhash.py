"""MinHash signature speed per core: ours vs datasketch vs datatrove on ~2 KB real-text documents.

The documents are cut from the real text in ../shared/data: aeb-dev article bodies, HPLT v2
inspection excerpts (22 languages), MATH problems and solutions, GSM8K questions and answers and
MMLU-STEM questions, one stream of about 10 M characters. It is cut into pieces of about 2,000
characters (whole words) and re-cut from a shifted start for every pass over it, so no two
documents are the same. Every method gets the same documents.

- **ours**: :class:`stages.minhash.MinHashSignatures`, in batches of ``--batch`` Arrow strings,
  in this process (one thread; numba compiled before timing). Nemotron-CC's configuration (24
  character shingles, 260 permutations), and datatrove's (word 5-grams, lower case, punctuation
  removed, digits normalised) with its permutation counts for a like-for-like comparison.
- **datasketch**: one ``MinHash`` per document, ``update_batch`` of its 24 character shingles as
  UTF-8 bytes (whitespace normalised in Python), the permutations drawn once and shared (the
  fast way; a new MinHash per document draws them again, shown separately). On ``--ds-docs``
  documents spread evenly over all of them. With ``hashfunc=shingle_hash`` its signatures must
  equal ours: checked on ``--check-docs`` documents and printed.
- **datatrove**: ``MinhashDedupSignature`` run by the Python of a separate environment
  (``scripts/setup_datatrove_bench.sh`` makes ``benchmarks/.venv-datatrove``) over ``--dt-docs``
  of the same documents (spread evenly over them), written to JSONL. Its defaults (word 5-grams
  through its English spaCy tokenizer, 14 buckets x 8 hashes, 64-bit xxhash), the same with
  20 x 13 = 260 hashes, and that with ``str.split`` as the tokenizer (not one datatrove ships;
  its signature step at its fastest). Timed as its per-document signature computation alone
  (``get_shingles`` + ``get_signature``, what its ``run`` does per document; median of
  ``--repeats``) and as one whole ``run`` (which also writes and then sorts one file per bucket).

"Per core" is documents per CPU-second of the process doing the work (``time.process_time``;
every method runs in one thread), so other load on the machine affects it less than wall time.
Wall-clock docs/s are printed beside it.

    scripts/setup_datatrove_bench.sh     # once; without it the datatrove rows are skipped, saying why
    python benchmarks/minhash.py [--docs 20000] [--batch 1000] [--ds-docs 1000] [--dt-docs 2000]
                                 [--skip-datatrove] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from stages.minhash import MinHashSignatures, legacy_permutations
from stages.shingles import shingle_hash

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DATATROVE_PYTHON = REPO / "benchmarks" / ".venv-datatrove" / "bin" / "python"
DOC_CHARS = 2000
WORD_NORMALIZE = ("lowercase", "punctuation", "digits", "whitespace")


# ---------------------------------------------------------------------------------------------
# The documents


def _jsonl(relative: str) -> list[dict]:
    with gzip.open(DATA / relative, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def text_pool() -> str:
    """All the real text, in a fixed order, as one string (pieces separated by blank lines)."""
    pieces = [item["articleBody"] for item in json.loads((DATA / "extraction" / "aeb-dev" / "ground-truth.json")
                                                         .read_text(encoding="utf-8")).values()]
    pieces += [row["text"] for row in _jsonl("quality/hplt-v2-inspection/annotated_round1.jsonl.gz")]
    pieces += [row["problem"] + "\n\n" + row["solution"] for row in _jsonl("contamination/math_test.jsonl.gz")]
    pieces += [row["question"] + "\n\n" + row["answer"] for row in _jsonl("contamination/gsm8k_test.jsonl.gz")]
    pieces += [row["question"] + "\n" + "\n".join(row["choices"])
               for row in _jsonl("contamination/mmlu_stem_test.jsonl.gz")]
    return "\n\n".join(p.strip() for p in pieces if p and p.strip())


def documents(n: int, size: int = DOC_CHARS) -> list[str]:
    """``n`` different documents of about ``size`` characters cut from the text pool.

    Pass ``p`` over the pool cuts it every ``size`` characters starting ``p * 487`` characters in
    (so passes never cut at the same places); a piece loses its partial first and last words
    (where there is a space within 100 characters of its ends).
    """
    pool = text_pool()
    docs: list[str] = []
    p = 0
    while len(docs) < n:
        start = (p * 487) % size
        while start + size <= len(pool) and len(docs) < n:
            piece = pool[start:start + size]
            head = piece.find(" ", 0, 100)  # -1 (keep the start) in text without spaces
            tail = piece.rfind(" ", size - 100)
            docs.append(piece[head + 1:tail if tail > 0 else size].strip())
            start += size
        p += 1
    return docs


def spread(docs: list[str], k: int) -> list[str]:
    """``k`` documents evenly spaced over ``docs`` (the same mix of sources as all of them)."""
    k = min(k, len(docs))
    return [docs[i * len(docs) // k] for i in range(k)]


# ---------------------------------------------------------------------------------------------
# Timing


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``repeats`` calls of ``fn``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def time_ours(docs: list[str], hasher: MinHashSignatures, batch: int, repeats: int) -> tuple[float, float]:
    """(docs per CPU-second, docs per wall-second) of ``hasher.compute`` over Arrow batches."""
    batches = [pa.array(docs[i:i + batch], pa.string()) for i in range(0, len(docs), batch)]
    hasher.compute(batches[0][:50])  # numba: load or compile before timing

    def run() -> None:
        for b in batches:
            hasher.compute(b)

    cpu, wall = timed(run, repeats)
    return len(docs) / cpu, len(docs) / wall


_WS = re.compile(r"\s+")


def char_shingles(text: str, ngram: int = 24) -> list[str]:
    """Whitespace-normalised character shingles, in Python (the datasketch side's own shingling)."""
    text = _WS.sub(" ", text).strip()
    if len(text) <= ngram:
        return [text] if text else []
    return [text[i:i + ngram] for i in range(len(text) - ngram + 1)]


def time_datasketch(docs: list[str], repeats: int, scheme: str, share_permutations: bool = True,
                    hashfunc: Callable | None = None) -> tuple[float, float]:
    """(docs per CPU-second, docs per wall-second): one MinHash per document, shingled here."""
    from datasketch import MinHash

    template = MinHash(num_perm=260, seed=1, scheme=scheme)
    kwargs: dict = {"num_perm": 260, "seed": 1, "scheme": scheme}
    if share_permutations:
        kwargs["permutations"] = template.permutations
    if hashfunc is not None:
        kwargs["hashfunc"] = hashfunc
    encode = hashfunc is None  # datasketch's SHA-1 wants bytes; shingle_hash takes str

    def run() -> None:
        for text in docs:
            m = MinHash(**kwargs)
            shingles = char_shingles(text)
            m.update_batch([s.encode("utf-8") for s in shingles] if encode else shingles)

    for text in docs[:5]:  # warm caches
        MinHash(**kwargs).update_batch([s.encode("utf-8") for s in char_shingles(text)] if encode
                                       else char_shingles(text))
    cpu, wall = timed(run, repeats)
    return len(docs) / cpu, len(docs) / wall


def check_equal_to_datasketch(docs: list[str]) -> tuple[int, int]:
    """(documents checked, documents whose signature equals datasketch's legacy + shingle_hash)."""
    from datasketch import MinHash

    hasher = MinHashSignatures(num_perm=260, seed=1, ngram=24, kind="chars")
    ours = hasher.compute(pa.array(docs, pa.string()))
    a, b = legacy_permutations(260, 1)
    same = 0
    for i, text in enumerate(docs):
        m = MinHash(num_perm=260, seed=1, scheme="legacy", hashfunc=shingle_hash, permutations=(a, b))
        shingles = hasher.shingles(text)
        if shingles:
            m.update_batch(shingles)
        same += int(np.array_equal(ours[i].astype(np.uint64), m.hashvalues))
    return len(docs), same


# ---------------------------------------------------------------------------------------------
# datatrove, in its own environment

DATATROVE_RUNNER = textwrap.dedent('''
    """Times datatrove's MinHash signature step; prints one JSON line per configuration."""
    import json, sys, tempfile, time
    from importlib.metadata import version

    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer


    class SplitTokenizer(WordTokenizer):
        """str.split as the word tokenizer: not one datatrove ships, its fastest possible one."""

        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]


    docs_path, configs, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    with open(docs_path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    for spec in configs:
        config = MinhashConfig(n_grams=spec["n_grams"], num_buckets=spec["buckets"],
                               hashes_per_bucket=spec["rows"],
                               hash_config=HashConfig(precision=spec["precision"], hash_fc=spec["hash_fc"]))
        out = tempfile.mkdtemp(prefix="dt-minhash-")
        language = SplitTokenizer() if spec.get("tokenizer") == "split" else "eng"
        step = MinhashDedupSignature(output_folder=out, config=config, language=language)
        for text in texts[:20]:  # loads spaCy's tokenizer
            step.get_signature(step.get_shingles(text))

        def compute():
            for text in texts:
                shingles = step.get_shingles(text)
                if shingles.size != 0:
                    step.get_signature(shingles)

        def full_run():
            step.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)

        result = {"spec": spec, "docs": len(texts), "version": version("datatrove"),
                  "tokenizer": type(step.word_tokenizer).__name__}
        for name, fn, times in (("compute", compute, repeats), ("run", full_run, 1)):
            cpu, wall = [], []
            for _ in range(times):
                c0, w0 = time.process_time(), time.perf_counter()
                fn()
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
            result[name] = {"cpu": median(cpu), "wall": median(wall)}
        print(json.dumps(result), flush=True)
''')

DATATROVE_CONFIGS = [
    # datatrove's defaults: word 5-grams, 14 buckets x 8 hashes, 64-bit xxhash.
    {"label": "defaults: 5-gram words, 14x8=112, xxhash64", "n_grams": 5, "buckets": 14, "rows": 8,
     "precision": 64, "hash_fc": "xxhash"},
    # Nemotron-CC's permutation count and banding, everything else datatrove's.
    {"label": "5-gram words, 20x13=260, xxhash64", "n_grams": 5, "buckets": 20, "rows": 13,
     "precision": 64, "hash_fc": "xxhash"},
    # The same with str.split for spaCy: datatrove's signature step at its fastest.
    {"label": "5-gram words, 20x13=260, xxhash64, str.split tokenizer", "n_grams": 5, "buckets": 20,
     "rows": 13, "precision": 64, "hash_fc": "xxhash", "tokenizer": "split"},
]


def run_datatrove(docs: list[str], repeats: int, timeout: float) -> tuple[list[dict], str | None]:
    """datatrove's results per configuration, or ([], why it could not run)."""
    if not DATATROVE_PYTHON.exists():
        return [], f"{DATATROVE_PYTHON.relative_to(REPO)} not found: run scripts/setup_datatrove_bench.sh"
    with tempfile.TemporaryDirectory(prefix="minhash-bench-") as tmp:
        docs_path = Path(tmp) / "docs.jsonl"
        with docs_path.open("w", encoding="utf-8") as fh:
            for text in docs:
                fh.write(json.dumps({"text": text}) + "\n")
        runner = Path(tmp) / "datatrove_runner.py"
        runner.write_text(DATATROVE_RUNNER)
        env = dict(os.environ, LOGURU_LEVEL="ERROR", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", PYTHONPATH="")
        try:
            proc = subprocess.run([str(DATATROVE_PYTHON), str(runner), str(docs_path), json.dumps(DATATROVE_CONFIGS),
                                   str(repeats)], capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [], f"datatrove did not finish in {timeout:.0f} s"
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(results) != len(DATATROVE_CONFIGS):
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return results, f"datatrove failed (exit {proc.returncode}):\n{tail}"
    return results, None


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000, help="Documents for ours (and datatrove).")
    parser.add_argument("--batch", type=int, default=1000, help="Documents per Arrow batch for ours.")
    parser.add_argument("--ds-docs", type=int, default=1000,
                        help="N documents, evenly spaced over all, for datasketch (rates extrapolate).")
    parser.add_argument("--dt-docs", type=int, default=2000,
                        help="N documents, evenly spaced over all, for datatrove (0: all of --docs).")
    parser.add_argument("--check-docs", type=int, default=100,
                        help="Documents whose signatures are compared with datasketch's.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per method; the median is shown.")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--datatrove-timeout", type=float, default=3600)
    args = parser.parse_args()

    docs = documents(args.docs)
    chars = np.array([len(d) for d in docs])
    nbytes = np.array([len(d.encode("utf-8")) for d in docs])
    print(f"{len(docs):,} documents: characters mean {chars.mean():,.0f} median {np.median(chars):,.0f}; "
          f"UTF-8 bytes mean {nbytes.mean():,.0f} median {np.median(nbytes):,.0f}; "
          f"{len(set(docs)):,} distinct")
    ds_docs = spread(docs, args.ds_docs)
    dt_docs = spread(docs, args.dt_docs) if args.dt_docs else docs
    rows: list[tuple[str, str, int, float, float, str]] = []  # method, config, docs, per core, wall, vs key

    recipe = MinHashSignatures(num_perm=260, seed=1, ngram=24, kind="chars")
    rate = time_ours(docs, recipe, args.batch, args.repeats)
    ours = {"chars": rate[0]}
    rows.append(("ours", "24-char shingles, 260 perms", len(docs), *rate, "chars"))
    for perms in sorted({spec["buckets"] * spec["rows"] for spec in DATATROVE_CONFIGS}):
        hasher = MinHashSignatures(num_perm=perms, seed=1, ngram=5, kind="words", normalize=WORD_NORMALIZE)
        rate = time_ours(docs, hasher, args.batch, args.repeats)
        ours[f"words{perms}"] = rate[0]
        rows.append(("ours", f"5-gram words, lower/punct/digits, {perms} perms", len(docs), *rate, f"words{perms}"))

    n_checked, n_same = check_equal_to_datasketch(spread(docs, args.check_docs))
    rows.append(("datasketch", "legacy, SHA-1, 24-char, 260 (permutations shared)", len(ds_docs),
                 *time_datasketch(ds_docs, args.repeats, "legacy"), "chars"))
    rows.append(("datasketch", "legacy, SHA-1, 24-char, 260 (new MinHash() per doc)", len(ds_docs),
                 *time_datasketch(ds_docs, args.repeats, "legacy", share_permutations=False), "chars"))
    rows.append(("datasketch", "affine32 (its default), SHA-1, 24-char, 260", len(ds_docs),
                 *time_datasketch(ds_docs, args.repeats, "affine32"), "chars"))
    few = ds_docs[:max(1, len(ds_docs) // 10)]
    rows.append(("datasketch", "legacy, hashfunc=shingle_hash (= ours), 24-char, 260", len(few),
                 *time_datasketch(few, 1, "legacy", hashfunc=shingle_hash), "chars"))

    dt_note = None
    if args.skip_datatrove:
        dt_note = "datatrove skipped (--skip-datatrove)"
    else:
        results, dt_note = run_datatrove(dt_docs, args.repeats, args.datatrove_timeout)
        for result in results:
            spec = result["spec"]
            perms = spec["buckets"] * spec["rows"]
            for name, what in (("compute", "signatures only"), ("run", "whole run(), 1 run")):
                t = result[name]
                rows.append((f"datatrove {result['version']}", f"{spec['label']}, {what}", result["docs"],
                             result["docs"] / t["cpu"], result["docs"] / t["wall"], f"words{perms}"))

    print(f"\none process, one thread; median of {args.repeats} runs (datasketch with shingle_hash: 1 run); "
          f"'ours / this' compares with ours in the same shingle configuration")
    header = (f"{'method':18s} {'configuration':72s} {'docs':>7s} {'docs/s/core':>12s} {'docs/s wall':>12s} "
              f"{'ours / this':>11s}")
    print(header)
    print("-" * len(header))
    for method, config, n, per_core, wall, key in rows:
        ratio = "" if method == "ours" else f"{ours[key] / per_core:10.1f}x"
        print(f"{method:18s} {config:72s} {n:7,d} {per_core:12,.0f} {wall:12,.0f} {ratio:>11s}")
    print(f"\nours == datasketch(scheme='legacy', hashfunc=shingle_hash) on {n_same} of {n_checked} documents")
    if dt_note:
        print(f"\ndatatrove not measured: {dt_note}" if not args.skip_datatrove else f"\n{dt_note}")
    ds = next(r for r in rows if r[0] == "datasketch")
    print(f"\ngoal >= 30x datasketch: {ours['chars'] / ds[3]:.1f}x (legacy SHA-1, permutations shared)")
    dt = [r for r in rows if r[0].startswith("datatrove") and r[1].endswith("signatures only")]
    for r in dt:
        print(f"goal >= 2x datatrove:   {ours[r[5]] / r[3]:.1f}x ({r[1]})")


if __name__ == "__main__":
    sys.exit(main())
