"""The stage contract: what every stage declares, and the bookkeeping the base classes do for it.

A stage is a pydantic model: its fields are its typed parameters, validated when a pipeline file
is loaded (or when the stage is constructed from Python). Class variables declare its registered
name, the columns it needs and adds, and the resources it asks for.

Three kinds:
- ``SourceStage`` reads input files (WARC, JSONL, ...) and yields Arrow tables.
- ``MapStage`` turns one batch into another: ``setup()`` once per worker, ``process(batch)``.
- ``GlobalStage`` runs several Dask phases over a whole dataset (dedup, calibration, blending).

Dropping rows: ``process`` returns its batch with a string column ``drop_reason``; rows where it is
not null are dropped, counted under that reason, and kept in a side dataset when the pipeline asks
for ``keep_rejected``. The base class does the counting, so no stage counts for itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, get_args

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from curator.global_run import GlobalRun

class _PathMarker:
    """Marks a stage parameter as a file path (see :data:`PathParam`)."""


PathParam = Annotated[str, _PathMarker()]
"""A stage parameter that names a file: in a pipeline file, a relative value is resolved against
the pipeline file's folder (like every other path there); from Python, against the working
directory."""


def _is_path_annotation(annotation: Any) -> bool:
    """Whether a type is :data:`PathParam`, optional or not."""
    if any(isinstance(m, _PathMarker) for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(_is_path_annotation(arg) for arg in get_args(annotation))


def path_params(cls: type[BaseModel]) -> list[str]:
    """Names of a stage class's parameters declared as :data:`PathParam` (or ``PathParam | None``)."""
    return [name for name, info in cls.model_fields.items()
            if any(isinstance(m, _PathMarker) for m in info.metadata) or _is_path_annotation(info.annotation)]


def nested_models(cls: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Parameters whose value is itself a pydantic model (e.g. ``llm:``), by name, with that model's class."""
    out: dict[str, type[BaseModel]] = {}
    for name, info in cls.model_fields.items():
        candidates = [info.annotation, *get_args(info.annotation)]
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out[name] = candidate
                break
    return out


DROP_REASON = "drop_reason"
"""Reserved column: a stage sets it to a reason to drop a row; the base class removes it."""

log = logging.getLogger("curator.stage")


@dataclass(frozen=True)
class Resources:
    """What one task of a stage asks a worker for."""

    cpus: float = 1.0
    gpus: float = 0.0
    """GPUs per task: above 0 the task asks Dask for the worker resource ``GPU``."""
    memory_gb: float = 2.0
    cpu_fallback: bool = True
    """A GPU stage that can also run on a CPU worker (its PyTorch path); False: without a GPU
    worker the run refuses to start."""


@dataclass
class ShardStats:
    """Counts kept by the base classes for one shard (or one batch) of one stage."""

    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, other: ShardStats) -> None:
        """Accumulate another batch's counts into this one."""
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.drops.update(other.drops)
        self.seconds += other.seconds

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what the per-shard stats files hold)."""
        return {
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "drops": dict(sorted(self.drops.items())),
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardStats:
        """Inverse of :meth:`to_json`."""
        return cls(
            docs_in=int(data.get("docs_in", 0)),
            docs_out=int(data.get("docs_out", 0)),
            bytes_in=int(data.get("bytes_in", 0)),
            bytes_out=int(data.get("bytes_out", 0)),
            drops=Counter({str(k): int(v) for k, v in data.get("drops", {}).items()}),
            seconds=float(data.get("seconds", 0.0)),
        )


@dataclass
class BatchResult:
    """A processed batch: the rows kept, the rows dropped (with ``drop_reason``), and the counts."""

    kept: pa.Table
    rejected: pa.Table | None
    stats: ShardStats


def content_bytes(table: pa.Table) -> int:
    """Bytes of document content in a table: UTF-8 bytes of ``text`` if present, else of ``body``.

    This is what the funnel reports as bytes. Arrow buffer sizes would count ids and scores too.
    """
    for name in ("text", "body"):
        if name in table.column_names:
            col = table.column(name)
            if pa.types.is_string(col.type) or pa.types.is_binary(col.type):
                lengths = pc.binary_length(col)
            elif pa.types.is_large_string(col.type) or pa.types.is_large_binary(col.type):
                lengths = pc.binary_length(col)
            else:
                return 0
            total = pc.sum(lengths).as_py()
            return int(total or 0)
    return 0


class Stage(BaseModel):
    """Base of every stage. Subclasses set ``name`` and declare their parameters as fields."""

    model_config = ConfigDict(extra="forbid", frozen=False, arbitrary_types_allowed=True)

    name: ClassVar[str] = ""
    """Registered dotted name used in pipeline files (``uses: text.extract``)."""
    version: ClassVar[int] = 1
    """Bump when the stage's output changes for the same parameters: invalidates finished shards."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Columns the stage reads; checked against upstream stages when a pipeline is loaded."""
    adds: ClassVar[tuple[str, ...]] = ()
    """Columns the stage adds."""
    removes: ClassVar[tuple[str, ...]] = ()
    """Columns the stage removes."""
    resources: ClassVar[Resources] = Resources()
    unpicklable: ClassVar[tuple[str, ...]] = ()
    """Private attributes (loaded models, big lookup tables) sent to workers as None: each worker's
    ``setup()`` loads its own."""

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        if self.unpicklable:
            private = dict(state.get("__pydantic_private__") or {})
            private.update(dict.fromkeys(self.unpicklable))
            state["__pydantic_private__"] = private
        return state

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def required_columns(self) -> tuple[str, ...]:
        """Columns this stage reads with its parameters (by default ``requires``)."""
        return self.requires

    def output_columns(self, input_columns: list[str]) -> list[str]:
        """Columns present after this stage, given those present before it."""
        out = [c for c in input_columns if c not in self.removes]
        out += [c for c in self.adds if c not in out]
        return out

    def setup(self) -> None:
        """Load models and other heavy state; called once per worker process before any work."""


