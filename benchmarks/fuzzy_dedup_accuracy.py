"""dedup.fuzzy accuracy on planted near-duplicates: LSH recall against theory, precision against
exact Jaccard, with verification off and on.

A planted set (:mod:`planted_duplicates`, default 100 K documents, 10% in clusters of 2-10 whose
copies are at Jaccard 0.5-1.0 to their source) runs through ``curator run`` twice with the recipe's
parameters (24-character shingles, 260 permutations, 20 bands x 13 rows, threshold 0.8), once with
``verify: false`` and once with ``verify: true``. Then, for every planted pair (source-copy and
copy-copy, with their true Jaccard):

- **candidate recall**: the fraction of pairs whose two documents share a band key, computed from
  their signatures (``MinHashSignatures`` + ``band_keys``, on the texts as stored), against the
  theory ``1 - (1 - s^13)^20`` averaged over the pairs of each similarity band; goal: within 2
  points in every band (the binomial standard error is printed beside it);
- **cluster recall**: the fraction that end up in the same output cluster (``cluster_id`` of kept
  and rejected rows), without and with verification.

Precision against exact Jaccard (shingle sets, computed here independently of the stage):

- **pair precision**: of the pairs the stage merged (with verification, the rows of
  ``_work/verified`` at or above the threshold; without, the candidate links of ``_work/edges``),
  the fraction whose true Jaccard reaches 0.8; goal >= 0.99 with verification;
- **cluster precision**: of all pairs of documents put in the same cluster, the fraction whose true
  Jaccard reaches 0.8 (transitivity joins copies that are each close to their source but not to
  each other).

    python benchmarks/fuzzy_dedup_accuracy.py [--docs 100000] [--workers 2] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fuzzy_dedup_scale import DATA_ROOT, pipeline_yaml, print_phases, read_clusters, run_curator
from planted_duplicates import PlantedConfig, default_dir, generate, jaccard_pairs, read_truth
from stages.minhash import MinHashSignatures, band_keys, collision_probability

BANDS, ROWS, NUM_PERM, NGRAM = 20, 13, 260, 24
SIM_BANDS = [(0.0, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.75), (0.75, 0.8), (0.8, 0.85),
             (0.85, 0.9), (0.9, 0.95), (0.95, 1.0), (1.0, 1.01)]
MASK = np.uint64(0xFFFFFFFF)


class Corpus:
    """Texts of a planted set by node, and exact Jaccard of any pair (planted pairs from the truth
    file, others computed from the texts)."""

    def __init__(self, out: Path, cfg: PlantedConfig) -> None:
        self.out, self.cfg = out, cfg
        self.members, self.pairs = read_truth(out)
        na, nb = self.pairs.column("node_a").to_numpy(), self.pairs.column("node_b").to_numpy()
        self.known = dict(zip(zip(np.minimum(na, nb).tolist(), np.maximum(na, nb).tolist()),
                              self.pairs.column("jaccard").to_numpy().tolist()))
        self.computed = 0

    def node_id(self, nodes: np.ndarray) -> list[str]:
        nodes = np.asarray(nodes, np.uint64)
        pos = (nodes >> np.uint64(32)) * np.uint64(self.cfg.shard_rows) + (nodes & MASK)
        return [f"d{int(p):09d}" for p in pos]

    def texts(self, nodes: np.ndarray) -> pa.Array:
        """Texts of ``nodes`` in that order."""
        nodes = np.asarray(nodes, np.uint64)
        shard = (nodes >> np.uint64(32)).astype(np.int64)
        row = (nodes & MASK).astype(np.int64)
        chunks, where = [], []
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            col = pq.read_table(self.out / "data" / f"part-{s:05d}.parquet", columns=["text"]).column("text")
            chunks.append(col.take(pa.array(row[sel])).combine_chunks())
            where.append(sel)
        if not chunks:
            return pa.array([], pa.string())
        order = np.argsort(np.concatenate(where))
        return pa.concat_arrays(chunks).take(pa.array(order))

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """True Jaccard of node pairs."""
        a, b = np.asarray(a, np.uint64), np.asarray(b, np.uint64)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        out = np.array([self.known.get(k, np.nan) for k in zip(lo.tolist(), hi.tolist())], np.float64)
        todo = np.flatnonzero(np.isnan(out))
        if len(todo):
            nodes, inv = np.unique(np.concatenate([lo[todo], hi[todo]]), return_inverse=True)
            out[todo] = jaccard_pairs(self.texts(nodes), inv[:len(todo)], inv[len(todo):], NGRAM)
            self.computed += len(todo)
        return out


def pct(x: float) -> str:
    return "    -" if np.isnan(x) else f"{100 * x:5.1f}"


def recall_table(corpus: Corpus, shares: np.ndarray, same: dict[str, np.ndarray], threshold: float) -> list[dict]:
    jac = corpus.pairs.column("jaccard").to_numpy()
    with_source = corpus.pairs.column("member_a").to_numpy() == 0
    rows = []
    for kind, sel in (("source-copy", with_source), ("copy-copy", ~with_source), ("all", np.ones_like(with_source))):
        for lo, hi in SIM_BANDS:
            s = sel & (jac >= lo) & (jac < hi)
            n = int(s.sum())
            if not n:
                continue
            p = collision_probability(jac[s], BANDS, ROWS)
            row = {"kind": kind, "band": "1.0" if lo == 1.0 else f"{lo:.2f}-{hi:.2f}", "lo": lo, "pairs": n,
                   "mean_j": float(jac[s].mean()), "theory": float(p.mean()),
                   "stderr": float(np.sqrt((p * (1 - p)).sum()) / n), "candidate": float(shares[s].mean())}
            for name, v in same.items():
                row[name] = float(v[s].mean())
            rows.append(row)
    return rows


def precision_of(j: np.ndarray, threshold: float) -> dict:
    n = len(j)
    return {"pairs": n, "precision": float((j >= threshold).mean()) if n else float("nan"),
            "below_0.5": int((j < 0.5).sum()), "min": float(j.min()) if n else float("nan"),
            "quantiles": [round(float(q), 3) for q in np.quantile(j, [0.01, 0.1, 0.5])] if n else []}


def read_pairs(folder: Path, columns: list[str]) -> pa.Table:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(p, columns=columns) for p in files) if files else None


def cluster_pairs(cluster_of: dict[str, str], cfg: PlantedConfig) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of nodes that share a cluster (clusters of 2 or more)."""
    groups: dict[str, list[str]] = {}
    for i, c in cluster_of.items():
        groups.setdefault(c, []).append(i)
    a, b = [], []
    for ids in groups.values():
        if len(ids) < 2:
            continue
        pos = np.array([int(i[1:]) for i in ids], np.uint64)
        nodes = ((pos // np.uint64(cfg.shard_rows)) << np.uint64(32)) | (pos % np.uint64(cfg.shard_rows))
        i, j = np.triu_indices(len(nodes), 1)
        a.append(nodes[i])
        b.append(nodes[j])
    if not a:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    return np.concatenate(a), np.concatenate(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--min-pairs", type=int, default=200, help="Bands with fewer pairs are not judged.")
    parser.add_argument("--keep-runs", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    cfg = PlantedConfig(docs=args.docs, seed=args.seed, shard_rows=args.shard_rows)
    out = default_dir(cfg, DATA_ROOT)
    meta = generate(out, cfg)
    corpus = Corpus(out, cfg)
    print(f"data: {out}: {meta['documents']:,} docs, {meta['clusters']:,} planted clusters, "
          f"{corpus.pairs.num_rows:,} planted pairs")

    # Candidate level, from the signatures of the planted documents as stored.
    t = time.perf_counter()
    nodes = corpus.members.column("node").to_numpy()
    sig = MinHashSignatures(NUM_PERM, 1, NGRAM).compute(corpus.texts(nodes))
    keys = band_keys(sig, BANDS, ROWS)
    index = {n: i for i, n in enumerate(nodes.tolist())}
    ia = np.array([index[n] for n in corpus.pairs.column("node_a").to_numpy().tolist()])
    ib = np.array([index[n] for n in corpus.pairs.column("node_b").to_numpy().tolist()])
    shares = (keys[ia] == keys[ib]).any(axis=1)
    print(f"signatures of {len(nodes):,} planted docs in {time.perf_counter() - t:.1f} s")

    same: dict[str, np.ndarray] = {}
    report: dict = {"docs": args.docs}
    runs = {}
    for verify in (False, True):
        name = "verify" if verify else "no-verify"
        run_dir = DATA_ROOT / "runs" / f"fuzzy-accuracy-{args.docs}-{name}"
        m = run_curator(pipeline_yaml(out / "data", verify, {"threshold": args.threshold}), run_dir, args.workers)
        stage = run_dir / "run" / "fuzzy"
        summary = json.loads((stage / "_fuzzy_dedup.json").read_text())
        print(f"\n[{name}] wall {m.wall_s:.1f} s (runner {m.run_s} s), peak RSS {m.peak_rss_mb:,.0f} MB; "
              f"summary: {json.dumps({k: v for k, v in summary.items() if k != 'cluster_sizes'})}")
        print_phases(m.phases)
        cluster_of, kept = read_clusters(stage)
        ids_a = corpus.pairs.column("a").to_pylist()
        ids_b = corpus.pairs.column("b").to_pylist()
        same[name] = np.array([cluster_of[x] == cluster_of[y] for x, y in zip(ids_a, ids_b)], bool)
        runs[name] = (run_dir, stage, cluster_of, summary, m)

    rows = recall_table(corpus, shares, same, args.threshold)
    print("\nRecall of planted pairs (candidate: share a band key; cluster: same output cluster), %")
    print(f"{'pairs':<12}{'J band':<11}{'n':>7}{'mean J':>8}{'theory':>8}{'cand.':>7}{'diff':>7}{'s.e.':>6}"
          f"{'clu/nv':>8}{'clu/v':>7}")
    worst = 0.0
    for r in rows:
        diff = r["candidate"] - r["theory"]
        judged = r["kind"] == "all" and r["pairs"] >= args.min_pairs
        if judged:
            worst = max(worst, abs(diff))
        print(f"{r['kind']:<12}{r['band']:<11}{r['pairs']:>7}{r['mean_j']:>8.3f}{pct(r['theory']):>8}"
              f"{pct(r['candidate']):>7}{100 * diff:>+7.1f}{100 * r['stderr']:>6.1f}{pct(r['no-verify']):>8}"
              f"{pct(r['verify']):>7}{'' if judged or r['kind'] != 'all' else '  (few pairs, not judged)'}")
    print(f"goal: candidate recall within 2 points of theory in every band of >= {args.min_pairs} pairs: "
          f"worst {100 * worst:.1f} points -> {'MET' if worst <= 0.02 else 'MISSED'}")
    report["recall"] = rows
    # True pairs that are LSH candidates but end in different clusters: without verification none
    # can; with it, a pair is lost when its bucket's anchor (smallest node) is not itself similar
    # enough to both documents (only anchor links are verified).
    jac = corpus.pairs.column("jaccard").to_numpy()
    true_cand = shares & (jac >= args.threshold)
    report["candidates_split"] = {}
    for name, v in same.items():
        split = int((true_cand & ~v).sum())
        report["candidates_split"][name] = split
        print(f"[{name}] planted pairs with J >= {args.threshold} that share a band key but end in different "
              f"clusters: {split:,} of {int(true_cand.sum()):,} ({100 * split / max(1, true_cand.sum()):.1f}%)")

    # Precision of merged pairs and of clusters.
    print(f"\nPrecision against exact Jaccard (threshold {args.threshold})")
    print(f"{'run':<11}{'what':<34}{'pairs':>8}{'J>=thr':>8}{'J<0.5':>7}{'min J':>7}  J quantiles 1/10/50%")
    report["precision"] = {}
    for name, (run_dir, stage, cluster_of, summary, m) in runs.items():
        if name == "verify":
            table = read_pairs(stage / "_work" / "verified", ["a", "b", "jaccard"])
            a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
            stage_j = table.column("jaccard").to_numpy().astype(np.float64)
            true_j = corpus.jaccard(a, b)
            err = np.abs(stage_j - true_j)
            checked = precision_of(true_j, args.threshold)
            merged_sel = stage_j >= args.threshold
            merged = precision_of(true_j[merged_sel], args.threshold)
            print(f"{name:<11}{'candidate pairs checked':<34}{checked['pairs']:>8}{pct(checked['precision']):>8}"
                  f"{checked['below_0.5']:>7}{checked['min']:>7.3f}  {checked['quantiles']}")
            what = "merged pairs (verified >= thr)"
            print(f"           stage Jaccard vs ours: max |diff| {err.max() if len(err) else 0:.2e} over "
                  f"{len(err):,} pairs")
        else:
            table = read_pairs(stage / "_work" / "edges", ["u", "v"])
            u, v = table.column("u").to_numpy(), table.column("v").to_numpy()
            lo, hi = np.minimum(u, v), np.maximum(u, v)
            pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
            merged = precision_of(corpus.jaccard(pairs[:, 0], pairs[:, 1]), args.threshold)
            what = "merged pairs (candidate links)"
        print(f"{name:<11}{what:<34}{merged['pairs']:>8}{pct(merged['precision']):>8}{merged['below_0.5']:>7}"
              f"{merged['min']:>7.3f}  {merged['quantiles']}")
        ca, cb = cluster_pairs(cluster_of, cfg)
        clusters = precision_of(corpus.jaccard(ca, cb), args.threshold)
        print(f"{name:<11}{'pairs within output clusters':<34}{clusters['pairs']:>8}{pct(clusters['precision']):>8}"
              f"{clusters['below_0.5']:>7}{clusters['min']:>7.3f}  {clusters['quantiles']}")
        report["precision"][name] = {"merged": merged, "clusters": clusters}
        if not args.keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)
    p = report["precision"]["verify"]["merged"]["precision"]
    print(f"goal: merged-pair precision >= 0.99 with verification: {p:.4f} -> {'MET' if p >= 0.99 else 'MISSED'}")
    print(f"(true Jaccard computed from texts for {corpus.computed:,} pairs that were not planted)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
