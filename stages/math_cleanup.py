"""LLM cleanup of lynx-rendered math pages (``synth.math_cleanup``): the last step of Nemotron-CC-Math extraction.

Each page (the ``column`` text: lynx output with ``$...$``/``$$...$$`` TeX put back by the
pre-pass) is sent to an LLM with the instructions of :mod:`stages.math_cleanup_prompt`: keep the
content and all math, drop boilerplate, write formulas as LaTeX, keep code, fix formatting.

Columns: the stage adds columns rather than rewriting rows. The cleaned text goes to ``output``
(default ``text``, so that the stages after it, language ID, dedup, classifiers, read the cleaned
page), and the text the LLM was given is kept in ``input_copy`` (default ``lynx_text``): with the
defaults the input column is in effect renamed to ``lynx_text`` and ``text`` holds the cleaned
page. Also added: ``cleanup_chunks`` (requests the page took), ``cleanup_model``, and
``cleanup_prompt_tokens``/``cleanup_completion_tokens`` (summed over the chunks, as the server
reports them; cached answers keep their counts). Columns of an earlier run with the same names
are replaced.

Chunks: a page whose prompt would exceed ``chunk_tokens`` (instructions plus page, counted with
the model's tokenizer; chat-template markup aside) is split on line boundaries with
:func:`stages.rephrase.segment_document`, so every prompt fits. Chunks are answered
independently and their cleaned texts joined back in order with a blank line between them.

Answer cap: ``max_tokens`` when set; by default per chunk ``ceil(1.25 x the chunk's tokens) +
64``: a clean page is usually shorter than its rendering, but writing flat math as LaTeX
(``x2`` -> ``$x^2$``) adds tokens, and the margin covers short chunks. With llama_cpp the stage
checks before any request that the largest prompt, its answer cap and
:data:`CHAT_TEMPLATE_ALLOWANCE` fit ``llm.n_ctx``.

Reading answers: see :func:`stages.math_cleanup_prompt.read_answer` (``NO USEFUL CONTENT``
detection, preamble and outer-fence removal, ``\\(..\\)`` -> ``$..$`` and ``\\[..\\]`` -> ``$$..$$``).

Outcome of a page, the first that applies (``drop_reason``; ``output`` is null on dropped rows,
``input_copy`` keeps the page, so ``keep_rejected`` shows what was lost):

- ``no_text``: null or blank text; nothing is sent;
- ``llm_failed:<kind>``: a chunk's request failed after retries (the first failed chunk's kind,
  see :data:`curator.llm.ERROR_KINDS`). A page with a hole is not kept;
- ``length_cap``: a chunk's answer stopped at its token cap. The page is dropped rather than
  kept with that chunk's original text (boilerplate and flat math the cleanup exists to remove)
  or with a truncated chunk (content silently lost mid-page);
- ``no_useful_content``: every chunk was answered ``NO USEFUL CONTENT``;
- ``empty_answer``: no chunk gave text, and not all of them said ``NO USEFUL CONTENT`` (empty
  answers);
- otherwise the page is kept: chunks answered ``NO USEFUL CONTENT`` or empty contribute nothing.

Requests, resuming and failures work as in ``synth.rephrase`` and ``classify.annotate_edu``: each
shard task has its own response cache ``_work/llm_cache/part-NNNNN.sqlite``, so a rerun sends no
request that was answered before; a shard where more than ``max_failed_fraction`` of the chunk
requests failed fails as a whole after caching what it got. Per-shard counts go to
``_work/llm_stats/part-NNNNN.json``, merged after the run into ``_llm_stats.json`` beside the
shards: the client's counts (the report's format) plus ``documents``, ``documents_kept``,
``documents_no_useful_content``, ``chunks`` (requests planned, duplicates and cache hits
included), ``chunks_no_useful_content``, ``chunk_outcomes`` (chunks per outcome: ``text``,
``no_useful_content``, ``empty``, ``length_cap``, ``llm_failed:<kind>``) and ``drops`` (documents
per drop reason).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from curator.global_run import GlobalRun
from curator.llm import LLMClient, LLMResult, LLMStats, Prompt, ResponseCache, SamplingParams
from curator.llm.config import LLMConfig, TokenCounter
from curator.llm.stage_run import resolve_tokenizer_path, run_llm_shards
from curator.llm.streaming import answered_chunks
from curator.plan import ShardTask
from curator.shard_records import current_shard_records, shard_record_path
from curator.stage import DROP_REASON, GlobalStage, PathParam, ShardStats, split_counted
from curator.storage import read_batches, read_schema, write_json_atomic
from curator.tasks import write_shard
from stages.math_cleanup_prompt import cleanup_prompt, cleanup_prompt_for_counting, read_answer
from stages.rephrase import segment_document
from stages.rephrase_prompts import TaskSpec

log = logging.getLogger("stages.math_cleanup")

NO_TEXT = "no_text"
LLM_FAILED = "llm_failed:"
LENGTH_CAP = "length_cap"
NO_USEFUL_CONTENT = "no_useful_content"
EMPTY_ANSWER = "empty_answer"
CHUNK_SEPARATOR = "\n\n"
ANSWER_TOKENS_FACTOR = 1.25
"""Default answer cap per chunk: this many times the chunk's tokens, plus :data:`ANSWER_TOKENS_MARGIN`."""
ANSWER_TOKENS_MARGIN = 64
CHAT_TEMPLATE_ALLOWANCE = 16
"""Tokens allowed for a chat template's markup (and the BOS token) in the context-window check."""
_COUNTS = ("cleanup_prompt_tokens", "cleanup_completion_tokens")


