"""Partitioned Parquet files: how global stages shuffle data between Dask phases out of core.

A task of one phase writes a single file whose row groups are partitions (one row group per
partition that has rows) and returns its *index*: for each partition, the row group holding it,
or -1. A task of the next phase reads its partition from every file of the previous phase. Only
file paths and small indexes pass through the client; the rows go from disk to disk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator.storage import ShardWriter, filesystem

Source = tuple[str, int]
"""A partition's rows in one file: ``(path, row group)``."""


def mix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser over a uint64 array (spreads keys evenly over partitions)."""
    k = values.astype(np.uint64, copy=True)
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xFF51AFD7ED558CCD)
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xC4CEB9FE1A85EC53)
    k ^= k >> np.uint64(33)
    return k


def partition_of(keys: np.ndarray, num_parts: int) -> np.ndarray:
    """The partition (0..num_parts-1) of each uint64 key, by hash."""
    return (mix64(keys) % np.uint64(num_parts)).astype(np.int64)


def write_partitioned(path: str, table: pa.Table, parts: np.ndarray, num_parts: int,
                      schema: pa.Schema | None = None) -> list[int]:
    """Write ``table`` to ``path`` with one row group per partition; return the file's index.

    ``parts[i]`` is row ``i``'s partition. Rows keep their relative order within a partition.
    """
    schema = schema or table.schema
    order = np.argsort(parts, kind="stable")
    sorted_parts = parts[order]
    table = table.take(order)
    bounds = np.searchsorted(sorted_parts, np.arange(num_parts + 1))
    writer = ShardWriter(path, schema)
    index = []
    group = 0
    for part in range(num_parts):
        lo, hi = int(bounds[part]), int(bounds[part + 1])
        if hi > lo:
            writer.write(table.slice(lo, hi - lo), row_group_size=hi - lo)
            index.append(group)
            group += 1
        else:
            index.append(-1)
    writer.commit()
    return index


def sources_for(paths: Sequence[str], indexes: Sequence[Sequence[int]], part: int) -> list[Source]:
    """The ``(path, row group)`` pairs that hold ``part``, from the files of one phase."""
    return [(path, index[part]) for path, index in zip(paths, indexes) if index[part] >= 0]


def read_sources(sources: Sequence[Source], schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """One partition: its row groups from every file, concatenated (empty with ``schema`` if none)."""
    parts = []
    for path, group in sources:
        fs, fs_path = filesystem(path)
        with fs.open(fs_path, "rb") as fh:
            parts.append(pq.ParquetFile(fh).read_row_group(group, columns=list(columns) if columns else None))
    if not parts:
        empty = schema if not columns else pa.schema([schema.field(c) for c in columns])
        return empty.empty_table()
    return pa.concat_tables(parts)
