"""How many real near-duplicates MinHash LSH catches: GSM-Hard vs GSM8K test questions.

../shared/data/dedup/gsm8k-vs-gsmhard/pairs.jsonl.gz holds 1,319 pairs: each GSM8K test question
and its GSM-Hard copy, the same words with the numbers changed (often to much larger ones).
Every pair is a near-duplicate a decontamination or dedup pass should catch.

For each setting this prints, over the pairs:
- the true Jaccard of the two shingle sets (mean; fraction >= 0.8 and >= the setting's own
  threshold t = (1/bands)^(1/rows), where the catch probability is about 63%);
- the expected fraction caught, mean(1 - (1 - J^rows)^bands);
- the fraction caught: the two signatures share at least one band (``stages.minhash.band_keys``);
- other links: pairs of texts of different questions that share a band (false positives).

The first setting is the Nemotron-CC recipe and dedup.fuzzy's default (24-character shingles,
whitespace normalised, 260 permutations, 20 bands x 13 rows); the others show what helps. Those
marked (*) replace every number with one ``0`` first, in Python (dedup.fuzzy has no such option).
``--pipeline`` also runs the 2,638 texts through ``dedup.fuzzy`` (recipe parameters) with the
pipeline runner on a 2-worker LocalCluster and checks that a pair caught here ends in one cluster.

    python benchmarks/near_duplicates_gsm.py [--pipeline] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from stages.minhash import MinHashSignatures, band_keys, collision_probability, lsh_bands

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO.parent / "shared" / "data" / "dedup" / "gsm8k-vs-gsmhard" / "pairs.jsonl.gz"
FULL_NORMALIZE = ("lowercase", "punctuation", "digits", "whitespace")


@dataclass(frozen=True)
class Setting:
    label: str
    kind: str = "chars"
    ngram: int = 24
    normalize: tuple[str, ...] = ("whitespace",)
    threshold: float | None = None      # None: 20 bands x 13 rows (the recipe)

    def bands_rows(self, num_perm: int) -> tuple[int, int]:
        return (20, 13) if self.threshold is None else lsh_bands(self.threshold, num_perm)


SETTINGS = [
    Setting("recipe: 24-char, whitespace"),
    Setting("24-char, lower+punct+digits", normalize=FULL_NORMALIZE),
    Setting("5-gram words, lower+punct+digits", kind="words", ngram=5, normalize=FULL_NORMALIZE),
    Setting("24-char, whitespace, t=0.7", threshold=0.7),
    Setting("24-char, whitespace, t=0.5", threshold=0.5),
    Setting("24-char, lower+punct+digits, t=0.5", normalize=FULL_NORMALIZE, threshold=0.5),
    Setting("5-gram words, lower+punct+digits, t=0.5", kind="words", ngram=5, normalize=FULL_NORMALIZE,
            threshold=0.5),
    Setting("24-char, numbers+whitespace", normalize=("numbers", "whitespace")),
    Setting("5-gram words, lower+numbers+punct", kind="words", ngram=5,
            normalize=("lowercase", "numbers", "punctuation", "whitespace")),
]


def load_pairs() -> tuple[list[str], list[str]]:
    """(GSM8K questions, their GSM-Hard versions), pair by pair."""
    gsm8k, hard = [], []
    with gzip.open(PAIRS, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            gsm8k.append(row["gsm8k_question"])
            hard.append(row["gsmhard_input"])
    return gsm8k, hard


def jaccard(x: set[str], y: set[str]) -> float:
    union = len(x | y)
    return len(x & y) / union if union else 1.0


def evaluate(setting: Setting, gsm8k: list[str], hard: list[str], num_perm: int) -> dict:
    """The setting's figures over the pairs."""
    bands, rows = setting.bands_rows(num_perm)
    hasher = MinHashSignatures(num_perm=num_perm, seed=1, ngram=setting.ngram, kind=setting.kind,
                               normalize=setting.normalize)
    left = band_keys(hasher.compute(pa.array(gsm8k, pa.string())), bands, rows)
    right = band_keys(hasher.compute(pa.array(hard, pa.string())), bands, rows)
    caught = (left == right).any(axis=1)
    others = other_links(np.concatenate([left, right]), len(gsm8k))
    jac = np.array([jaccard(set(hasher.shingles(a)), set(hasher.shingles(b))) for a, b in zip(gsm8k, hard)])
    threshold = (1.0 / bands) ** (1.0 / rows)
    return {
        "setting": setting, "bands": bands, "rows": rows, "threshold": threshold, "jaccard": jac,
        "caught": caught, "expected": float(np.mean(collision_probability(jac, bands, rows))), "others": others,
    }


