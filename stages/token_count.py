"""Token counting with the training tokenizer (``tokens.count``): counts stored with the data.

Every row gets an int32 column (``output``, default ``tokens``): the tokens of its ``column`` text
under the tokenizer of ``tokenizer_path`` (a ``tokenizer.json``, its folder, or a ``.gguf`` model,
counted with :class:`curator.llm.config.TokenCounter`). Rows are never dropped; rows with null or
empty text (or text the tokenizer turns into no token at all) count 0.

What one document costs the trainer beyond its text tokens:

- ``add_special_tokens``: the special tokens the tokenizer itself puts around one sequence (its
  post-processor in a tokenizer.json, e.g. Llama's BOS; BOS/EOS as the GGUF vocabulary says). This
  is what Megatron-LM's HuggingFace tokenizer does when it tokenizes a document. Off by default.
- ``eod_tokens_per_document``: tokens the trainer's preprocessing appends to each document,
  e.g. ``1`` for Megatron-LM ``preprocess_data.py --append-eod``. Default ``0``, so the counts are
  the tokenizer's own, comparable with published dataset sizes; set it to 1 to count exactly what a
  Megatron ``--append-eod`` preprocessing writes. Both are added only to documents with at least
  one text token (Megatron skips empty documents, EOD included).

Totals: each shard task writes its counts to ``_work/token_counts/part-NNNNN.json`` (documents,
tokens, and per ``group_by`` column and value its documents and tokens; null values under
``"null"``), just before the shard is committed, so a committed shard always has its record. After
the run the records of the current shards are merged into ``_token_counts.json`` beside the shards
(see :func:`merge_token_counts`), with the tokenizer's path and sha256 so that counts made with
another tokenizer are recognisable. ``group_by`` columns the data lacks are skipped and listed
there under ``missing_columns`` (with the number of shards that lack each).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr, model_validator

from curator.global_run import GlobalRun
from curator.llm.config import TokenCounter
from curator.plan import TOKEN_COUNTS, ShardTask, StageRef
from curator.shard_records import current_shard_records, shard_record_path
from curator.stage import GlobalStage, PathParam, ShardStats, split_counted
from curator.storage import is_remote, join, read_batches, read_schema, write_json_atomic
from curator.tasks import build_stage, write_shard

log = logging.getLogger("stages.token_count")

RECORDS_DIR = "token_counts"
NULL_KEY = "null"
"""The group value under which rows with a null group column are counted."""
CHUNK_CHARS = 1 << 20
"""Characters of text per ``count_many`` call: the tokenizer keeps every encoding of a call in
memory (ids, offsets, token strings), so a batch of long pages is counted in slices of about 1 MB."""


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a local file, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def special_tokens_per_sequence(path: str) -> int:
    """How many special tokens the tokenizer adds around one sequence (BOS, EOS, [CLS]/[SEP], ...)."""
    if path.endswith(".gguf"):
        from curator.llm.llama_cpp_backend import _import_llama

        vocab = _import_llama()(model_path=path, vocab_only=True, verbose=False)
        return len(vocab.tokenize(b"", add_bos=True, special=False))
    from tokenizers import Tokenizer

    processor = Tokenizer.from_file(path).post_processor
    return int(processor.num_special_tokens_to_add(False)) if processor is not None else 0


def counting_problem(path: str) -> str | None:
    """Why a tokenizer.json cannot count (it pads or truncates every encoding), or None.

    ``tokenizers`` applies the file's ``padding`` and ``truncation`` settings to every encoding, so
    such a file (common for encoder models) would give every document the same count, or cap it.
    """
    if path.endswith(".gguf"):
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    settings = [f"{name} {value}" for name, value in (("padding", tokenizer.padding),
                                                      ("truncation", tokenizer.truncation)) if value]
    return "; ".join(settings) or None


def _chunks_of_chars(items: list[tuple[int, str]], limit: int) -> Iterator[list[tuple[int, str]]]:
    """Consecutive runs of ``(index, text)`` items of at most ``limit`` characters (a longer text alone)."""
    chunk: list[tuple[int, str]] = []
    chars = 0
    for item in items:
        if chunk and chars + len(item[1]) > limit:
            yield chunk
            chunk, chars = [], 0
        chunk.append(item)
        chars += len(item[1])
    if chunk:
        yield chunk


def group_key(value: Any) -> str:
    """The key a group value is counted under (``"null"`` for null)."""
    return NULL_KEY if value is None else str(value)


@dataclass
class TokenTally:
    """Documents and tokens of a shard (or, merged, of a run), overall and per group column and value."""

    documents: int = 0
    tokens: int = 0
    empty_documents: int = 0
    by: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    missing_columns: dict[str, int] = field(default_factory=dict)

    def add_batch(self, counts: list[int], groups: dict[str, list[Any]]) -> None:
        """Count a batch: its per-row token counts and, per group column present, its values."""
        self.documents += len(counts)
        self.tokens += sum(counts)
        self.empty_documents += sum(1 for c in counts if c == 0)
        for column, values in groups.items():
            table = self.by.setdefault(column, {})
            for value, count in zip(values, counts):
                entry = table.setdefault(group_key(value), {"documents": 0, "tokens": 0})
                entry["documents"] += 1
                entry["tokens"] += count

    def add(self, other: TokenTally) -> None:
        """Accumulate another tally (another shard's)."""
        self.documents += other.documents
        self.tokens += other.tokens
        self.empty_documents += other.empty_documents
        for column, values in other.by.items():
            table = self.by.setdefault(column, {})
            for key, entry in values.items():
                mine = table.setdefault(key, {"documents": 0, "tokens": 0})
                mine["documents"] += entry["documents"]
                mine["tokens"] += entry["tokens"]
        for column, shards in other.missing_columns.items():
            self.missing_columns[column] = self.missing_columns.get(column, 0) + shards

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the per-shard record's and the summary's keys)."""
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "empty_documents": self.empty_documents,
            "by": {column: {key: dict(values[key]) for key in sorted(values)} for column, values in self.by.items()},
            "missing_columns": dict(sorted(self.missing_columns.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenTally:
        """Inverse of :meth:`to_json`."""
        by = {column: {key: {"documents": int(e["documents"]), "tokens": int(e["tokens"])} for key, e in values.items()}
              for column, values in (data.get("by") or {}).items()}
        return cls(int(data.get("documents", 0)), int(data.get("tokens", 0)), int(data.get("empty_documents", 0)),
                   by, {k: int(v) for k, v in (data.get("missing_columns") or {}).items()})


class TokenCount(GlobalStage):
    """Count each document's tokens with the training tokenizer; totals per dataset and per quality label."""

    name = "tokens.count"
    requires = ("text",)
    adds = ("tokens",)

    tokenizer_path: PathParam = Field(description=(
        "The training tokenizer: a tokenizer.json, its folder, or a .gguf model (its vocabulary); in a "
        "pipeline file relative to the file."))
    column: str = Field("text", description="Column holding the document text.")
    output: str = Field("tokens", min_length=1, description=(
        "Name of the int32 column of token counts added to every row (an existing one is replaced)."))
    group_by: list[str] = Field(default_factory=lambda: ["quality_label"], description=(
        "Columns to break the totals down by, when the data has them (missing ones are skipped and "
        "listed in the summary); null values count under \"null\"."))
    add_special_tokens: bool = Field(False, description=(
        "Add the special tokens the tokenizer puts around one sequence (e.g. a BOS) to each document's count."))
    eod_tokens_per_document: int = Field(0, ge=0, description=(
        "Tokens the trainer appends to each document, added to its count: 0 counts the text only, 1 "
        "matches Megatron-LM preprocess_data.py --append-eod."))

    _counter: TokenCounter | None = PrivateAttr(default=None)
    unpicklable: ClassVar[tuple[str, ...]] = ("_counter",)  # a llama.cpp vocabulary cannot be pickled
    _extra_per_document: int = PrivateAttr(default=0)

    @model_validator(mode="after")
    def _resolve_tokenizer(self) -> TokenCount:
        if is_remote(self.tokenizer_path):
            raise ValueError(f"tokenizer_path must be a local file, not {self.tokenizer_path}")
        path = os.path.abspath(os.path.expanduser(self.tokenizer_path))
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(path):
            raise ValueError(f"tokenizer not found: {path} (in a pipeline file, relative to the file)")
        self.tokenizer_path = path
        if self.output == self.column:
            raise ValueError(f"output {self.output!r} would overwrite the text column")
        return self

    def required_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return [c for c in input_columns if c != self.output] + [self.output]

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The input schema with the count column (int32) last, replacing an earlier one."""
        fields = [f for f in input_schema if f.name != self.output] + [pa.field(self.output, pa.int32())]
        return pa.schema(fields, metadata=input_schema.metadata)

    # ------------------------------------------------------------------ stage-level API

    def setup(self) -> None:
        """Load the tokenizer (once) and check that it can count (no padding, no truncation)."""
        if self._counter is not None:
            return
        counter = TokenCounter(self.tokenizer_path)
        problem = counting_problem(self.tokenizer_path)
        if problem is not None:
            raise ValueError(f"stage {self.name}: tokenizer {self.tokenizer_path} pads or truncates every encoding "
                             f"({problem}), so it cannot count tokens: set \"padding\" and \"truncation\" "
                             "to null in the file")
        self._extra_per_document = self.eod_tokens_per_document + (
            special_tokens_per_sequence(self.tokenizer_path) if self.add_special_tokens else 0)
        self._counter = counter

    def token_counts(self, texts: list[str | None]) -> list[int]:
        """Each text's count (text tokens plus the per-document extras; 0 for null, empty or tokenless text)."""
        self.setup()
        assert self._counter is not None
        counts = [0] * len(texts)
        todo = [(i, text) for i, text in enumerate(texts) if text]
        for chunk in _chunks_of_chars(todo, CHUNK_CHARS):
            for (i, _), n in zip(chunk, self._counter.count_many([text for _, text in chunk])):
                counts[i] = n + self._extra_per_document if n else 0
        return counts

    def count(self, batch: pa.Table) -> pa.Table:
        """Stage-level API: ``batch`` with the count column (int32) added or replaced."""
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        counts = pa.array(self.token_counts(batch.column(self.column).to_pylist()), pa.int32())
        out = batch.drop_columns([self.output]) if self.output in batch.column_names else batch
        return out.append_column(self.output, counts)

    def tally(self, counted: pa.Table, into: TokenTally | None = None) -> TokenTally:
        """Documents and tokens of a counted batch, overall and per ``group_by`` column present."""
        tally = into if into is not None else TokenTally()
        groups = {c: counted.column(c).to_pylist() for c in self.group_by if c in counted.column_names}
        tally.add_batch(counted.column(self.output).to_pylist(), groups)
        return tally

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        self.setup()  # on the client: a missing or unusable tokenizer fails before any task
        tokenizer = {"path": self.tokenizer_path, "sha256": file_sha256(self.tokenizer_path)}
        inputs = ctx.input_shards
        records_dir = join(ctx.work_dir, RECORDS_DIR)
        try:
            ctx.map_outputs(_output_shard, ctx.plan.ref, records_dir, ctx.batch_rows,
                            per_task=lambda task: (inputs[task.index],))
        finally:
            # Also after a failed shard: the summary says how many shards it covers.
            summary = merge_token_counts(ctx.output_shards, records_dir, ctx.stage_id, tokenizer, self)
            write_json_atomic(join(ctx.plan.directory, TOKEN_COUNTS), summary)
            log.info("stage %s: %s", ctx.stage_id, describe(summary))


