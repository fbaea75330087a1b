"""Files and shards on any fsspec filesystem: listing inputs, fingerprints, atomic writes.

On local disk every shard file is written to a hidden temporary name in its final directory and
renamed into place, so a reader never sees a half-written shard and a killed run leaves only temp
files, which the next run removes. Object stores (s3://, gs://, memory://) have no atomic rename:
there a shard is written to a local spool file and uploaded whole in one request, so its object
appears complete or not at all. Remote calls are retried on transient errors
(:mod:`curator.object_store`).

A shard of a run counts as done only when its commit marker (``_stats/part-NNNNN.json``, written
after the data) exists; :func:`list_shards` leaves out the shards of a run's dataset that have none.
"""

from __future__ import annotations

import glob as globlib
import gzip
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curator.object_store import DEFAULT_POLICY, RetryPolicy, is_transient, renames_atomically, unwrap, with_retries

log = logging.getLogger("curator.storage")
PARQUET_COMPRESSION = "zstd"
TMP_PREFIX = ".tmp-"
SPOOL_PREFIX = ".tmp-curator-spool-"
COMMIT_DIR = "_stats"
"""Where a run's dataset keeps its commit markers (``_stats/part-NNNNN.json``); same as plan.STATS_DIR."""


def shard_name(index: int) -> str:
    """Name of the index-th shard of a dataset, without extension."""
    return f"part-{index:05d}"


def is_remote(path: str) -> bool:
    """Whether a path is an fsspec URL other than a local file."""
    return "://" in path and not path.startswith("file://")


def filesystem(path: str) -> tuple[Any, str]:
    """The fsspec filesystem of a path and the path as that filesystem names it.

    Remote filesystems come wrapped in :class:`~curator.object_store.RetryingFileSystem`.
    """
    fs, fs_path = fsspec.core.url_to_fs(path)
    return with_retries(fs), fs_path


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
    fs, fs_path = filesystem(path)
    raw = fs.cat_file(fs_path)
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
    """Write JSON to ``path`` atomically: temp file and rename on local disk, one PUT on object stores."""
    fs, fs_path = filesystem(path)
    blob = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
    if not renames_atomically(fs):
        fs.pipe_file(fs_path, blob)
        return
    fs.makedirs(fs_path.rsplit("/", 1)[0], exist_ok=True)
    tmp = _tmp_name(fs_path)
    with fs.open(tmp, "wb") as fh:
        fh.write(blob)
    fs.mv(tmp, fs_path)


def read_json(path: str) -> Any | None:
    """Read a JSON file, or return None if it does not exist or is not valid JSON."""
    fs, fs_path = filesystem(path)
    try:
        return json.loads(fs.cat_file(fs_path))
    except (FileNotFoundError, IsADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def remove_file(path: str) -> None:
    """Delete a file; no error if there is none (object stores do not say whether there was)."""
    fs, fs_path = filesystem(path)
    try:
        fs.rm_file(fs_path)
    except FileNotFoundError:
        pass


def copy_file(src: str, dest: str) -> None:
    """Copy a file to ``dest`` so that ``dest`` is never seen half-written (any two filesystems).

    Local destination: a temp file renamed into place. Object store: a server-side copy within
    one store, else the bytes pass through a local spool file uploaded in one request.
    """
    src_fs, src_path = filesystem(src)
    dest_fs, dest_path = filesystem(dest)
    if renames_atomically(dest_fs):
        dest_fs.makedirs(dest_path.rsplit("/", 1)[0], exist_ok=True)
        tmp = _tmp_name(dest_path)
        try:
            src_fs.get_file(src_path, tmp)
            dest_fs.mv(tmp, dest_path)
        except BaseException:
            _unlink(tmp)
            raise
    elif unwrap(src_fs) is unwrap(dest_fs):  # fsspec caches instances: same store, same options
        dest_fs.copy(src_path, dest_path)
    else:
        spool = _spool_file()
        try:
            src_fs.get_file(src_path, spool)
            dest_fs.put_file(spool, dest_path)
        finally:
            _unlink(spool)


def _spool_file() -> str:
    """A new local file for staging an upload (in the system temp folder, ``TMPDIR``)."""
    fd, spool = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".part")
    os.close(fd)
    return spool


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ShardWriter:
    """Streams Arrow tables into one Parquet shard, published atomically on :meth:`commit`.

    On local disk the shard is a temp file in its folder, renamed into place; on an object store
    it is a local spool file, uploaded whole (with retries) on commit. Tables with differing but
    compatible schemas (e.g. a column that is all-null in one batch) are cast to the first batch's
    schema; the schema can also be given up front.
    """

    def __init__(self, path: str, schema: pa.Schema | None = None) -> None:
        self.path = path
        self._fs, self._fs_path = filesystem(path)
        self._local = renames_atomically(self._fs)
        if self._local:
            self._fs.makedirs(self._fs_path.rsplit("/", 1)[0], exist_ok=True)
            self._tmp = _tmp_name(self._fs_path)
        else:
            self._tmp = ""  # the local spool file, made on the first write
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
            if not self._local:
                self._tmp = _spool_file()
            self._sink = self._fs.open(self._tmp, "wb") if self._local else open(self._tmp, "wb")
            self._writer = pq.ParquetWriter(self._sink, self._schema, compression=PARQUET_COMPRESSION)
        if table.schema != self._schema:
            table = conform(table, self._schema)
        if table.num_rows:
            self._writer.write_table(table, row_group_size=row_group_size)
            self.rows += table.num_rows

    def commit(self, empty_schema: pa.Schema | None = None) -> None:
        """Finish the file and publish it. An unwritten shard becomes an empty one."""
        if self._writer is None:
            self.write(pa.Table.from_batches([], schema=self._schema or empty_schema or pa.schema([])))
        assert self._writer is not None
        self._writer.close()
        self._sink.close()
        if self._local:
            self._fs.mv(self._tmp, self._fs_path)
            return
        try:
            self._fs.put_file(self._tmp, self._fs_path)
        finally:
            _unlink(self._tmp)

    def abort(self) -> None:
        """Drop the temporary (or spool) file."""
        try:
            if self._writer is not None:
                self._writer.close()
                self._sink.close()
            if not self._local:
                if self._tmp:
                    _unlink(self._tmp)
            elif self._fs.exists(self._tmp):
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
                 max_batch_bytes: int = MAX_BATCH_BYTES, policy: RetryPolicy = DEFAULT_POLICY) -> Iterator[pa.Table]:
    """Yield a Parquet shard as tables of at most ``batch_rows`` rows (bounded memory).

    Batches are also kept near ``max_batch_bytes`` (uncompressed, estimated from the file's
    metadata), so a shard of raw HTML is not read 10,000 pages at a time. A read broken by a
    transient error (a reset connection to an object store) is reopened and resumed at the first
    row not yet yielded, up to ``policy.attempts`` times in a row.
    """
    fs, fs_path = filesystem(path)
    done = 0  # rows yielded so far
    failures = 0
    while True:
        try:
            for table in _read_from(fs, fs_path, done, batch_rows, columns, max_batch_bytes):
                failures = 0
                done += table.num_rows
                yield table
            return
        except Exception as exc:
            failures += 1
            if not is_transient(exc) or failures >= policy.attempts:
                raise
            wait = policy.delay(failures)
            log.warning("read %s: transient error after %d rows (attempt %d/%d), resuming in %.2fs: %s: %s",
                        path, done, failures, policy.attempts, wait, type(exc).__name__, exc)
            time.sleep(wait)