def other_links(keys: np.ndarray, n: int) -> int:
    """Distinct pairs of texts that share a band but are not a GSM8K / GSM-Hard pair.

    ``keys`` holds the band keys of the ``n`` GSM8K questions, then those of their GSM-Hard copies
    (text ``i`` and text ``i + n`` are a pair). The 1,319 questions are different problems, so these
    links are the setting's false positives here (a few may be real near-duplicate questions).
    """
    pairs: set[tuple[int, int]] = set()
    for band in range(keys.shape[1]):
        buckets: dict[int, list[int]] = {}
        for text, key in enumerate(keys[:, band].tolist()):
            buckets.setdefault(key, []).append(text)
        for members in buckets.values():
            for i, x in enumerate(members):
                for y in members[i + 1:]:
                    if y - x != n:
                        pairs.add((x, y))
    return len(pairs)


def run_pipeline(gsm8k: list[str], hard: list[str], work: Path) -> tuple[np.ndarray, dict]:
    """Run dedup.fuzzy (recipe) over the 2,638 texts; per pair, whether both ended in one cluster."""
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from timed_run import timed_run

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    shards: list[list[tuple[str, str]]] = [[] for _ in range(4)]
    for i, (a, b) in enumerate(zip(gsm8k, hard)):
        shards[i % 4].append((f"gsm8k-{i:04d}", a))          # the two halves of a pair always lie in
        shards[(i + 2) % 4].append((f"gsmhard-{i:04d}", b))  # different shards
    for s, rows in enumerate(shards):
        pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}),
                       data / f"part-{s:05d}.parquet")
    run_dir = work / "run"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        seconds, _ = timed_run(client, f"""
name: gsm-near-duplicates
inputs:
  docs: {{dataset: {data}}}
stages:
  - {{id: fuzzy, uses: dedup.fuzzy, from: docs, keep_rejected: true}}
outputs:
  kept: {{from: fuzzy, path: {work / "out"}}}
""", run_dir)
    kept = pq.read_table(str(work / "out"), columns=["id", "cluster_id"])
    rejected_dir = run_dir / "fuzzy" / "_rejected"
    tables = [kept] + [pq.read_table(p, columns=["id", "cluster_id"]) for p in sorted(rejected_dir.glob("*.parquet"))]
    cluster = {}
    for table in tables:
        cluster.update(zip(table.column("id").to_pylist(), table.column("cluster_id").to_pylist()))
    same = np.array([cluster[f"gsm8k-{i:04d}"] == cluster[f"gsmhard-{i:04d}"] for i in range(len(gsm8k))])
    summary = json.loads((run_dir / "fuzzy" / "_fuzzy_dedup.json").read_text())
    summary["seconds"] = seconds
    summary["documents_out"] = kept.num_rows
    return same, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-perm", type=int, default=260)
    parser.add_argument("--pipeline", action="store_true",
                        help="Also run the texts through dedup.fuzzy on a LocalCluster.")
    parser.add_argument("--workdir", default=None, help="Scratch folder for --pipeline (default: a temp folder).")
    args = parser.parse_args()

    gsm8k, hard = load_pairs()
    n = len(gsm8k)
    print(f"{n:,} GSM8K test questions and their GSM-Hard copies (numbers changed); {args.num_perm} permutations, "
          f"seed 1")
    header = (f"{'setting':50s} {'b x r':>7s} {'t':>5s} {'mean J':>7s} {'J>=0.8':>7s} {'J>=t':>7s} "
              f"{'expected':>9s} {'caught':>7s} {'other links':>11s}")
    print(header)
    print("-" * len(header))
    results = [evaluate(s, gsm8k, hard, args.num_perm) for s in SETTINGS]
    for r in results:
        jac = r["jaccard"]
        print(f"{r['setting'].label:50s} {r['bands']:>3d} x{r['rows']:>2d} {r['threshold']:5.2f} {jac.mean():7.3f} "
              f"{np.mean(jac >= 0.8):7.1%} {np.mean(jac >= r['threshold']):7.1%} {r['expected']:9.1%} "
              f"{r['caught'].mean():7.1%} {r['others']:11,d}")
    print("J: true Jaccard of the pair's shingle sets; t = (1/b)^(1/r), the Jaccard caught with probability "
          "about 63%;\nexpected = mean(1 - (1 - J^r)^b); caught = the two signatures share a band; "
          "other links: pairs of different questions\nthat share a band (false positives, among 2,638 texts). "
          "'numbers' turns every number into one 0 ('digits' turns each digit into 0).")

    if args.pipeline:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="curator-gsm-"))
        try:
            same, summary = run_pipeline(gsm8k, hard, work)
        finally:
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
        caught = results[0]["caught"]
        print(f"\ndedup.fuzzy (recipe defaults) through the runner, 2 workers, {summary['seconds']:.1f} s: "
              f"{summary['documents']:,} documents in, {summary['documents_out']:,} out; "
              f"{summary['candidate_links']:,} candidate links, "
              f"{summary['clusters']:,} clusters "
              f"(sizes {summary['cluster_sizes']})")
        print(f"pairs in one cluster: {same.sum():,} of {n:,} ({same.mean():.1%}); caught above: {caught.sum():,}; "
              f"caught but not in one cluster: {int((caught & ~same).sum())}; "
              f"in one cluster but not caught directly (joined through other questions): "
              f"{int((same & ~caught).sum())}")


if __name__ == "__main__":
    main()