def merge_token_counts(tasks: list[ShardTask], records_dir: str, stage_id: str, tokenizer: dict[str, str],
                       stage: TokenCount) -> dict[str, Any]:
    """The summary: the records of the current shards (stale ones of other configs ignored), merged.

    Keys: ``stage``, ``tokenizer`` (path, sha256), ``column``, ``output``, ``add_special_tokens``,
    ``eod_tokens_per_document``, ``documents``, ``tokens``, ``empty_documents``, ``by`` ({column:
    {value: {documents, tokens}}}), ``missing_columns`` ({column: shards without it}), ``shards``
    (records merged) and ``shards_total``.
    """
    merged = TokenTally()
    records = current_shard_records(tasks, records_dir)
    for record in records:
        merged.add(TokenTally.from_json(record))
    return {"stage": stage_id, "tokenizer": tokenizer, "column": stage.column, "output": stage.output,
            "add_special_tokens": stage.add_special_tokens, "eod_tokens_per_document": stage.eod_tokens_per_document,
            **merged.to_json(), "shards": len(records), "shards_total": len(tasks)}


def describe(summary: dict[str, Any]) -> str:
    """One line for the log: totals, then each breakdown."""
    tokenizer = os.path.basename(summary["tokenizer"]["path"])
    parts = [f"{summary['documents']:,} documents, {summary['tokens']:,} tokens "
             f"({tokenizer}; {summary['shards']}/{summary['shards_total']} shards)"]
    for column, values in summary["by"].items():
        shares = ", ".join(f"{key} {e['tokens']:,}" for key, e in values.items())
        parts.append(f"tokens by {column}: {shares}")
    if summary["missing_columns"]:
        parts.append(f"not in the data: {', '.join(summary['missing_columns'])}")
    return "; ".join(parts)


