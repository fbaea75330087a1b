"""dedup.fuzzy end to end at 100 K, 300 K and 1 M documents: wall time, peak memory of all processes,
per-phase times, and whether the planted near-duplicates were removed.

Each size is a planted set of ~2 KB documents (:mod:`planted_duplicates`: 10% of the documents in
clusters of 2-10, copies at Jaccard 0.5-1.0 to their source), generated once and cached under
``benchmarks/_data/`` (git-ignored; generation is not timed). The stage runs with the recipe's
parameters (24-character shingles, 260 permutations, 20 bands x 13 rows) through the CLI, as a
user would: ``curator run PIPELINE --workers 2`` in a subprocess, which starts its own 2-worker
LocalCluster. Measured:

- **wall**: the ``curator run`` process from start to exit (Python start-up, cluster start-up and
  the run); **run** is the runner's own "done in" figure (without start-up).
- **peak RSS**: the highest sum, over samples every 0.1 s, of the resident memory of the CLI
  process (client, scheduler, nannies) and all its descendants (the worker processes). RSS counts
  shared pages once per process, so the sum over-states a little.
- **phases**: from the modification times of ``_work/<phase>/_done`` markers (each phase ends at
  its last marker) and of the output shards' stats files; the memory peak within each phase.

    python benchmarks/fuzzy_dedup_scale.py [--sizes 100000,300000,1000000] [--workers 2] [--verify]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from planted_duplicates import REPO, PlantedConfig, default_dir, generate, read_truth

sys.path.insert(0, str(REPO))
from stages.minhash import collision_probability  # noqa: E402

DATA_ROOT = REPO / "benchmarks" / "_data"
GOAL_SECONDS_1M = 300.0
GOAL_PEAK_MB = 4096.0
GOAL_RATIO = 11.0
RECIPE = {"ngram": 24, "num_perm": 260, "bands": 20, "rows": 13}


# --------------------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    """One ``curator run``: times, memory and the phases of the stage."""

    wall_s: float
    run_s: float | None
    peak_rss_mb: float
    peak_main_mb: float
    peak_worker_mb: float
    processes_seen: int
    phases: list[dict] = field(default_factory=list)
    output: str = ""


class RssSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time.time(), MB)
        self.peak_main = 0.0
        self.peak_other = 0.0
        self.seen: set[int] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = 0
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.seen.add(proc.pid)
                if proc.pid == self.root.pid:
                    self.peak_main = max(self.peak_main, rss / 2**20)
                else:
                    self.peak_other = max(self.peak_other, rss / 2**20)
            self.samples.append((time.time(), total / 2**20))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak_between(self, start: float, end: float) -> float:
        values = [mb for t, mb in self.samples if start <= t <= end]
        return max(values) if values else float("nan")


def curator_command() -> list[str]:
    exe = Path(sys.executable).parent / "curator"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "curator.cli"]


def run_curator(pipeline_yaml: str, run_dir: Path, workers: int, stage_id: str = "fuzzy",
                interval: float = 0.1) -> Measured:
    """Run a pipeline through ``curator run`` in a fresh run folder; measure it."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    pipeline = run_dir / "pipeline.yaml"
    pipeline.write_text(pipeline_yaml)
    cmd = curator_command() + ["run", str(pipeline), "--run-dir", str(run_dir / "run"), "--workers", str(workers),
                               "--dashboard-address", ":0"]
    log_path = run_dir / "curator.log"
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = RssSampler(proc.pid, interval)
        sampler.start()
        rc = proc.wait()
    wall = time.time() - start
    sampler.stop()
    output = log_path.read_text()
    if rc != 0:
        raise RuntimeError(f"curator run failed (exit {rc}):\n{output[-3000:]}")
    match = re.search(r"done in ([0-9.]+)s", output)
    phases = phase_times(run_dir / "run" / stage_id, start, sampler)
    return Measured(wall, float(match.group(1)) if match else None, max(mb for _, mb in sampler.samples),
                    sampler.peak_main, sampler.peak_other, len(sampler.seen), phases, output)


def phase_times(stage_dir: Path, start: float, sampler: RssSampler | None = None) -> list[dict]:
    """Phases of a global stage in the order they finished, with seconds and (if sampled) peak MB.

    A phase ends at its last ``_done`` marker; it starts where the previous one ended. The first
    row, ``startup``, runs from ``start`` (the process start) to the runner's ``started_at`` in
    ``run.json`` (Python imports, LocalCluster start-up). The output phase ends at the last shard
    stats file.
    """
    ends: dict[str, tuple[float, int]] = {}
    try:
        ends["startup"] = (float(json.loads((stage_dir.parent / "run.json").read_text())["started_at"]), 0)
    except (OSError, ValueError, KeyError):
        pass
    work = stage_dir / "_work"
    for done in work.glob("*/_done"):
        times = [p.stat().st_mtime for p in done.glob("*.json")]
        if times:
            ends[done.parent.name] = (max(times), len(times))
    stats = [p.stat().st_mtime for p in (stage_dir / "_stats").glob("*.json")]
    if stats:
        ends["output"] = (max(stats), len(stats))
    out, prev = [], start
    for name, (end, items) in sorted(ends.items(), key=lambda kv: kv[1][0]):
        row = {"phase": name, "items": items, "seconds": end - prev}
        if sampler is not None:
            row["peak_mb"] = sampler.peak_between(prev, end)
        out.append(row)
        prev = end
    return out


