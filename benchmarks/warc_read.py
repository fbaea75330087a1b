"""WARC reading: the io.warc stage through the runner vs a bare fastwarc loop over the same files.

Both sides run on the same LocalCluster, one task per WARC file. The read-only bare loop iterates
response records with fastwarc and reads each URL, record id, date, HTTP content type, charset and
body; it keeps nothing. The second bare loop also keeps those columns and writes them to one
Parquet file per WARC, as a hand-written WARC-to-Parquet script would. Ours adds malformed- and
truncated-record checks, stable ids, bounded batches, an atomic commit and stats. The WARC files are real Common Crawl records (the team's reference
WARC) and the sample WARC, concatenated many times (each record is its own gzip member).

    python benchmarks/warc_read.py [--files 8] [--mb 24] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, wait
from fastwarc.warc import ArchiveIterator, WarcRecordType

from curator.storage import PARQUET_COMPRESSION
from timed_run import timed_run

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO.parent / "shared" / "data" / "warc" / "warcfile.warc.gz", REPO / "sample_data" / "sample.warc.gz"]


def make_warcs(folder: Path, files: int, megabytes: int) -> list[Path]:
    """Concatenate the source WARCs into ``files`` files of about ``megabytes`` MB each."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = b"".join(p.read_bytes() for p in SOURCES)
    copies = max(1, megabytes * 1_000_000 // len(blob))
    out = []
    for i in range(files):
        path = folder / f"bench-{i:03d}.warc.gz"
        path.write_bytes(blob * copies)
        out.append(path)
    return out


def bare_read(path: str) -> int:
    """The bare side: fastwarc over one file, reading what a row needs, keeping nothing."""
    rows = 0
    for record in ArchiveIterator(path, record_types=WarcRecordType.response, parse_http=True, fsspec_args=False):
        _ = (record.headers.get("WARC-Target-URI"), record.record_id, record.headers.get("WARC-Date"),
             record.http_content_type, record.http_charset, record.http_headers.status_code,
             record.stream_pos, record.reader.read())
        rows += 1
    return rows


def bare_read_write(path: str, out: str) -> int:
    """The bare side that keeps its rows: the same loop, the same columns, one Parquet file."""
    cols: dict[str, list] = {k: [] for k in ("url", "warc_record_id", "warc_date", "content_type", "http_charset",
                                               "http_status", "offset", "body")}
    for record in ArchiveIterator(path, record_types=WarcRecordType.response, parse_http=True, fsspec_args=False):
        cols["url"].append(record.headers.get("WARC-Target-URI"))
        cols["warc_record_id"].append(record.record_id)
        cols["warc_date"].append(record.headers.get("WARC-Date"))
        cols["content_type"].append(record.http_content_type)
        cols["http_charset"].append(record.http_charset)
        cols["http_status"].append(record.http_headers.status_code)
        cols["offset"].append(record.stream_pos)
        cols["body"].append(record.reader.read())
    table = pa.table(cols)
    pq.write_table(table, out, compression=PARQUET_COMPRESSION)
    return table.num_rows


def run_bare(client: Client, files: list[Path], out_dir: Path | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    if out_dir is None:
        futures = client.map(bare_read, [str(f) for f in files], pure=False)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        futures = client.map(bare_read_write, [str(f) for f in files],
                             [str(out_dir / f"{f.name}.parquet") for f in files], pure=False)
    wait(futures)
    return time.perf_counter() - start, sum(f.result() for f in futures)


def run_curator(client: Client, folder: Path, run_dir: Path) -> tuple[float, int]:
    elapsed, result = timed_run(client, f"""
name: warc-bench
inputs:
  crawl: {{files: "{folder}/*.warc.gz"}}
stages:
  - {{id: warc, uses: io.warc, from: crawl}}
""", run_dir)
    return elapsed, sum(r["rows"] for r in result.stages["warc"].records.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mb", type=int, default=24, help="Size of each WARC file in MB.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="curator-warc-"))
    files = make_warcs(work / "warc", args.files, args.mb)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        run_bare(client, files)  # warm-ups: imports and page cache, on both sides
        run_curator(client, work / "warc", work / "warmup")
        bare, bare_w, ours = [], [], []
        rows_bare = rows_ours = 0
        for i in range(args.repeats):
            t, rows_bare = run_bare(client, files)
            bare.append(t)
            t, _ = run_bare(client, files, work / f"bare-{i}")
            bare_w.append(t)
            shutil.rmtree(work / f"bare-{i}")
            t, rows_ours = run_curator(client, work / "warc", work / f"run-{i}")
            ours.append(t)
            shutil.rmtree(work / f"run-{i}")
    assert rows_bare == rows_ours, (rows_bare, rows_ours)
    b, bw, c = statistics.median(bare), statistics.median(bare_w), statistics.median(ours)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"{args.files} WARC files, {total_mb:.0f} MB compressed, {rows_bare:,} responses, "
          f"{args.workers} workers, median of {args.repeats}")
    print(f"bare fastwarc loop:       {b:6.2f} s  {rows_bare / b:10,.0f} rows/s  "
          f"({rows_bare / b / args.workers:,.0f} per core)  runs {[round(x, 2) for x in bare]}")
    print(f"bare loop + same rows to Parquet: {bw:6.2f} s  {rows_bare / bw:10,.0f} rows/s  "
          f"({rows_bare / bw / args.workers:,.0f} per core)  runs {[round(x, 2) for x in bare_w]}")
    print(f"io.warc through runner:   {c:6.2f} s  {rows_ours / c:10,.0f} rows/s  "
          f"({rows_ours / c / args.workers:,.0f} per core)  runs {[round(x, 2) for x in ours]}")
    print(f"ratio: {b / c:.2f}x of the read-only loop, {bw / c:.2f}x of the loop that writes its rows (goal: >= 0.9x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