def _output_shard(task: ShardTask, input_path: str, ref: StageRef, records_dir: str, batch_rows: int) -> dict[str, Any]:
    """One output shard: count batch by batch, write the rows, record the shard's totals, commit."""
    stage = build_stage(ref)  # built and set up once per worker process
    assert isinstance(stage, TokenCount)
    stage_id = ref.stage_id
    stats = ShardStats()
    tally = TokenTally()
    schema = read_schema(input_path)
    tally.missing_columns = {c: 1 for c in stage.group_by if c not in schema.names}
    if stage.column not in schema.names:
        raise KeyError(f"stage {stage_id} ({stage.name}) {task.name} ({input_path}): no column {stage.column!r}")

    def results() -> Iterator[tuple[pa.Table, None]]:
        for batch in read_batches(input_path, batch_rows):
            counted = stage.count(batch)
            stage.tally(counted, tally)
            yield split_counted(batch, counted, stats).kept, None
        # Before write_shard commits: a committed shard always has its record (a kill in between
        # leaves the shard uncommitted, and the rerun writes both again).
        write_json_atomic(shard_record_path(records_dir, task), {"fingerprint": task.fingerprint, **tally.to_json()})

    record = write_shard(task, results(), stats, schema=stage.output_schema(schema))
    log.info("stage %s %s: %d documents, %d tokens", stage_id, task.name, tally.documents, tally.tokens)
    return record
