"""Framework overhead: a no-op map stage through the runner vs a bare Dask map over the same shards.

Both sides read each Parquet shard and write it back with the same compression, on the same
LocalCluster; the difference is what the runner adds (fingerprints, batching, stats, atomic
commits, manifests, progress). Prints the median of several alternating repetitions.

    python benchmarks/framework_overhead.py [--shards 200] [--rows 10000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, wait

from curator.storage import PARQUET_COMPRESSION
from timed_run import timed_run

WORDS = np.array("the of and to in is was for on that with as by at from his it an were are which this be".split())


def make_dataset(folder: Path, shards: int, rows: int) -> None:
    """Write ``shards`` Parquet shards of ``rows`` rows (id + ~120 characters of text)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for s in range(shards):
        words = WORDS[rng.integers(0, len(WORDS), size=(rows, 30))]
        texts = [" ".join(w) for w in words]
        ids = [f"{s:05d}-{r:06d}" for r in range(rows)]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / f"part-{s:05d}.parquet",
                       compression=PARQUET_COMPRESSION)


def bare_copy(src: str, dst: str) -> int:
    """The bare-Dask side: read a shard, write it back."""
    table = pq.read_table(src)
    pq.write_table(table, dst, compression=PARQUET_COMPRESSION)
    return table.num_rows


def peak_rss_mb() -> float:
    """Peak resident memory of the calling process, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bare(client: Client, data: Path, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(str(p) for p in data.glob("part-*.parquet"))
    start = time.perf_counter()
    futures = client.map(bare_copy, srcs, [str(out / Path(s).name) for s in srcs], pure=False)
    wait(futures)
    assert sum(f.result() for f in futures) > 0
    return time.perf_counter() - start


def run_curator(client: Client, data: Path, run_dir: Path) -> float:
    elapsed, _ = timed_run(client, f"""
name: overhead
inputs:
  docs: {{dataset: {data}}}
stages:
  - {{id: noop, uses: util.identity, from: docs}}
""", run_dir)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="Scratch folder (default: a temp folder).")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="curator-overhead-"))
    data = work / "data"
    if not data.exists():
        make_dataset(data, args.shards, args.rows)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        bare, ours = [], []
        run_bare(client, data, work / "warmup")  # imports and page cache
        for i in range(args.repeats):
            bare.append(run_bare(client, data, work / f"bare-{i}"))
            ours.append(run_curator(client, data, work / f"run-{i}"))
            shutil.rmtree(work / f"bare-{i}")
            shutil.rmtree(work / f"run-{i}")
        rerun = run_curator(client, data, work / "run-resume")
        resumed = run_curator(client, data, work / "run-resume")
        worker_peaks = sorted(client.run(peak_rss_mb).values())
    b, c = statistics.median(bare), statistics.median(ours)
    rows = args.shards * args.rows
    print(f"shards={args.shards} rows/shard={args.rows} workers={args.workers} repeats={args.repeats}")
    print(f"bare dask map (read+write parquet): {b:7.2f} s  {rows / b:12,.0f} rows/s   runs {[round(x, 2) for x in bare]}")
    print(f"curator runner, no-op stage:       {c:7.2f} s  {rows / c:12,.0f} rows/s   runs {[round(x, 2) for x in ours]}")
    print(f"overhead: {100 * (c - b) / b:+.1f}%   (goal: <= +10%)")
    data_mb = sum(p.stat().st_size for p in data.glob("part-*.parquet")) / 1e6
    print(f"peak RSS per worker process: {', '.join(f'{m:.0f} MB' for m in worker_peaks)} "
          f"(dataset: {data_mb:.0f} MB of Parquet, {args.shards} shards)")
    print(f"rerun of a finished run (all {args.shards} shards skipped): {resumed:.2f} s (first run {rerun:.2f} s)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