def pipeline_yaml(data: Path, verify: bool, extra: dict | None = None) -> str:
    params = dict(RECIPE, verify=verify, **(extra or {}))
    with_ = ", ".join(f"{k}: {json.dumps(v)}" for k, v in params.items())
    return f"""name: fuzzy-bench
inputs:
  docs: {{dataset: {data}}}
stages:
  - {{id: fuzzy, uses: dedup.fuzzy, from: docs, keep_rejected: true, with: {{{with_}}}}}
"""


# ---------------------------------------------------------------------------------------- checking


def read_clusters(stage_dir: Path) -> tuple[dict[str, str], int]:
    """``id -> cluster_id`` of every document (kept and rejected), and the number kept."""
    kept = pa.concat_tables(pq.read_table(p, columns=["id", "cluster_id"])
                            for p in sorted(stage_dir.glob("part-*.parquet")))
    rejected_dir = stage_dir / "_rejected"
    parts = [kept]
    if rejected_dir.is_dir():
        parts += [pq.read_table(p, columns=["id", "cluster_id"]) for p in sorted(rejected_dir.glob("part-*.parquet"))]
    table = pa.concat_tables(parts)
    return dict(zip(table.column("id").to_pylist(), table.column("cluster_id").to_pylist())), kept.num_rows


BANDS = [(0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.01)]


def band_label(lo: float, hi: float) -> str:
    return "1.0 (exact)" if lo == 1.0 else f"{lo:.1f}-{hi:.1f}"


def check_output(out_dir: Path, stage_dir: Path, docs: int) -> dict:
    """Planted copies merged with their source, by true Jaccard; false merges of unplanted docs."""
    members, pairs = read_truth(out_dir)
    cluster_of, kept = read_clusters(stage_dir)
    planted = set(members.column("id").to_pylist())
    with_source = pairs.column("member_a").to_numpy() == 0
    a = np.array(pairs.column("a").to_pylist(), dtype=object)[with_source]
    b = np.array(pairs.column("b").to_pylist(), dtype=object)[with_source]
    jac = pairs.column("jaccard").to_numpy()[with_source]
    merged = np.array([cluster_of[x] == cluster_of[y] for x, y in zip(a, b)], bool)
    rows = []
    for lo, hi in BANDS:
        s = (jac >= lo) & (jac < hi)
        if s.any():
            rows.append({"band": band_label(lo, hi), "copies": int(s.sum()), "merged": float(merged[s].mean()),
                         "lsh_theory": float(np.mean(collision_probability(jac[s], 20, 13)))})
    # Unplanted documents must stay alone: one per cluster id, equal to their own id.
    sizes: dict[str, int] = {}
    for cid in cluster_of.values():
        sizes[cid] = sizes.get(cid, 0) + 1
    false = sum(1 for i, cid in cluster_of.items() if i not in planted and (cid != i or sizes[cid] > 1))
    # Clusters whose copies at J >= 0.9 all joined their source ("collapsed at high similarity").
    high = jac >= 0.9
    cluster = pairs.column("cluster").to_numpy()[with_source][high]
    missed = np.unique(cluster[~merged[high]])
    with_high = np.unique(cluster)
    return {
        "documents": docs, "kept": kept, "removed": docs - kept,
        "planted_copies": int(with_source.sum()),
        "expected_removed_lsh": float(collision_probability(jac, 20, 13).sum()),
        "copies_ge_0.8": int((jac >= 0.8).sum()), "copies_ge_0.9": int(high.sum()),
        "merged_ge_0.9": float(merged[high].mean()) if high.any() else float("nan"),
        "clusters_with_high_copies": int(len(with_high)),
        "clusters_collapsed_at_0.9": float(1 - len(missed) / len(with_high)) if len(with_high) else float("nan"),
        "unplanted_docs_merged": false,
        "bands": rows,
    }


# -------------------------------------------------------------------------------------------- main


def print_phases(phases: list[dict]) -> None:
    total = sum(p["seconds"] for p in phases) or 1.0
    print(f"    {'phase':<16}{'items':>6}{'seconds':>9}{'share':>7}{'peak MB':>9}")
    for p in phases:
        print(f"    {p['phase']:<16}{p['items']:>6}{p['seconds']:>9.1f}{100 * p['seconds'] / total:>6.0f}%"
              f"{p.get('peak_mb', float('nan')):>9.0f}")


