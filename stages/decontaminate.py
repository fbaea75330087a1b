"""Benchmark decontamination (``dedup.decontaminate``): word n-gram overlap with benchmark test sets.

The Nemotron-CC / GPT-3 / Llama rule: a document is contaminated by a benchmark item when it
contains at least ``min_matches`` of the item's word ``ngram``-grams (13 by default) after
normalisation (lower-case; punctuation, symbols and format characters deleted; split on whitespace;
see :mod:`stages.ngram_index`).

Benchmarks are JSONL or JSONL.gz files, one item per line. An item's text is the values of its
``fields`` (default: the first of question, problem, prompt, input, text that the first record
has); each field value, or each string of a list value (e.g. MMLU ``choices``), is a *segment*,
and n-grams never span two segments. Items shorter than ``ngram`` words: a segment of fewer words
counts as one n-gram of its own length, which must appear as a contiguous word sequence, and only
when it has at least ``min_item_words`` words (default 8, GPT-3's lower bound): shorter ones
("which statement is true", 4 words) would flag unrelated text. Items with no indexed n-gram are
counted as ``items_skipped`` in the report. An item with fewer than ``min_matches`` n-grams in all
is contaminating when all of them are found. Item ``i`` of a benchmark is its ``i``-th JSON record
(0-based, blank lines skipped).

Columns added: ``contamination`` (list<string> of ``benchmark:item_index`` flagged, sorted by
benchmark order then index; empty when clean) and ``contamination_ngrams`` (int32: distinct
benchmark n-grams found in the document, of any item, even below ``min_matches``). ``mode: flag``
keeps every row; ``mode: remove`` drops contaminated rows with the reason
``contaminated:<benchmark>`` (the first listed benchmark they match).

Phases (each resumable):
1. ``match``: per input shard, scan the text column; write the rows with any benchmark n-gram to
   ``_work/match/part-NNNNN.parquet`` (row, id, contamination, ngrams) and return a small summary
   (docs per found item with their first 10 ids, contaminated docs per benchmark);
2. the client merges the summaries in shard order into ``<stage>/_contamination.json``;
3. output: per input shard, its rows with the two columns (rows dropped in ``remove`` mode).

The report is written before any output shard, so a run killed at any moment leaves it in place
for the rerun, which skips the finished shards. Benchmark files are read again on the workers,
once per process (the n-gram index is kept for later tasks).

Paths: a benchmark ``path`` that is relative is taken relative to ``benchmark_dir``, which in a
pipeline file is relative to the file (from Python, or when not given: the working directory).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from curator.columns import put_column
from curator.global_run import GlobalRun
from curator.plan import CONTAMINATION_REPORT, ShardTask
from curator.stage import DROP_REASON, GlobalStage, PathParam, ShardStats, split_counted, split_drops
from curator.storage import (
    ShardWriter, digest, file_fingerprint, filesystem, is_remote, join, read_batches, write_json_atomic,
)
from curator.tasks import write_shard
from stages.ngram_index import NgramIndex, word_hashes

DEFAULT_FIELDS = ("question", "problem", "prompt", "input", "text")
REASON_PREFIX = "contaminated:"
PREVIEW_CHARS = 200
MAX_DOC_IDS = 10
CONTAMINATION = "contamination"
NGRAMS = "contamination_ngrams"
MATCH_SCHEMA = pa.schema([("row", pa.int64()), ("id", pa.string()), (CONTAMINATION, pa.list_(pa.string())),
                          (NGRAMS, pa.int32())])


class BenchmarkError(ValueError):
    """A benchmark file that cannot be used; the message names the file (and line)."""


class Benchmark(BaseModel):
    """One benchmark test set: a JSONL(.gz) file, one item per line."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name used in the report, the column and drop reasons (no ':').")
    path: str = Field(description="JSONL or JSONL.gz file; relative paths are relative to benchmark_dir.")
    fields: list[str] | None = Field(None, min_length=1, description=(
        "JSON fields making up an item's text (default: the first of question, problem, prompt, "
        "input, text present in the first record)."))