def _read_from(fs: Any, fs_path: str, start: int, batch_rows: int, columns: list[str] | None,
               max_batch_bytes: int) -> Iterator[pa.Table]:
    """The batches of a Parquet file from row ``start`` on (row groups before it are not read)."""
    with fs.open(fs_path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        meta = pf.metadata
        if meta.num_rows == 0:
            if start == 0:
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
        if start == 0:
            batches = pf.iter_batches(batch_size=rows, columns=columns)
            skip = 0
        else:
            first, offset = 0, 0
            while first < meta.num_row_groups and offset + meta.row_group(first).num_rows <= start:
                offset += meta.row_group(first).num_rows
                first += 1
            if first == meta.num_row_groups:
                return
            batches = pf.iter_batches(batch_size=rows, columns=columns,
                                      row_groups=list(range(first, meta.num_row_groups)))
            skip = start - offset
        for batch in batches:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch, skip = batch.slice(skip), 0
            yield pa.Table.from_batches([batch])


def read_schema(path: str) -> pa.Schema:
    """The Arrow schema of a Parquet shard."""
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        return pq.ParquetFile(fh).schema_arrow


def list_shards(dataset_dir: str, committed_only: bool = True) -> list[str]:
    """The Parquet shards of a dataset directory, sorted; hidden and ``_``-prefixed names skipped.

    In a dataset written by a run (it has a ``_stats`` folder of commit markers) a shard without
    its marker is not part of the dataset (a killed run left it, or it is being rewritten) and is
    left out, unless ``committed_only`` is False. Other datasets list every shard.
    """
    fs, fs_path = filesystem(dataset_dir)
    if not fs.isdir(fs_path):
        raise FileNotFoundError(dataset_dir)
    entries = fs.ls(fs_path, detail=False)
    names = sorted(
        p for p in entries
        if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith((".", "_"))
    )
    commit_dir = f"{fs_path.rstrip('/')}/{COMMIT_DIR}"
    if committed_only and any(p.rstrip("/").rsplit("/", 1)[-1] == COMMIT_DIR for p in entries):
        markers = {p.rsplit("/", 1)[-1] for p in fs.ls(commit_dir, detail=False)}
        uncommitted = [n for n in names if n.rsplit("/", 1)[-1][: -len(".parquet")] + ".json" not in markers]
        if uncommitted:
            log.info("%s: leaving out %d shards without a commit marker (%s)", dataset_dir, len(uncommitted),
                     ", ".join(n.rsplit("/", 1)[-1] for n in uncommitted[:5]))
            left_out = set(uncommitted)
            names = [n for n in names if n not in left_out]
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