@dataclass(frozen=True)
class Chunk:
    """One request of a page: the chunk's text and its answer cap."""

    text: str
    max_tokens: int


@dataclass(frozen=True)
class CleanupOutcome:
    """One page's outcome: the cleaned text or the drop reason, and what its chunks cost and gave."""

    text: str | None
    drop_reason: str | None
    chunks: int = 0
    chunk_outcomes: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class PlannedBatch:
    """A slice of a shard with each row's chunks (an empty list: nothing to send)."""

    table: pa.Table
    chunks: list[list[Chunk]]


class MathCleanup(GlobalStage):
    """Clean lynx-rendered math pages with an LLM: drop boilerplate, all math as LaTeX, keep code."""

    name = "synth.math_cleanup"
    requires = ("id", "text")
    adds = ("text", "lynx_text", "cleanup_chunks", "cleanup_model", *_COUNTS)

    llm: LLMConfig = Field(description="The model and how to reach it (backend, base_url, model, endpoint, ...).")
    tokenizer_path: PathParam | None = Field(None, description=(
        "The model's tokenizer.json (or its folder, or a .gguf model) for chunk_tokens; in a pipeline "
        "file relative to the file. Default with backend llama_cpp: the model file itself; required otherwise."))
    column: str = Field("text", description="Column holding the rendered page (lynx output with TeX placeholders).")
    output: str = Field("text", description=(
        "Column that receives the cleaned page (null on dropped rows). The default replaces the "
        "input text, which input_copy keeps, so later stages read the cleaned page."))
    input_copy: str = Field("lynx_text", description=(
        "Column that keeps the page as sent to the LLM. Equal to column (with output elsewhere): "
        "the input column stays as it is and no copy is made."))
    chunk_tokens: int = Field(2048, ge=64, description=(
        "Tokens allowed for one prompt (instructions plus a chunk of the page); longer pages are "
        "split on line boundaries into chunks that fit, answered separately and joined in order."))
    max_tokens: int | None = Field(None, ge=1, description=(
        "The answer's token cap per chunk. Default: ceil(1.25 x the chunk's tokens) + 64 (LaTeX can "
        "be longer than the flat math it replaces). A chunk that hits it drops its page (length_cap)."))
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: a cleanup, not creative writing).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    stop: list[str] = Field(default_factory=list, description=(
        "Stop sequences sent with every request (a base model that starts another page can be cut "
        "off at, say, \"--- PAGE START ---\")."))
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0, description=(
        "A shard with a larger fraction of failed chunk requests fails (and is retried on rerun) "
        "instead of dropping their pages as llm_failed:<kind>."))

    @model_validator(mode="after")
    def _check(self) -> MathCleanup:
        if self.output == self.input_copy:
            raise ValueError(f"output and input_copy must be different columns, both are {self.output!r}")
        self.tokenizer_path = resolve_tokenizer_path(self.tokenizer_path, self.llm, "chunk_tokens")
        return self

    # ------------------------------------------------------------------ columns

    def added_fields(self, input_schema: pa.Schema | None = None) -> list[pa.Field]:
        """The columns this stage writes, typed (the copy of the input has the input's type)."""
        source_type = pa.string()
        if input_schema is not None and self.column in input_schema.names:
            source_type = input_schema.field(self.column).type
        fields = [pa.field(self.output, pa.string())]
        if self.input_copy != self.column:
            fields.append(pa.field(self.input_copy, source_type))
        return fields + [pa.field("cleanup_chunks", pa.int32()), pa.field("cleanup_model", pa.string()),
                         *(pa.field(name, pa.int32()) for name in _COUNTS)]

    def required_columns(self) -> tuple[str, ...]:
        return ("id", self.column)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return [f.name for f in self.output_schema(pa.schema([(c, pa.string()) for c in input_columns]))]

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The input's columns (``output`` in place when it already exists), then the others added."""
        added = self.added_fields(input_schema)
        by_name = {f.name: f for f in added}
        kept = [by_name.get(f.name, f) for f in input_schema
                if f.name == self.output or f.name not in by_name]
        present = {f.name for f in kept}
        return pa.schema(kept + [f for f in added if f.name not in present], metadata=input_schema.metadata)

    # ------------------------------------------------------------------ stage-level API

    def token_counter(self) -> TokenCounter:
        """The tokenizer of ``chunk_tokens``; checks that the instructions leave room for a page
        and, with llama_cpp, that the largest prompt and its answer fit ``n_ctx``."""
        counter = TokenCounter(self.tokenizer_path or "")
        overhead = counter.count(self.render(""))
        if overhead >= self.chunk_tokens:
            raise ValueError(f"stage {self.name}: the instructions alone are {overhead} tokens, not under "
                             f"chunk_tokens {self.chunk_tokens}")
        if self.llm.backend == "llama_cpp":
            answer = self.answer_cap(self.chunk_tokens - overhead)
            needed = self.chunk_tokens + CHAT_TEMPLATE_ALLOWANCE + answer
            if needed > self.llm.n_ctx:
                raise ValueError(
                    f"stage {self.name}: a prompt of chunk_tokens ({self.chunk_tokens}), its answer cap ({answer}) "
                    f"and {CHAT_TEMPLATE_ALLOWANCE} tokens of markup need {needed} tokens, over llm.n_ctx "
                    f"{self.llm.n_ctx}: lower chunk_tokens or max_tokens, or raise n_ctx")
        return counter

    def render(self, page: str) -> str:
        """The prompt text of a page or chunk, as counted against ``chunk_tokens``."""
        return cleanup_prompt_for_counting(page, self.llm.endpoint)

    def answer_cap(self, chunk_tokens: int) -> int:
        """The answer's token cap for a chunk of ``chunk_tokens`` tokens (see ``max_tokens``)."""
        if self.max_tokens is not None:
            return self.max_tokens
        return math.ceil(ANSWER_TOKENS_FACTOR * chunk_tokens) + ANSWER_TOKENS_MARGIN

    def chunks(self, page: str, counter: TokenCounter, overhead: int | None = None) -> list[Chunk]:
        """The chunks of a page (none for a blank one), each with its answer cap."""
        if not page.strip():
            return []
        # segment_document wants a task spec; only its name (in errors), budget and prompt are used.
        spec = TaskSpec("math_cleanup", "", "", self.chunk_tokens, ())  # type: ignore[arg-type]
        texts = segment_document(page, spec, counter, self.chunk_tokens, self.render, overhead=overhead)
        return [Chunk(text, self.answer_cap(size)) for text, size in zip(texts, counter.count_many(texts))]

    def plan(self, batch: pa.Table, counter: TokenCounter) -> PlannedBatch:
        """The chunks of every row of ``batch``."""
        overhead = counter.count(self.render(""))
        pages = batch.column(self.column).to_pylist()
        return PlannedBatch(batch, [self.chunks(page or "", counter, overhead) for page in pages])

    def request(self, chunk: Chunk) -> tuple[Prompt, SamplingParams]:
        """The request of one chunk, for the configured endpoint."""
        sampling = SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=chunk.max_tokens,
                                  stop=self.stop or None)
        return cleanup_prompt(chunk.text, self.llm.endpoint), sampling

    def requests(self, planned: PlannedBatch) -> list[tuple[Prompt, SamplingParams]]:
        """The requests of a planned batch, row by row, chunks in order."""
        return [self.request(chunk) for chunks in planned.chunks for chunk in chunks]

    def merge(self, results: list[LLMResult]) -> CleanupOutcome:
        """A page's outcome from the answers of its chunks, in order (rules in the module docstring)."""
        if not results:
            return CleanupOutcome(None, NO_TEXT)
        outcomes: list[str] = []
        texts: list[str] = []
        for result in results:
            if not result.ok:
                outcomes.append(f"{LLM_FAILED}{result.error_kind}")
            elif result.finish_reason == "length":
                outcomes.append(LENGTH_CAP)
            else:
                cleaned = read_answer(result.text)
                outcomes.append(cleaned.kind)
                if cleaned.text is not None:
                    texts.append(cleaned.text)
        failed = next((o for o in outcomes if o.startswith(LLM_FAILED)), None)
        if failed is not None:
            reason: str | None = failed
        elif LENGTH_CAP in outcomes:
            reason = LENGTH_CAP
        elif texts:
            reason = None
        elif all(o == "no_useful_content" for o in outcomes):
            reason = NO_USEFUL_CONTENT
        else:
            reason = EMPTY_ANSWER
        return CleanupOutcome(
            CHUNK_SEPARATOR.join(texts) if reason is None else None, reason, len(results), tuple(outcomes),
            sum(r.tokens_in for r in results if r.ok), sum(r.tokens_out for r in results if r.ok))

    def outcomes(self, planned: PlannedBatch, results: list[LLMResult]) -> list[CleanupOutcome]:
        """Each row's outcome, from the answers of :meth:`requests` in order."""
        answers = iter(results)
        return [self.merge([next(answers) for _ in chunks]) for chunks in planned.chunks]

    def with_outcomes(self, batch: pa.Table, outcomes: list[CleanupOutcome]) -> pa.Table:
        """``batch`` with the added columns and ``drop_reason`` set from ``outcomes`` (one per row)."""
        schema = self.output_schema(batch.schema)
        sent = [o.chunks > 0 for o in outcomes]
        values: dict[str, pa.Array | pa.ChunkedArray] = {
            self.output: pa.array([o.text for o in outcomes], pa.string()),
            "cleanup_chunks": pa.array([o.chunks for o in outcomes], pa.int32()),
            "cleanup_model": pa.array([self.llm.model_name if s else None for s in sent], pa.string()),
            "cleanup_prompt_tokens": pa.array([o.prompt_tokens for o in outcomes], pa.int32()),
            "cleanup_completion_tokens": pa.array([o.completion_tokens for o in outcomes], pa.int32()),
        }
        if self.input_copy != self.column:
            values[self.input_copy] = batch.column(self.column)
        columns = [values[f.name] if f.name in values else batch.column(f.name) for f in schema]
        out = pa.Table.from_arrays(columns, schema=schema)
        return out.append_column(DROP_REASON, pa.array([o.drop_reason for o in outcomes], pa.string()))

    def clean(self, batch: pa.Table, client: LLMClient, counter: TokenCounter | None = None) -> pa.Table:
        """Stage-level API: ``batch`` with the cleaned text and the added columns; rows to drop carry
        ``drop_reason`` (blocking)."""
        counter = counter if counter is not None else self.token_counter()
        planned = self.plan(batch, counter)
        return self.with_outcomes(batch, self.outcomes(planned, client.generate(self.requests(planned))))

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        run_llm_shards(ctx, self, _output_shard, merge_cleanup_stats, _log_summary)