def print_goals(results: list[dict]) -> None:
    print(f"\n{'docs':>10}{'wall s':>9}{'run s':>8}{'docs/s':>10}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['docs']:>10,}{r['wall_s']:>9.1f}{r['run_s'] or float('nan'):>8.1f}{r['docs'] / r['wall_s']:>10,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}")
    by = {r["docs"]: r for r in results}
    if 1_000_000 in by:
        w = by[1_000_000]["wall_s"]
        print(f"goal 1M in <= {GOAL_SECONDS_1M:.0f} s: {w:.1f} s -> {'MET' if w <= GOAL_SECONDS_1M else 'MISSED'}")
    peak = max(r["peak_rss_mb"] for r in results)
    print(f"goal peak RSS of all processes <= {GOAL_PEAK_MB:,.0f} MB: {peak:,.0f} MB -> "
          f"{'MET' if peak <= GOAL_PEAK_MB else 'MISSED'}")
    if 1_000_000 in by and 100_000 in by:
        ratio = by[1_000_000]["wall_s"] / by[100_000]["wall_s"]
        run_ratio = (by[1_000_000]["run_s"] or np.nan) / (by[100_000]["run_s"] or np.nan)
        print(f"goal time(1M)/time(100k) <= {GOAL_RATIO:.0f}: {ratio:.2f} (wall), {run_ratio:.2f} (runner) -> "
              f"{'MET' if ratio <= GOAL_RATIO else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="Comma-separated document counts.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--verify", action="store_true", help="Run with verify: true (default: off, the recipe).")
    parser.add_argument("--gen-workers", type=int, default=None, help="Processes generating data (default: cores).")
    parser.add_argument("--keep-runs", action="store_true", help="Keep the run folders (default: delete).")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    results = []
    for n in sizes:
        cfg = PlantedConfig(docs=n, seed=args.seed, shard_rows=args.shard_rows)
        data = default_dir(cfg, DATA_ROOT)
        t = time.perf_counter()
        meta = generate(data, cfg, args.gen_workers)
        print(f"[{n:,} docs] data: {data} ({meta['parquet_mb']} MB Parquet, {meta['shards']} shards, "
              f"{meta['clusters']} planted clusters, ready in {time.perf_counter() - t:.1f} s, not timed)", flush=True)
        run_dir = DATA_ROOT / "runs" / f"fuzzy-scale-{n}{'-verify' if args.verify else ''}"
        m = run_curator(pipeline_yaml(data / "data", args.verify), run_dir, args.workers)
        stage_dir = run_dir / "run" / "fuzzy"
        summary = json.loads((stage_dir / "_fuzzy_dedup.json").read_text())
        check = check_output(data, stage_dir, meta["documents"])
        print(f"[{n:,} docs] wall {m.wall_s:.1f} s (runner {m.run_s} s), peak RSS of all processes "
              f"{m.peak_rss_mb:,.0f} MB (CLI/scheduler process {m.peak_main_mb:,.0f} MB, largest other "
              f"{m.peak_worker_mb:,.0f} MB, {m.processes_seen} processes seen), {n / m.wall_s:,.0f} docs/s")
        print_phases(m.phases)
        print(f"    summary: candidate links {summary.get('candidate_links')}, pairs checked "
              f"{summary.get('pairs_checked', '-')}, verified {summary.get('verified_pairs', '-')}, "
              f"cc rounds {summary.get('cc_rounds')}, clusters {summary.get('clusters')}, "
              f"removed {summary.get('duplicates_removed')}")
        print(f"    output: removed {check['removed']:,} of {check['planted_copies']:,} planted copies "
              f"(LSH theory expects {check['expected_removed_lsh']:,.0f}); copies at J>=0.9 merged with their "
              f"source: {100 * check['merged_ge_0.9']:.2f}% of {check['copies_ge_0.9']:,} (clusters with all of "
              f"them joined: {100 * check['clusters_collapsed_at_0.9']:.2f}% of "
              f"{check['clusters_with_high_copies']:,}); unplanted docs merged: "
              f"{check['unplanted_docs_merged']}")
        print(f"    {'J(source, copy)':<16}{'copies':>8}{'merged':>9}{'LSH 1-(1-s^13)^20':>19}")
        for r in check["bands"]:
            print(f"    {r['band']:<16}{r['copies']:>8}{100 * r['merged']:>8.1f}%{100 * r['lsh_theory']:>18.1f}%")
        results.append({"docs": n, "wall_s": m.wall_s, "run_s": m.run_s, "peak_rss_mb": m.peak_rss_mb,
                        "peak_main_mb": m.peak_main_mb, "peak_worker_mb": m.peak_worker_mb,
                        "phases": m.phases, "summary": summary, "check": check})
        if not args.keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)

    print_goals(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
