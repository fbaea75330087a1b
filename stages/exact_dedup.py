"""Exact deduplication across a whole dataset, out of core.

Phases (each a set of Dask tasks, each resumable):
1. ``hash``: per input shard, the MD5 of every document's normalised text, written sorted into
   hash buckets (one Parquet row group per bucket);
2. ``group``: per bucket, all rows with that bucket from every shard: duplicates grouped, the kept
   copy chosen (smallest ``id``, then earliest shard and row), written per input shard;
3. output: per input shard, its rows minus the duplicates, with ``exact_dup_count`` (copies of the
   text in the dataset, 1 for unique documents) on the kept rows.

Only hashes, ids and row numbers travel between phases; documents are read twice and never shuffled.

Normalisation (``normalize``): ``none`` hashes the text as is; ``whitespace`` (default) trims it and
collapses every run of whitespace to one space; ``lower_whitespace`` also lower-cases it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.global_run import GlobalRun
from curator.plan import ShardTask
from curator.partitioned import Source, read_sources, sources_for, write_partitioned
from curator.stage import DROP_REASON, GlobalStage, ShardStats, split_counted
from curator.storage import join, read_batches
from curator.tasks import write_shard

HASH_SCHEMA = pa.schema([("h1", pa.uint64()), ("h2", pa.uint64()), ("id", pa.string()),
                         ("shard", pa.int32()), ("row", pa.int64())])
GROUP_SCHEMA = pa.schema([("shard", pa.int32()), ("row", pa.int64()), ("count", pa.int64())])


def normalize_text(texts: pa.ChunkedArray | pa.Array, mode: str) -> list[str | None]:
    """Apply a normalisation mode to a text column."""
    if mode in ("whitespace", "lower_whitespace"):
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))
    if mode == "lower_whitespace":
        texts = pc.utf8_lower(texts)
    return texts.to_pylist()


def text_hashes(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """MD5 of each text as two uint64 halves (None hashes like the empty string)."""
    raw = b"".join(hashlib.md5((t or "").encode("utf-8")).digest() for t in texts)
    halves = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2) if texts else np.zeros((0, 2), np.uint64)
    return halves[:, 0].copy(), halves[:, 1].copy()


def _hash_shard(item: tuple[int, str], column: str, normalize: str, buckets: int, work_dir: str,
                batch_rows: int) -> list[int]:
    """Phase 1: hash one shard; return the row-group index of each bucket in its file (-1: none)."""
    shard, path = item
    parts: list[pa.Table] = []
    row = 0
    for batch in read_batches(path, batch_rows, columns=["id", column]):
        h1, h2 = text_hashes(normalize_text(batch.column(column), normalize))
        n = batch.num_rows
        parts.append(pa.table({"h1": h1, "h2": h2, "id": batch.column("id").cast(pa.string()),
                               "shard": np.full(n, shard, np.int32), "row": np.arange(row, row + n, dtype=np.int64)},
                              schema=HASH_SCHEMA))
        row += n
    table = pa.concat_tables(parts) if parts else HASH_SCHEMA.empty_table()
    bucket = (table.column("h1").to_numpy() % np.uint64(buckets)).astype(np.int64) if table.num_rows else np.zeros(0, np.int64)
    return write_partitioned(join(work_dir, "hash", f"part-{shard:05d}.parquet"), table, bucket, buckets, HASH_SCHEMA)


def _group_bucket(item: tuple[int, list[Source]], work_dir: str, num_shards: int) -> list[int]:
    """Phase 2: find duplicate groups in one bucket; return the result file's index by shard.

    ``item`` is the bucket and, for each hash file holding rows of it, the row group to read.
    """
    bucket, sources = item
    table = read_sources(sources, HASH_SCHEMA)
    h1 = table.column("h1").to_numpy()
    h2 = table.column("h2").to_numpy()
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    shard = table.column("shard").to_numpy()
    row = table.column("row").to_numpy()
    # Sort by hash, then by the tie-breakers that make the kept copy deterministic.
    id_rank = np.unique(ids.astype(str), return_inverse=True)[1] if len(ids) else np.zeros(0, np.int64)
    order = np.lexsort((row, shard, id_rank, h2, h1))
    h1, h2, shard, row = h1[order], h2[order], shard[order], row[order]
    new_group = np.ones(len(order), bool)
    new_group[1:] = (h1[1:] != h1[:-1]) | (h2[1:] != h2[:-1])
    group_id = np.cumsum(new_group) - 1
    sizes = np.bincount(group_id) if len(group_id) else np.zeros(0, np.int64)
    dup = sizes[group_id] > 1
    count = np.where(new_group, sizes[group_id], 0)[dup]
    result = pa.table({"shard": shard[dup].astype(np.int32), "row": row[dup], "count": count.astype(np.int64)},
                      schema=GROUP_SCHEMA)
    result = result.take(np.lexsort((result.column("row").to_numpy(), result.column("shard").to_numpy())))
    return write_partitioned(join(work_dir, "groups", f"bucket-{bucket:05d}.parquet"), result,
                             result.column("shard").to_numpy().astype(np.int64), num_shards, GROUP_SCHEMA)


def _filter_shard(task: ShardTask, input_path: str, group_files: list[Source], column: str,
                  batch_rows: int) -> dict[str, Any]:
    """Phase 3: write one output shard without its duplicates, with ``exact_dup_count``."""
    groups = read_sources(group_files, GROUP_SCHEMA)
    rows, counts = groups.column("row").to_numpy(), groups.column("count").to_numpy()
    stats = ShardStats()

    def results():
        offset = 0
        for batch in read_batches(input_path, batch_rows):
            n = batch.num_rows
            dup_count = np.ones(n, np.int64)
            here = (rows >= offset) & (rows < offset + n)
            dup_count[rows[here] - offset] = counts[here]
            reasons = pa.array(["exact_duplicate" if c == 0 else None for c in dup_count.tolist()], pa.string())
            out = batch.append_column("exact_dup_count", pa.array(dup_count, pa.int64()))
            res = split_counted(batch, out.append_column(DROP_REASON, reasons), stats)
            offset += n
            yield res.kept, res.rejected

    return write_shard(task, results(), stats)


class ExactDedup(GlobalStage):
    """Exact dedup across the dataset by MD5 of normalised text; keeps the copy with the smallest id."""

    name = "dedup.exact"
    version = 2  # 2: phase files written by curator.partitioned (markers of version 1 do not apply)
    requires = ("id", "text")
    adds = ("exact_dup_count",)

    column: str = Field("text", description="Column whose text is hashed.")
    normalize: Literal["none", "whitespace", "lower_whitespace"] = Field(
        "whitespace", description="Normalisation before hashing.")
    buckets: int | None = Field(None, ge=1, description="Hash buckets for the shuffle (default: one per input shard, at most 1024).")

    def run(self, ctx: GlobalRun) -> None:
        inputs = ctx.input_shards
        buckets = self.buckets or max(1, min(len(inputs), 1024))
        items = list(enumerate(inputs))
        row_groups = ctx.map("hash", _hash_shard, items, self.column, self.normalize, buckets,
                             ctx.work_dir, ctx.batch_rows)
        hash_files = [join(ctx.work_dir, "hash", f"part-{i:05d}.parquet") for i in range(len(inputs))]
        # Each bucket task gets only its own column of the (shard x bucket) row-group table.
        bucket_items = [(b, sources_for(hash_files, row_groups, b)) for b in range(buckets)]
        group_index = ctx.map("group", _group_bucket, bucket_items, ctx.work_dir, len(inputs))
        group_files = [join(ctx.work_dir, "groups", f"bucket-{b:05d}.parquet") for b in range(buckets)]
        ctx.map_outputs(_filter_shard, self.column, ctx.batch_rows,
                        per_task=lambda task: (inputs[task.index], sources_for(group_files, group_index, task.index)))