@dataclass
class BenchmarkItems:
    """A benchmark's items as read from its file."""

    name: str
    path: str
    fields: list[str]
    segments: list[list[str]]
    """Per item: its text segments (one per field value or list element)."""

    def preview(self, index: int) -> str:
        """The first characters of an item's text, whitespace collapsed."""
        text = " | ".join(s for s in self.segments[index] if s)
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _segments(value: Any, where: str, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool | int | float):
        return [str(value)]
    if isinstance(value, list):
        return [s for v in value for s in _segments(v, where, field)]
    raise BenchmarkError(f"{where}: field {field!r} is a {type(value).__name__}, not text or a list of texts")


def read_benchmark(bench: Benchmark) -> BenchmarkItems:
    """Read a benchmark file; raise :class:`BenchmarkError` naming the file and line on problems."""
    path = bench.path
    fields = list(bench.fields) if bench.fields else None
    items: list[list[str]] = []
    try:
        with fsspec.open(path, "rb", compression="infer") as fh:
            for lineno, raw in enumerate(fh, 1):
                where = f"{path}:{lineno}"
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.rstrip(b"\r\n"))
                except UnicodeDecodeError as exc:
                    raise BenchmarkError(f"{where}: not UTF-8 text: {exc}") from None
                except json.JSONDecodeError as exc:
                    raise BenchmarkError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(record, dict):
                    raise BenchmarkError(f"{where}: expected a JSON object, got {type(record).__name__}")
                if fields is None:
                    fields = [next((f for f in DEFAULT_FIELDS if f in record), "")]
                    if not fields[0]:
                        raise BenchmarkError(
                            f"{where}: none of the fields {', '.join(DEFAULT_FIELDS)} in the record "
                            f"(it has {', '.join(sorted(record)) or 'none'}): give the benchmark's `fields`")
                segments: list[str] = []
                for field in fields:
                    if field not in record:
                        raise BenchmarkError(f"{where}: no field {field!r} in the record "
                                             f"(it has {', '.join(sorted(record)) or 'none'})")
                    segments += _segments(record[field], where, field)
                items.append(segments)
    except FileNotFoundError:
        raise BenchmarkError(f"benchmark {bench.name!r}: file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as exc:  # corrupt gzip, unreadable file
        raise BenchmarkError(f"benchmark {bench.name!r}: cannot read {path}: {exc}") from None
    return BenchmarkItems(bench.name, path, fields or [], items)


@dataclass
class Matches:
    """The contamination found in one batch of documents."""

    ngrams: np.ndarray
    """Per document: distinct benchmark n-grams found (int32)."""
    doc: np.ndarray
    """Flagged (document, item) pairs, sorted by document then item (global item numbers)."""
    item: np.ndarray

    def contamination(self, labels: pa.Array) -> pa.ListArray:
        """The ``contamination`` column: per document the labels of its flagged items."""
        counts = np.bincount(self.doc, minlength=len(self.ngrams))
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), labels.take(pa.array(self.item, pa.int64())))

    def first_items(self) -> tuple[np.ndarray, np.ndarray]:
        """For each contaminated document, its first flagged item: (documents, items)."""
        if not len(self.doc):
            return self.doc, self.item
        first = np.ones(len(self.doc), bool)
        first[1:] = self.doc[1:] != self.doc[:-1]
        return self.doc[first], self.item[first]


