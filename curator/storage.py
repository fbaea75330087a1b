"""Files and shards on any fsspec filesystem: listing inputs, fingerprints, atomic writes.

Every shard file is written to a hidden temporary name in its final directory and renamed into
place, so a reader never sees a half-written shard and a killed run leaves only temp files, which
the next run removes.
"""

from __future__ import annotations

import glob as globlib
import gzip
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"
TMP_PREFIX = ".tmp-"


def shard_name(index: int) -> str:
    """Name of the index-th shard of a dataset, without extension."""
    return f"part-{index:05d}"


def is_remote(path: str) -> bool:
    """Whether a path is an fsspec URL other than a local file."""
    return "://" in path and not path.startswith("file://")


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a path and the path as that filesystem names it."""
    return fsspec.core.url_to_fs(path)


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', for local paths and URLs alike."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class InputFile:
    """One input file and its fingerprint (size and modification time or ETag)."""

    path: str
    fingerprint: str


def file_fingerprint(path: str) -> str:
    """A cheap fingerprint of a file: its path, size and mtime (or ETag on object stores)."""
    fs, fs_path = filesystem(path)
    info = fs.info(fs_path)
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag") or ""
    if hasattr(stamp, "timestamp"):
        stamp = stamp.timestamp()
    return digest({"path": path, "size": info.get("size"), "stamp": str(stamp)})


def expand_paths(patterns: Iterable[str], base_dir: str) -> list[str]:
    """Expand paths and glob patterns (local or fsspec URLs) into a sorted list of files.

    Relative local paths are taken relative to ``base_dir`` (the pipeline file's folder).
    A pattern that matches nothing raises ``FileNotFoundError`` naming it.
    """
    out: list[str] = []
    for pattern in patterns:
        if is_remote(pattern):
            fs, fs_path = filesystem(pattern)
            if globlib.has_magic(pattern):
                matches = sorted(fs.glob(fs_path))
                protocol = pattern.split("://", 1)[0]
                found = [f"{protocol}://{m}" for m in matches]
            else:
                found = [pattern] if fs.exists(fs_path) else []
        else:
            local = pattern[len("file://"):] if pattern.startswith("file://") else pattern
            local = os.path.join(base_dir, os.path.expanduser(local))
            if globlib.has_magic(local):
                found = sorted(p for p in globlib.glob(local, recursive=True) if os.path.isfile(p))
            else:
                found = [local] if os.path.isfile(local) else []
            found = [os.path.normpath(p) for p in found]
        if not found:
            raise FileNotFoundError(pattern)
        out.extend(found)
    return out


def read_listing(listing: str, base_dir: str, prefix: str, limit: int | None) -> list[str]:
    """Read a Common Crawl style listing (``warc.paths.gz``: one relative path per line).

    Each line is joined to ``prefix`` (e.g. ``https://data.commoncrawl.org/``); ``limit`` keeps the
    first N lines.
    """
    path = listing if is_remote(listing) else os.path.join(base_dir, os.path.expanduser(listing))
    with fsspec.open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    lines = [ln.strip() for ln in raw.decode("utf-8").splitlines() if ln.strip()]
    if limit is not None:
        lines = lines[:limit]
    return [line if "://" in line or not prefix else join(prefix, line) for line in lines]


def digest(obj: Any) -> str:
    """A stable SHA-256 hex digest of a JSON-able object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _tmp_name(final: str) -> str:
    head, tail = final.rsplit("/", 1) if "/" in final else ("", final)
    tmp = f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{tail}"
    return f"{head}/{tmp}" if head else tmp


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder, then rename)."""
    fs, fs_path = filesystem(path)
    fs.makedirs(fs_path.rsplit("/", 1)[0], exist_ok=True)
    tmp = _tmp_name(fs_path)
    with fs.open(tmp, "wb") as fh:
        fh.write(json.dumps(data, indent=1, sort_keys=True, default=str).encode())
    fs.mv(tmp, fs_path)


def read_json(path: str) -> Any | None:
    """Read a JSON file, or return None if it does not exist or is not valid JSON."""
    fs, fs_path = filesystem(path)
    try:
        with fs.open(fs_path, "rb") as fh:
            return json.loads(fh.read())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


class ShardWriter:
    """Streams Arrow tables into one Parquet shard, published atomically on :meth:`commit`.

    Tables with differing but compatible schemas (e.g. a column that is all-null in one batch)
    are cast to the first batch's schema; the schema can also be given up front.
    """

    def __init__(self, path: str, schema: pa.Schema | None = None) -> None:
        self.path = path
        self._fs, self._fs_path = filesystem(path)
        self._fs.makedirs(self._fs_path.rsplit("/", 1)[0], exist_ok=True)
        self._tmp = _tmp_name(self._fs_path)
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self.rows = 0

    @property
    def schema(self) -> pa.Schema | None:
        """The shard's schema, once known (given up front or taken from the first table)."""
        return self._schema

    def write(self, table: pa.Table, row_group_size: int | None = None) -> None:
        """Append a table (one row group, or more if over ``row_group_size`` rows) to the shard."""
        if self._writer is None:
            if self._schema is None:
                self._schema = table.schema
            self._sink = self._fs.open(self._tmp, "wb")
            self._writer = pq.ParquetWriter(self._sink, self._schema, compression=PARQUET_COMPRESSION)
        if table.schema != self._schema:
            table = conform(table, self._schema)
        if table.num_rows:
            self._writer.write_table(table, row_group_size=row_group_size)
            self.rows += table.num_rows

    def commit(self, empty_schema: pa.Schema | None = None) -> None:
        """Finish the file and move it into place. An unwritten shard becomes an empty one."""
        if self._writer is None:
            self.write(pa.Table.from_batches([], schema=self._schema or empty_schema or pa.schema([])))
        assert self._writer is not None
        self._writer.close()
        self._sink.close()
        self._fs.mv(self._tmp, self._fs_path)

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            if self._writer is not None:
                self._writer.close()
                self._sink.close()
            if self._fs.exists(self._tmp):
                self._fs.rm(self._tmp)
        except OSError:
            pass


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a table to a schema: reorder columns, fill missing nullable ones, cast types."""
    columns = []
    for fld in schema:
        if fld.name in table.column_names:
            col = table.column(fld.name)
            columns.append(col if col.type == fld.type else col.cast(fld.type))
        else:
            columns.append(pa.nulls(table.num_rows, fld.type))
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise ValueError(f"batch has columns {extra} that earlier batches of the shard did not have")
    return pa.Table.from_arrays(columns, schema=schema)


MAX_BATCH_BYTES = 64 << 20


def read_batches(path: str, batch_rows: int, columns: list[str] | None = None,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> Iterator[pa.Table]:
    """Yield a Parquet shard as tables of at most ``batch_rows`` rows (bounded memory).

    Batches are also kept near ``max_batch_bytes`` (uncompressed, estimated from the file's
    metadata), so a shard of raw HTML is not read 10,000 pages at a time.
    """
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        meta = pf.metadata
        if meta.num_rows == 0:
            yield pf.schema_arrow.empty_table()
            return
        total_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if columns is not None and total_bytes:
            wanted = set(columns)
            total_bytes = sum(
                meta.row_group(i).column(j).total_uncompressed_size
                for i in range(meta.num_row_groups) for j in range(meta.num_columns)
                if meta.row_group(i).column(j).path_in_schema.split(".")[0] in wanted
            )
        bytes_per_row = max(1.0, total_bytes / meta.num_rows)
        rows = max(1, min(batch_rows, int(max_batch_bytes / bytes_per_row)))
        for batch in pf.iter_batches(batch_size=rows, columns=columns):
            yield pa.Table.from_batches([batch])


def read_schema(path: str) -> pa.Schema:
    """The Arrow schema of a Parquet shard."""
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        return pq.ParquetFile(fh).schema_arrow


def list_shards(dataset_dir: str) -> list[str]:
    """The Parquet shards of a dataset directory, sorted; hidden and ``_``-prefixed names skipped."""
    fs, fs_path = filesystem(dataset_dir)
    if not fs.isdir(fs_path):
        raise FileNotFoundError(dataset_dir)
    names = sorted(
        p for p in fs.ls(fs_path, detail=False)
        if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith((".", "_"))
    )
    if is_remote(dataset_dir):
        protocol = dataset_dir.split("://", 1)[0]
        return [f"{protocol}://{n}" for n in names]
    return names


def remove_temp_files(directory: str) -> int:
    """Remove temp files left anywhere under a directory by a killed run."""
    fs, fs_path = filesystem(directory)
    if not fs.isdir(fs_path):
        return 0
    removed = 0
    for entry in fs.find(fs_path, withdirs=False):
        if entry.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            fs.rm(entry)
            removed += 1
    return removed

