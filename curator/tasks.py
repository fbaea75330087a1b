"""What runs on a worker: one shard of one stage, read, processed and committed.

Tasks receive only plain data (a :class:`StageRef` and a :class:`ShardTask`) and rebuild the stage
on the worker, so stages from ``imports:`` files work on any worker and ``setup()`` runs once per
worker process: built stages are kept on the Dask worker object, keyed by config hash.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from curator.plan import ShardTask, StageRef
from curator.registry import StageRegistry
from curator.stage import DROP_REASON, MapStage, ShardStats, SourceStage, Stage, split_drops
from curator.storage import ShardWriter, filesystem, read_batches, remove_file, write_json_atomic

_CACHE_ATTR = "_curator_stage_cache"


class ShardError(RuntimeError):
    """A shard that failed as a whole; the message names the stage, the shard and its input."""

    def __init__(self, stage_id: str, shard: str, inputs: tuple[str, ...], message: str) -> None:
        where = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
        super().__init__(f"stage {stage_id}, shard {shard} (input {where}): {message}")
        self.stage_id = stage_id
        self.shard = shard

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_shard_error, (self.stage_id, self.shard, str(self)))


def _rebuild_shard_error(stage_id: str, shard: str, text: str) -> ShardError:
    err = ShardError.__new__(ShardError)
    RuntimeError.__init__(err, text)
    err.stage_id, err.shard = stage_id, shard
    return err


def _worker_cache() -> dict[str, Any]:
    """A dict that lives as long as the Dask worker (or a fresh one outside Dask)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return {}
    cache = getattr(worker, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(worker, _CACHE_ATTR, cache)
    return cache


def build_stage(ref: StageRef, cache: dict[str, Any] | None = None) -> Stage:
    """The stage for ``ref``, set up; reused from ``cache`` when this worker built it already."""
    cache = _worker_cache() if cache is None else cache
    stage = cache.get(ref.config_hash)
    if stage is None:
        reg_key = ("registry", ref.imports, ref.base_dir)
        registry = cache.get(reg_key)  # type: ignore[call-overload]
        if registry is None:
            registry = StageRegistry.discover(ref.imports, ref.base_dir)
            cache[reg_key] = registry  # type: ignore[index]
        stage = registry.get(ref.uses)(**ref.params)
        stage.setup()
        cache[ref.config_hash] = stage
    return stage


def uncommit_shard(task: ShardTask) -> None:
    """Remove a shard's commit marker before its data is rewritten.

    A marker therefore always describes the data beside it: between the rewrite of the data and
    the new marker, the shard counts as not done (and :func:`curator.storage.list_shards` leaves
    it out), on object stores as on local disk.
    """
    remove_file(task.stats_path)


def commit_shard(task: ShardTask, stats: ShardStats, rows: int) -> dict[str, Any]:
    """Write a shard's stats file, the commit marker that makes it count as done.

    It is written last, after the shard's data (and rejected side shard) are in place, in one
    atomic step (rename on local disk, a single PUT on object stores).
    """
    record = {
        "stage": task.stage_id,
        "shard": task.name,
        "fingerprint": task.fingerprint,
        "inputs": list(task.inputs) if len(task.inputs) <= 16 else f"{len(task.inputs)} shards",
        "rows": rows,
        "stats": stats.to_json(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "finished_at": time.time(),
    }
    write_json_atomic(task.stats_path, record)
    return record


def write_shard(task: ShardTask, results: Iterable[tuple[pa.Table, pa.Table | None]],
                stats: ShardStats, schema: pa.Schema | None = None) -> dict[str, Any]:
    """Stream (kept, rejected) tables into the shard (and its rejected side shard), then commit."""
    uncommit_shard(task)
    writer = ShardWriter(task.output, schema)
    rejected_writer: ShardWriter | None = None
    try:
        for kept, rejected in results:
            writer.write(kept)
            if task.rejected_path and rejected is not None and rejected.num_rows:
                if rejected_writer is None:
                    # Same columns in every rejected shard: the kept schema plus the reason.
                    rejected_writer = ShardWriter(task.rejected_path, _with_reason(writer.schema))
                rejected_writer.write(rejected)
        writer.commit()
        if task.rejected_path:
            rejected_writer = rejected_writer or ShardWriter(task.rejected_path, _with_reason(writer.schema))
            rejected_writer.commit()
    except BaseException:
        writer.abort()
        if rejected_writer is not None:
            rejected_writer.abort()
        raise
    return commit_shard(task, stats, writer.rows)


def _with_reason(schema: pa.Schema | None) -> pa.Schema:
    return (schema or pa.schema([])).append(pa.field(DROP_REASON, pa.string()))


def run_map_shard(ref: StageRef, task: ShardTask, batch_rows: int, *upstream: Any) -> dict[str, Any]:
    """Run a map stage over one input shard, batch by batch, and commit its output."""
    try:
        stage = build_stage(ref)
        assert isinstance(stage, MapStage)
        stats = ShardStats()
        source = task.inputs[0]

        def results() -> Iterable[tuple[pa.Table, pa.Table | None]]:
            for batch in read_batches(source, batch_rows):
                res = stage.run_batch(batch, record_context=f"{task.stage_id} {source}")
                stats.add(res.stats)
                yield res.kept, res.rejected

        return write_shard(task, results(), stats)
    except ShardError:
        raise
    except Exception as exc:
        raise ShardError(ref.stage_id, task.name, task.inputs, f"{type(exc).__name__}: {exc}") from exc


def run_source_shard(ref: StageRef, task: ShardTask, batch_rows: int) -> dict[str, Any]:
    """Run a source stage over one input file and commit its output."""
    try:
        stage = build_stage(ref)
        assert isinstance(stage, SourceStage)
        stats = ShardStats()
        path = task.inputs[0]
        try:
            stats.bytes_in = int(file_size(path))
        except OSError:
            stats.bytes_in = 0

        def results() -> Iterable[tuple[pa.Table, pa.Table | None]]:
            start = time.perf_counter()
            for table in stage.read(path):
                res = split_drops(table)
                stats.docs_in += table.num_rows
                stats.docs_out += res.stats.docs_out
                stats.bytes_out += res.stats.bytes_out
                stats.drops.update(res.stats.drops)
                yield res.kept, res.rejected
            stats.seconds = time.perf_counter() - start

        schema = getattr(stage, "schema", None)
        if schema is not None and DROP_REASON in schema.names:
            schema = schema.remove(schema.get_field_index(DROP_REASON))
        return write_shard(task, results(), stats, schema=schema)
    except ShardError:
        raise
    except Exception as exc:
        raise ShardError(ref.stage_id, task.name, task.inputs, f"{type(exc).__name__}: {exc}") from exc


def file_size(path: str) -> int:
    """Size of a local or remote file in bytes."""
    fs, fs_path = filesystem(path)
    return int(fs.size(fs_path))