class Decontaminate(GlobalStage):
    """Find benchmark test items (word 13-gram overlap) in documents; flag or remove them, with a report."""

    name = "dedup.decontaminate"
    requires = ("id", "text")
    adds = (CONTAMINATION, NGRAMS)

    benchmarks: list[Benchmark] = Field(min_length=1, description=(
        "Benchmark test sets: a list of {name, path, fields}."))
    benchmark_dir: PathParam = Field("", description=(
        "Folder that relative benchmark paths are taken from; in a pipeline file relative to the "
        "file. Empty: the working directory."))
    ngram: int = Field(13, ge=1, le=64, description="Words per n-gram.")
    min_matches: int = Field(1, ge=1, description=(
        "Distinct n-grams of an item a document must contain to be contaminated by it (items with "
        "fewer n-grams: all of them)."))
    min_item_words: int = Field(8, ge=1, description=(
        "A text segment shorter than `ngram` words is matched as a whole when it has at least this "
        "many words, and skipped otherwise."))
    column: str = Field("text", description="Column holding the document text.")
    mode: Literal["flag", "remove"] = Field("flag", description=(
        "flag: add the columns and keep every row; remove: drop contaminated rows "
        "(reason contaminated:<benchmark>)."))

    _index: NgramIndex | None = PrivateAttr(default=None)
    _items: list[BenchmarkItems] | None = PrivateAttr(default=None)
    _labels: pa.Array | None = PrivateAttr(default=None)
    _item_bench: np.ndarray | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_benchmarks(self) -> Decontaminate:
        names = [b.name for b in self.benchmarks]
        for name in names:
            if not name or ":" in name or any(ch.isspace() for ch in name):
                raise ValueError(f"benchmark name {name!r}: must be non-empty, without ':' or spaces")
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate benchmark names: {', '.join(dups)}")
        base = self.benchmark_dir
        if base and not is_remote(base):
            base = os.path.abspath(os.path.expanduser(base))
            self.benchmark_dir = base
        resolved = []
        for bench in self.benchmarks:
            path = os.path.expanduser(bench.path.removeprefix("file://"))
            if is_remote(path):
                pass
            elif base and is_remote(base) and not os.path.isabs(path):
                path = join(base, path)
            else:
                path = os.path.normpath(os.path.join(base or os.getcwd(), path))
                if not os.path.isfile(path):
                    raise ValueError(f"benchmark {bench.name!r}: file not found: {path} (relative paths are "
                                     "taken from benchmark_dir, in a pipeline file relative to the file)")
            resolved.append(bench.model_copy(update={"path": path}))
        self.benchmarks = resolved
        return self

    def required_columns(self) -> tuple[str, ...]:
        return ("id", self.column)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return [c for c in input_columns if c not in self.adds] + list(self.adds)

    # ------------------------------------------------------------------ index and matching

    def read_items(self) -> list[BenchmarkItems]:
        """Read every benchmark file (cached on the stage)."""
        if self._items is None:
            self._items = [read_benchmark(b) for b in self.benchmarks]
        return self._items

    def setup(self) -> None:
        """Read the benchmark files and build the n-gram index (once; later calls do nothing)."""
        if self._index is not None:
            return
        items = self.read_items()
        segments: list[str] = []
        segment_item: list[int] = []
        labels: list[str] = []
        item_bench: list[int] = []
        for b, bench in enumerate(items):
            for i, segs in enumerate(bench.segments):
                g = len(labels)
                labels.append(f"{bench.name}:{i}")
                item_bench.append(b)
                segments += segs
                segment_item += [g] * len(segs)
        self._index = NgramIndex(segments, np.array(segment_item, np.int64), len(labels), self.ngram,
                                 self.min_item_words)
        self._labels = pa.array(labels, pa.string())
        self._item_bench = np.array(item_bench, np.int64)

    @property
    def index(self) -> NgramIndex:
        """The n-gram index (built by :meth:`setup` on first use)."""
        self.setup()
        assert self._index is not None
        return self._index

    def match(self, texts: pa.Array | pa.ChunkedArray) -> Matches:
        """The contamination of each text: n-grams found, and the items it is flagged for."""
        index = self.index
        found = index.scan(texts)
        need = np.minimum(self.min_matches, index.item_ngrams[found.item])
        flagged = found.hits >= need
        return Matches(found.ngrams, found.doc[flagged], found.item[flagged])

    def reasons(self, matches: Matches) -> pa.Array:
        """Drop reasons for ``mode: remove`` (null for clean documents)."""
        assert self._item_bench is not None
        out = np.full(len(matches.ngrams), None, dtype=object)
        docs, items = matches.first_items()
        names = np.array([REASON_PREFIX + b.name for b in self.benchmarks], dtype=object)
        out[docs] = names[self._item_bench[items]]
        return pa.array(out, pa.string())

    def process(self, batch: pa.Table) -> pa.Table:
        """Stage-level API: ``batch`` with the two columns (and ``drop_reason`` in remove mode)."""
        matches = self.match(batch.column(self.column))
        assert self._labels is not None
        out = put_column(batch, CONTAMINATION, matches.contamination(self._labels))
        out = put_column(out, NGRAMS, pa.array(matches.ngrams, pa.int32()))
        if self.mode == "remove":
            out = out.append_column(DROP_REASON, self.reasons(matches))
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Stage-level API: the kept rows of ``batch``, with the two columns."""
        return split_drops(self.process(batch)).kept

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        items = self.read_items()  # on the client: a bad benchmark file fails before any task
        params = self.model_dump(mode="json")
        inputs = ctx.input_shards
        match_dir = join(ctx.work_dir, "match")
        summaries = ctx.map("match", _match_shard, list(enumerate(inputs)), params, match_dir, ctx.batch_rows)
        report = self.report(items, summaries, ctx.stage_id)
        write_json_atomic(join(ctx.plan.directory, CONTAMINATION_REPORT), report)
        ctx.map_outputs(_output_shard, params, ctx.batch_rows,
                        per_task=lambda task: (inputs[task.index], _match_file(match_dir, task.index)))

    def indexed_items(self, items: list[BenchmarkItems]) -> np.ndarray:
        """Per item (all benchmarks in order): whether it has any n-gram in the index."""
        segments: list[str] = []
        owner: list[int] = []
        n_items = 0
        for bench in items:
            for segs in bench.segments:
                segments += segs
                owner += [n_items] * len(segs)
                n_items += 1
        _, offsets = word_hashes(pa.array(segments, pa.string()))
        usable = np.diff(offsets) >= max(1, min(self.ngram, self.min_item_words))
        return np.bincount(np.array(owner, np.int64)[usable], minlength=n_items) > 0

    def report(self, items: list[BenchmarkItems], summaries: list[dict[str, Any]],
               stage_id: str = "") -> dict[str, Any]:
        """Merge per-shard summaries (in shard order) into the contamination report."""
        indexed_all = self.indexed_items(items)
        found: dict[int, list[Any]] = {}
        bench_docs = {b.name: 0 for b in items}
        docs = contaminated = 0
        for summary in summaries:
            docs += summary["docs"]
            contaminated += summary["contaminated"]
            for name, count in summary["bench_docs"].items():
                bench_docs[name] = bench_docs.get(name, 0) + count
            for key, (count, ids) in summary["items"].items():
                entry = found.setdefault(int(key), [0, []])
                entry[0] += count
                entry[1].extend(ids[: MAX_DOC_IDS - len(entry[1])])
        out: dict[str, Any] = {}
        g = 0
        for bench in items:
            n = len(bench.segments)
            indexed = indexed_all[g:g + n]
            found_items = [
                {"index": i, "preview": bench.preview(i), "docs": found[g + i][0], "doc_ids": found[g + i][1]}
                for i in range(n) if g + i in found
            ]
            out[bench.name] = {
                "path": bench.path, "fields": bench.fields, "items": n,
                "items_indexed": int(np.count_nonzero(indexed)), "items_skipped": int(np.count_nonzero(~indexed)),
                "items_found": len(found_items), "docs_contaminated": bench_docs.get(bench.name, 0),
                "found": found_items,
            }
            g += n
        return {
            "stage": stage_id, "ngram": self.ngram, "min_matches": self.min_matches,
            "min_item_words": self.min_item_words, "mode": self.mode, "column": self.column,
            "index_ngrams": summaries[0]["index_ngrams"] if summaries else None,
            "docs_scanned": docs, "docs_contaminated": contaminated, "benchmarks": out,
        }


# ---------------------------------------------------------------------- worker side

_WORKER_STAGES: dict[str, Decontaminate] = {}
MAX_WORKER_INDEXES = 4


def _worker_stage(params: dict[str, Any]) -> Decontaminate:
    """The stage with its index, built once per worker process (and again if a file changed)."""
    stage = Decontaminate(**params)
    key = digest([params, [file_fingerprint(b.path) for b in stage.benchmarks]])
    cached = _WORKER_STAGES.get(key)
    if cached is None:
        stage.setup()
        while len(_WORKER_STAGES) >= MAX_WORKER_INDEXES:
            _WORKER_STAGES.pop(next(iter(_WORKER_STAGES)))  # the oldest
        _WORKER_STAGES[key] = cached = stage
    return cached


def _match_file(match_dir: str, shard: int) -> str:
    return join(match_dir, f"part-{shard:05d}.parquet")


def _match_shard(item: tuple[int, str], params: dict[str, Any], match_dir: str, batch_rows: int) -> dict[str, Any]:
    """Phase 1: scan one shard; write its matched rows; return its summary for the report."""
    shard, path = item
    stage = _worker_stage(params)
    assert stage._labels is not None and stage._item_bench is not None
    names = [b.name for b in stage.benchmarks]
    found: dict[int, list[Any]] = {}
    bench_docs = np.zeros(len(names), np.int64)
    docs = contaminated = 0
    writer = ShardWriter(_match_file(match_dir, shard), MATCH_SCHEMA)
    try:
        for batch in read_batches(path, batch_rows, columns=["id", stage.column]):
            matches = stage.match(batch.column(stage.column))
            rows = np.flatnonzero(matches.ngrams)
            ids = batch.column("id").cast(pa.string())
            if len(rows):
                take = pa.array(rows, pa.int64())
                writer.write(pa.table({
                    "row": pa.array(rows + docs, pa.int64()),
                    "id": ids.take(take),
                    CONTAMINATION: matches.contamination(stage._labels).take(take),
                    NGRAMS: pa.array(matches.ngrams[rows], pa.int32()),
                }, schema=MATCH_SCHEMA))
            if len(matches.doc):
                id_list = ids.take(pa.array(matches.doc, pa.int64())).to_pylist()
                for item_no, doc_id in zip(matches.item.tolist(), id_list):
                    entry = found.setdefault(item_no, [0, []])
                    entry[0] += 1
                    if len(entry[1]) < MAX_DOC_IDS:
                        entry[1].append(doc_id)
                pairs = np.unique(matches.doc * len(names) + stage._item_bench[matches.item])
                bench_docs += np.bincount(pairs % len(names), minlength=len(names))
                contaminated += len(np.unique(matches.doc))
            docs += batch.num_rows
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"docs": docs, "contaminated": contaminated, "index_ngrams": stage.index.size,
            "bench_docs": {n: int(c) for n, c in zip(names, bench_docs.tolist()) if c},
            "items": {str(k): v for k, v in found.items()}}


def _output_shard(task: ShardTask, input_path: str, match_path: str, params: dict[str, Any],
                  batch_rows: int) -> dict[str, Any]:
    """Phase 3: one output shard: its rows with the two columns, contaminated ones dropped in remove mode."""
    mode = params["mode"]
    fs, fs_path = filesystem(match_path)
    with fs.open(fs_path, "rb") as fh:
        found = pq.read_table(fh, schema=MATCH_SCHEMA)
    rows = found.column("row").to_numpy()
    lists = found.column(CONTAMINATION).combine_chunks()
    ngrams_found = found.column(NGRAMS).to_numpy()
    stats = ShardStats()

    def results() -> Iterator[tuple[pa.Table, pa.Table | None]]:
        offset = 0
        for batch in read_batches(input_path, batch_rows):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            here = rows[lo:hi] - offset
            part = lists.slice(lo, hi - lo)
            counts = np.zeros(n, np.int64)
            counts[here] = part.value_lengths().to_numpy(zero_copy_only=False)
            ngrams = np.zeros(n, np.int32)
            ngrams[here] = ngrams_found[lo:hi]
            offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
            contamination = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), part.flatten())
            out = put_column(batch, CONTAMINATION, contamination)
            out = put_column(out, NGRAMS, pa.array(ngrams, pa.int32()))
            if mode == "remove":
                reasons = np.full(n, None, dtype=object)
                flagged = here[counts[here] > 0]
                if len(flagged):
                    firsts = contamination.take(pa.array(flagged, pa.int64())).to_pylist()
                    reasons[flagged] = [REASON_PREFIX + labels[0].rsplit(":", 1)[0] for labels in firsts]
                out = out.append_column(DROP_REASON, pa.array(reasons, pa.string()))
            res = split_counted(batch, out, stats)
            offset += n
            yield res.kept, res.rejected

    return write_shard(task, results(), stats)