def _log_summary(stage_id: str, merged: dict[str, Any]) -> None:
    log.info("stage %s: %d pages, %d kept, %d chunks (%d answered NO USEFUL CONTENT); drops: %s; "
             "%d requests sent, %d answered from the cache", stage_id, merged["documents"],
             merged["documents_kept"], merged["chunks"], merged["chunks_no_useful_content"],
             _describe(merged["drops"]), merged["requests"], merged["cache_hits"])


# ---------------------------------------------------------------------- per-shard work and counts


@dataclass
class CleanupCounts:
    """What one shard (or, merged, a run) recorded: pages, chunks per outcome, drops per reason."""

    documents: int = 0
    kept: int = 0
    chunks: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: CleanupOutcome) -> None:
        """Count one page."""
        self.documents += 1
        self.chunks.update(outcome.chunk_outcomes)
        if outcome.drop_reason is None:
            self.kept += 1
        else:
            self.drops[outcome.drop_reason] += 1

    def add(self, other: CleanupCounts) -> None:
        """Accumulate another shard's counts."""
        self.documents += other.documents
        self.kept += other.kept
        self.chunks.update(other.chunks)
        self.drops.update(other.drops)

    @property
    def chunks_sent(self) -> int:
        """Chunk requests planned (cache hits and duplicates included)."""
        return sum(self.chunks.values())

    @property
    def chunks_failed(self) -> Counter[str]:
        """Failed chunk requests by error kind."""
        return Counter({k.removeprefix(LLM_FAILED): n for k, n in self.chunks.items() if k.startswith(LLM_FAILED)})

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (keys as in ``_llm_stats.json``)."""
        return {
            "documents": self.documents,
            "documents_kept": self.kept,
            "documents_no_useful_content": self.drops[NO_USEFUL_CONTENT],
            "chunks": self.chunks_sent,
            "chunks_no_useful_content": self.chunks["no_useful_content"],
            "chunk_outcomes": dict(sorted(self.chunks.items())),
            "drops": dict(sorted(self.drops.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CleanupCounts:
        """Inverse of :meth:`to_json`."""
        return cls(int(data.get("documents", 0)), int(data.get("documents_kept", 0)),
                   Counter(data.get("chunk_outcomes") or {}), Counter(data.get("drops") or {}))


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"



def merge_cleanup_stats(tasks: list[ShardTask], stats_dir: str, stage_id: str, model: str) -> dict[str, Any]:
    """The per-shard counts of the current shards (stale files of other configs ignored), merged:
    the client's counts in the report's format, and the cleanup counts."""
    llm = LLMStats()
    counts = CleanupCounts()
    shards = 0
    for record in current_shard_records(tasks, stats_dir):
        shards += 1
        llm.add(LLMStats.from_json(record["llm"]))
        counts.add(CleanupCounts.from_json(record["cleanup"]))
    return {"stage": stage_id, "model": model, "shards": shards, "shards_total": len(tasks), **llm.to_json(),
            **counts.to_json()}


def _planned_batches(stage: MathCleanup, counter: TokenCounter, input_path: str, batch_rows: int
                     ) -> Generator[tuple[PlannedBatch, list[tuple[Prompt, SamplingParams]]], None, None]:
    """The shard in slices of ``4 x concurrency`` rows (at least 32), each with its requests."""
    slice_rows = max(32, 4 * stage.llm.concurrency)
    for batch in read_batches(input_path, batch_rows):
        for start in range(0, batch.num_rows, slice_rows):
            planned = stage.plan(batch.slice(start, slice_rows), counter)
            yield planned, stage.requests(planned)


def _output_shard(task: ShardTask, input_path: str, params: dict[str, Any], stage_id: str, cache_dir: str,
                  stats_dir: str, batch_rows: int) -> dict[str, Any]:
    """One output shard: chunk, send (through the shard's cache), merge, write kept and dropped rows."""
    stage = MathCleanup(**params)
    counter = stage.token_counter()
    stats = ShardStats()
    counts = CleanupCounts()
    os.makedirs(cache_dir, exist_ok=True)
    cache = ResponseCache(os.path.join(cache_dir, f"{task.name}.sqlite"))
    client = LLMClient(stage.llm.build_backend(), cache=cache, concurrency=stage.llm.concurrency)
    where = f"stage {stage_id} ({stage.name}) {task.name} ({input_path})"

    def results() -> Iterator[tuple[pa.Table, pa.Table | None]]:
        batches = _planned_batches(stage, counter, input_path, batch_rows)
        for planned, answers in answered_chunks(client, batches, stage.llm.concurrency):
            outcomes = stage.outcomes(planned, answers)
            for outcome in outcomes:
                counts.record(outcome)
            res = split_counted(planned.table, stage.with_outcomes(planned.table, outcomes), stats)
            yield res.kept, res.rejected
        failed = counts.chunks_failed
        total = counts.chunks_sent
        if failed and sum(failed.values()) > stage.max_failed_fraction * total:
            raise RuntimeError(
                f"{where}: {sum(failed.values())} of {total} LLM requests failed ({_describe(failed)}), over "
                f"max_failed_fraction {stage.max_failed_fraction}; answers are cached, so a rerun sends only "
                "the failed requests")

    try:
        record = write_shard(task, results(), stats, schema=stage.output_schema(read_schema(input_path)))
        log.info("%s: %d pages, %d kept; drops: %s", where, counts.documents, counts.kept, _describe(counts.drops))
        return record
    finally:
        cache.close()
        write_json_atomic(shard_record_path(stats_dir, task), {
            "fingerprint": task.fingerprint, "llm": client.stats.to_json(), "cleanup": counts.to_json(),
        })