class SourceStage(Stage):
    """A stage that reads input files and yields Arrow tables (one output shard per input file)."""

    def read(self, path: str) -> Iterator[pa.Table]:
        """Yield batches of rows read from one input file (a local path or an fsspec URL).

        Records that cannot be read are yielded as rows with a ``drop_reason``, never skipped.
        """
        raise NotImplementedError


class MapStage(Stage):
    """A stage that maps each batch to a new batch, independently of every other batch."""

    def process(self, batch: pa.Table) -> pa.Table:
        """Return the processed batch. Rows to drop carry a reason in the ``drop_reason`` column."""
        raise NotImplementedError

    def run_batch(self, batch: pa.Table, *, record_context: str = "") -> BatchResult:
        """Process one batch with bookkeeping: timing, drop counting, and bad-record isolation.

        If ``process`` raises on the batch, the rows are processed one at a time so that only the
        records that raise are dropped (reason ``error:<ExceptionType>``), each logged with its id.
        """
        start = time.perf_counter()
        try:
            out = self.process(batch)
        except Exception:  # noqa: BLE001 - isolate the bad record(s) instead of failing the shard
            out = self._process_row_by_row(batch, record_context)
        result = split_drops(out)
        result.stats.docs_in = batch.num_rows
        result.stats.bytes_in = content_bytes(batch)
        result.stats.seconds = time.perf_counter() - start
        return result

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Stage-level API: process a batch and return the kept rows."""
        return self.run_batch(batch).kept

    def _process_row_by_row(self, batch: pa.Table, record_context: str) -> pa.Table:
        pieces: list[pa.Table] = []
        first_error: Exception | None = None
        failed = 0
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                pieces.append(self.process(row))
            except Exception as exc:  # noqa: BLE001
                first_error = first_error or exc
                failed += 1
                record_id = row.column("id")[0].as_py() if "id" in row.column_names else f"row {i}"
                log.warning(
                    "stage %s%s: record %s dropped: %s: %s",
                    self.name, f" ({record_context})" if record_context else "",
                    record_id, type(exc).__name__, exc,
                )
                reason = f"error:{type(exc).__name__}"
                pieces.append(_with_reason(row, reason))
        if first_error is not None and batch.num_rows > 1 and failed == batch.num_rows:
            # Every record failing is a broken stage, not bad data: fail the shard so it is reported.
            raise first_error
        if not pieces:
            return self.process(batch)
        return pa.concat_tables(pieces, promote_options="permissive")


class GlobalStage(Stage):
    """A stage that needs the whole dataset: it runs several Dask phases and writes a dataset.

    ``run`` is called once on the client with a :class:`curator.global_run.GlobalRun`, which
    submits phase tasks to the cluster, skips phases already done, and writes output shards.
    """

    def num_output_shards(self, num_input_shards: int) -> int:
        """How many shards the output has (by default as many as the input)."""
        return num_input_shards

    def run(self, ctx: GlobalRun) -> None:
        """Run the stage's phases through ``ctx``."""
        raise NotImplementedError


def _with_reason(table: pa.Table, reason: str) -> pa.Table:
    column = pa.array([reason] * table.num_rows, pa.string())
    if DROP_REASON in table.column_names:
        return table.set_column(table.column_names.index(DROP_REASON), DROP_REASON, column)
    return table.append_column(DROP_REASON, column)


def split_drops(table: pa.Table) -> BatchResult:
    """Split a processed table on its ``drop_reason`` column into kept and rejected rows."""
    stats = ShardStats()
    if DROP_REASON not in table.column_names:
        stats.docs_out = table.num_rows
        stats.bytes_out = content_bytes(table)
        return BatchResult(table, None, stats)
    reasons = table.column(DROP_REASON)
    if reasons.null_count == table.num_rows:  # nothing dropped: no copy of the rows
        kept = table.drop_columns([DROP_REASON])
        stats.docs_out = kept.num_rows
        stats.bytes_out = content_bytes(kept)
        return BatchResult(kept, None, stats)
    dropped_mask = pc.is_valid(reasons)
    kept = table.filter(pc.invert(dropped_mask)).drop_columns([DROP_REASON])
    rejected = table.filter(dropped_mask)
    if rejected.num_rows:
        counts = pc.value_counts(rejected.column(DROP_REASON))
        for item in counts.to_pylist():
            stats.drops[item["values"]] += int(item["counts"])
    stats.docs_out = kept.num_rows
    stats.bytes_out = content_bytes(kept)
    return BatchResult(kept, rejected if rejected.num_rows else None, stats)


def split_counted(batch_in: pa.Table, processed: pa.Table, totals: ShardStats) -> BatchResult:
    """:func:`split_drops` for a global stage's output shard: ``processed`` is ``batch_in`` with
    columns added (and ``drop_reason``); the batch's counts, input included, go into ``totals``."""
    result = split_drops(processed)
    result.stats.docs_in = batch_in.num_rows
    result.stats.bytes_in = content_bytes(batch_in)
    totals.add(result.stats)
    return result
