"""LLM annotation of educational value (``classify.annotate_edu``): the recipe's labelling step.

Every document is sent once to an LLM with the rubric of :mod:`classifiers.edu_prompt` and gets
three columns (names start with ``output_prefix``, default ``edu``):

- ``edu_score`` (int8): the score 0-5, null unless the status is ``ok``;
- ``edu_status``: ``ok``; ``unparseable`` (the answer does not end with a valid score line, or
  stopped at ``max_tokens``); ``llm_failed:<kind>`` (the request failed after retries, kinds in
  :data:`curator.llm.ERROR_KINDS`); ``no_text`` (null or blank text: nothing is sent);
- ``edu_answer``: the model's raw answer, for audit (null when there is none). With the
  completions endpoint it is the continuation after ``Justification:``.

Rows are never dropped, so the output can be used as training data directly (filter on
``edu_status == 'ok'``). Columns of an earlier annotation with the same prefix are replaced.

Document length: the text (surrounding whitespace stripped) is cut to ``max_document_chars``
characters, at the last whitespace in the final fifth when there is one; then, when a tokenizer is
known (``tokenizer_path``; by default the GGUF file with backend llama_cpp), to at most
``max_document_tokens`` tokens, at a word end. Characters first, because they need no tokenizer
(an HTTP endpoint's tokenizer is often not at hand) and bound the tokenizing cost of very long
pages; tokens second, because they are what a context window holds. With llama_cpp the stage
checks before any request that rubric, document budget and ``max_tokens`` fit ``n_ctx``.

Sampling is deterministic by default (temperature 0), ``max_tokens`` 256: room for the justification
of at most 100 words the rubric asks for, plus the score line.

Requests, resuming and failures work as in ``synth.rephrase``: each shard task has its own
response cache ``_work/llm_cache/part-NNNNN.sqlite``, so a rerun or a resumed run sends no request
that was answered before (failed ones are sent again). A shard where more than
``max_failed_fraction`` of the requests failed fails as a whole, after caching what it got, so
that the rerun retries them instead of committing ``llm_failed`` rows for good. Per-shard counts
go to ``_work/llm_stats/part-NNNNN.json``, merged after the run into ``_llm_stats.json`` beside the
shards: the client's counts (requests, cache hits, tokens, failures, retries, latencies, in the
format the report reads) plus ``documents``, ``documents_truncated``, ``statuses`` (rows per
status), ``scores`` (rows per score) and ``unparseable_reasons`` (see
:data:`classifiers.edu_prompt.UNPARSEABLE_REASONS`, plus ``cut_at_max_tokens``). The same counts
go to the log.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from classifiers.edu_prompt import COMPLETION_CUE, EduParse, edu_prompt, edu_prompt_text, parse_edu_answer
from curator.global_run import GlobalRun
from curator.llm import LLMClient, LLMResult, LLMStats, Prompt, ResponseCache, SamplingParams
from curator.llm.config import LLMConfig, TokenCounter
from curator.llm.stage_run import resolve_tokenizer_path, run_llm_shards
from curator.llm.streaming import answered_chunks
from curator.plan import ShardTask
from curator.shard_records import current_shard_records, shard_record_path
from curator.stage import GlobalStage, PathParam, ShardStats, split_counted
from curator.storage import read_batches, read_schema, write_json_atomic
from curator.tasks import write_shard

log = logging.getLogger("classifiers.annotate")

STATUS_OK = "ok"
STATUS_UNPARSEABLE = "unparseable"
STATUS_NO_TEXT = "no_text"
LLM_FAILED = "llm_failed:"
CUT_AT_MAX_TOKENS = "cut_at_max_tokens"
"""The unparseable reason of an answer that stopped at ``max_tokens``."""
CHAT_TEMPLATE_ALLOWANCE = 16
"""Tokens allowed for a chat template's markup (and the BOS token) in the context-window check."""
UNPARSEABLE_WARN_FRACTION = 0.1
"""Above this share of unparseable answers the run warns: the model does not follow the format."""

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"\S+")
_SPACES = (" ", "\n", "\t", "\r")



# ---------------------------------------------------------------------- document truncation


def cut_to_chars(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last whitespace in the final fifth
    of the budget when there is one (else mid-word), trailing whitespace removed."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = max(head.rfind(c) for c in _SPACES)
    if space >= max_chars * 0.8:
        head = head[:space]
    return head.rstrip()


def cut_to_tokens(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """The longest prefix of ``text`` ending at a word end that ``counter`` finds within
    ``max_tokens`` tokens (a binary search over word ends: token counts of prefixes grow with them,
    and every prefix taken is counted, so the result is never over the budget). A first word
    alone over the budget is cut by characters the same way."""
    if counter.count(text) <= max_tokens:
        return text
    ends = [m.end() for m in _WORD.finditer(text)]
    best = _longest_fitting(ends, lambda end: counter.count(text[:end]) <= max_tokens)
    if best is not None:
        return text[:best]
    first = text[:ends[0]] if ends else text
    best = _longest_fitting(list(range(1, len(first) + 1)), lambda end: counter.count(first[:end]) <= max_tokens)
    return first[:best] if best is not None else ""


def _longest_fitting(ends: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest of the sorted ``ends`` for which ``fits`` holds, assuming it holds up to a point."""
    lo, hi, best = 0, len(ends) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(ends[mid]):
            best, lo = ends[mid], mid + 1
        else:
            hi = mid - 1
    return best


# ---------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class Annotation:
    """One document's outcome: score, status, raw answer, and the reason of an unparseable one."""

    score: int | None
    status: str
    answer: str | None
    reason: str | None = None


@dataclass
class PlannedChunk:
    """A slice of a shard with one prompt per row (None: nothing to send) and how many were cut."""

    table: pa.Table
    prompts: list[Prompt | None]
    truncated: int


class EduAnnotator(GlobalStage):
    """Score each document's educational value 0-5 with an LLM and a strict rubric (for training classifiers)."""

    name = "classify.annotate_edu"
    requires = ("id", "text")
    adds = ("edu_score", "edu_status", "edu_answer")

    llm: LLMConfig = Field(description="The model and how to reach it (backend, base_url, model, endpoint, ...).")
    column: str = Field("text", description="Column holding the document text.")
    output_prefix: str = Field("edu", description=(
        "Output columns are <prefix>_score, <prefix>_status and <prefix>_answer; an earlier annotation "
        "with the same prefix is replaced, one with another prefix kept."))
    tokenizer_path: PathParam | None = Field(None, description=(
        "The model's tokenizer.json (or its folder, or a .gguf model) for max_document_tokens; in a "
        "pipeline file relative to the file. Default with backend llama_cpp: the model file itself; "
        "otherwise none, and documents are cut by max_document_chars only."))
    max_document_chars: int = Field(6000, ge=1, description=(
        "Documents are cut to this many characters (at a whitespace near the end) before anything else."))
    max_document_tokens: int = Field(1000, ge=1, description=(
        "Then, when a tokenizer is known, to this many tokens (at a word end)."))
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: greedy, reproducible labels).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(256, ge=1, description=(
        "The answer's token cap: a justification of up to 100 words plus the score line. Answers that "
        "hit it are unparseable (cut_at_max_tokens)."))
    stop: list[str] = Field(default_factory=list, description=(
        "Stop sequences sent with every request (a base model that goes on writing after the score "
        "line can be cut off at, say, a blank line: [\"\\n\\n\"])."))
    seed: int | None = Field(None, description="Sampling seed sent with every request (for temperature > 0).")
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0, description=(
        "A shard with a larger fraction of failed requests fails (and is retried on rerun) "
        "instead of recording them as llm_failed:<kind>."))

    @model_validator(mode="after")
    def _check(self) -> EduAnnotator:
        if not _PREFIX.fullmatch(self.output_prefix):
            raise ValueError(f"output_prefix must be a plain column-name prefix (letters, digits, _), "
                             f"not {self.output_prefix!r}")
        self.tokenizer_path = resolve_tokenizer_path(self.tokenizer_path, self.llm, None)
        return self

    # ------------------------------------------------------------------ columns and settings

    @property
    def score_column(self) -> str:
        """Name of the score column."""
        return f"{self.output_prefix}_score"

    @property
    def status_column(self) -> str:
        """Name of the status column."""
        return f"{self.output_prefix}_status"

    @property
    def answer_column(self) -> str:
        """Name of the raw-answer column."""
        return f"{self.output_prefix}_answer"

    def added_fields(self) -> list[pa.Field]:
        """The three columns this stage adds, typed."""
        return [pa.field(self.score_column, pa.int8()), pa.field(self.status_column, pa.string()),
                pa.field(self.answer_column, pa.string())]

    def required_columns(self) -> tuple[str, ...]:
        return ("id", self.column)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        added = [f.name for f in self.added_fields()]
        return [c for c in input_columns if c not in added] + added

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The output schema for an input schema: its columns (earlier annotations removed), then ours."""
        added = self.added_fields()
        names = {f.name for f in added}
        return pa.schema([f for f in input_schema if f.name not in names] + added, metadata=input_schema.metadata)

    @property
    def sampling(self) -> SamplingParams:
        """The sampling parameters of every request."""
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              stop=self.stop or None, seed=self.seed)

    # ------------------------------------------------------------------ stage-level API

    def token_counter(self) -> TokenCounter | None:
        """The tokenizer of ``max_document_tokens`` (None without one); with llama_cpp, checks that
        rubric, document and answer fit the context window."""
        if not self.tokenizer_path:
            return None
        counter = TokenCounter(self.tokenizer_path)
        if self.llm.backend == "llama_cpp":
            cue = COMPLETION_CUE if self.llm.endpoint == "completions" else ""
            overhead = counter.count(edu_prompt_text("") + cue) + CHAT_TEMPLATE_ALLOWANCE
            needed = overhead + self.max_document_tokens + self.max_tokens
            if needed > self.llm.n_ctx:
                raise ValueError(
                    f"stage {self.name}: the rubric ({overhead} tokens with {CHAT_TEMPLATE_ALLOWANCE} for markup), "
                    f"max_document_tokens ({self.max_document_tokens}) and max_tokens ({self.max_tokens}) need "
                    f"{needed} tokens, over llm.n_ctx {self.llm.n_ctx}")
        return counter

    def truncate(self, text: str, counter: TokenCounter | None) -> str:
        """The part of a document that is sent (see the module docstring)."""
        text = cut_to_chars(text.strip(), self.max_document_chars)
        if counter is not None:
            text = cut_to_tokens(text, self.max_document_tokens, counter)
        return text

    def prompt(self, document: str) -> Prompt:
        """The request for an (already truncated) document, for the configured endpoint."""
        return edu_prompt(document, self.llm.endpoint)

    def plan(self, batch: pa.Table, counter: TokenCounter | None) -> PlannedChunk:
        """One prompt per row of ``batch`` (None for rows without text)."""
        prompts: list[Prompt | None] = []
        truncated = 0
        for text in batch.column(self.column).to_pylist():
            if text is None or not text.strip():
                prompts.append(None)
                continue
            document = self.truncate(text, counter)
            truncated += document != text.strip()
            prompts.append(self.prompt(document))
        return PlannedChunk(batch, prompts, truncated)

    def grade(self, result: LLMResult | None) -> Annotation:
        """The annotation of one answer (None: nothing was sent)."""
        if result is None:
            return Annotation(None, STATUS_NO_TEXT, None)
        if not result.ok:
            return Annotation(None, f"{LLM_FAILED}{result.error_kind}", None)
        if result.finish_reason == "length":
            return Annotation(None, STATUS_UNPARSEABLE, result.text, CUT_AT_MAX_TOKENS)
        parsed: EduParse = parse_edu_answer(result.text)
        if parsed.score is None:
            return Annotation(None, STATUS_UNPARSEABLE, result.text, parsed.reason)
        return Annotation(parsed.score, STATUS_OK, result.text)

    def with_annotations(self, batch: pa.Table, annotations: list[Annotation]) -> pa.Table:
        """``batch`` with the three columns set from ``annotations`` (one per row)."""
        score, status, answer = self.added_fields()
        columns = {
            score.name: pa.array([a.score for a in annotations], pa.int8()),
            status.name: pa.array([a.status for a in annotations], pa.string()),
            answer.name: pa.array([a.answer for a in annotations], pa.string()),
        }
        out = batch.drop_columns([name for name in columns if name in batch.column_names])
        for name, values in columns.items():
            out = out.append_column(name, values)
        return out

    def annotate(self, batch: pa.Table, client: LLMClient, counter: TokenCounter | None = None) -> pa.Table:
        """Stage-level API: ``batch`` with the score, status and answer columns (blocking)."""
        counter = counter if counter is not None else self.token_counter()
        planned = self.plan(batch, counter)
        sent = [p for p in planned.prompts if p is not None]
        answers = iter(client.generate([(p, self.sampling) for p in sent]))
        results = [next(answers) if p is not None else None for p in planned.prompts]
        return self.with_annotations(batch, [self.grade(r) for r in results])

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        run_llm_shards(ctx, self, _output_shard, merge_annotation_stats, _log_summary)



# ---------------------------------------------------------------------- per-shard work and counts


@dataclass
class AnnotationCounts:
    """What one shard (or, merged, a run) recorded: rows per status, per score, per unparseable reason."""

    documents: int = 0
    truncated: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    scores: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def record(self, annotation: Annotation) -> None:
        """Count one row."""
        self.documents += 1
        self.statuses[annotation.status] += 1
        if annotation.score is not None:
            self.scores[str(annotation.score)] += 1
        if annotation.reason is not None:
            self.reasons[annotation.reason] += 1

    def add(self, other: AnnotationCounts) -> None:
        """Accumulate another shard's counts."""
        self.documents += other.documents
        self.truncated += other.truncated
        self.statuses.update(other.statuses)
        self.scores.update(other.scores)
        self.reasons.update(other.reasons)

    @property
    def failed(self) -> int:
        """Rows whose request failed."""
        return sum(n for status, n in self.statuses.items() if status.startswith(LLM_FAILED))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (keys as in ``_llm_stats.json``)."""
        return {
            "documents": self.documents,
            "documents_truncated": self.truncated,
            "statuses": dict(sorted(self.statuses.items())),
            "scores": dict(sorted(self.scores.items())),
            "unparseable_reasons": dict(sorted(self.reasons.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnnotationCounts:
        """Inverse of :meth:`to_json`."""
        return cls(int(data.get("documents", 0)), int(data.get("documents_truncated", 0)),
                   Counter(data.get("statuses") or {}), Counter(data.get("scores") or {}),
                   Counter(data.get("unparseable_reasons") or {}))

    def describe(self) -> str:
        """``ok 7, unparseable 2, ...`` for the log."""
        return ", ".join(f"{k} {n}" for k, n in sorted(self.statuses.items())) or "none"



def merge_annotation_stats(tasks: list[ShardTask], stats_dir: str, stage_id: str, model: str) -> dict[str, Any]:
    """The per-shard counts of the current shards (stale files of other configs ignored), merged:
    the client's counts in the report's format, and the annotation counts."""
    llm = LLMStats()
    counts = AnnotationCounts()
    shards = 0
    for record in current_shard_records(tasks, stats_dir):
        shards += 1
        llm.add(LLMStats.from_json(record["llm"]))
        counts.add(AnnotationCounts.from_json(record["annotations"]))
    return {"stage": stage_id, "model": model, "shards": shards, "shards_total": len(tasks), **llm.to_json(),
            **counts.to_json()}


def _log_summary(stage_id: str, merged: dict[str, Any]) -> None:
    counts = AnnotationCounts.from_json(merged)
    log.info("stage %s: %d documents annotated (%d truncated): %s; %d requests sent, %d answered from the cache",
             stage_id, counts.documents, counts.truncated, counts.describe(), merged["requests"], merged["cache_hits"])
    unparseable = counts.statuses[STATUS_UNPARSEABLE]
    answered = unparseable + counts.statuses[STATUS_OK]
    if answered and unparseable > UNPARSEABLE_WARN_FRACTION * answered:
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(counts.reasons.items()))
        log.warning("stage %s: %d of %d answers are unparseable (%s): does the model follow the rubric's format?",
                    stage_id, unparseable, answered, reasons)


def _planned_chunks(stage: EduAnnotator, counter: TokenCounter | None, input_path: str, batch_rows: int
                    ) -> Generator[tuple[PlannedChunk, list[tuple[Prompt, SamplingParams]]], None, None]:
    """The shard in chunks of ``4 x concurrency`` rows (at least 32), each with its requests."""
    chunk_rows = max(32, 4 * stage.llm.concurrency)
    sampling = stage.sampling
    for batch in read_batches(input_path, batch_rows):
        for start in range(0, batch.num_rows, chunk_rows):
            planned = stage.plan(batch.slice(start, chunk_rows), counter)
            yield planned, [(p, sampling) for p in planned.prompts if p is not None]


def _output_shard(task: ShardTask, input_path: str, params: dict[str, Any], stage_id: str, cache_dir: str,
                  stats_dir: str, batch_rows: int) -> dict[str, Any]:
    """One output shard: truncate, send (through the shard's cache), parse, write every row."""
    stage = EduAnnotator(**params)
    counter = stage.token_counter()
    stats = ShardStats()
    counts = AnnotationCounts()
    os.makedirs(cache_dir, exist_ok=True)
    cache = ResponseCache(os.path.join(cache_dir, f"{task.name}.sqlite"))
    client = LLMClient(stage.llm.build_backend(), cache=cache, concurrency=stage.llm.concurrency)
    where = f"stage {stage_id} ({stage.name}) {task.name} ({input_path})"

    def results() -> Iterator[tuple[pa.Table, None]]:
        chunks = _planned_chunks(stage, counter, input_path, batch_rows)
        for planned, answers in answered_chunks(client, chunks, stage.llm.concurrency):
            replies = iter(answers)
            annotations = [stage.grade(next(replies) if p is not None else None) for p in planned.prompts]
            for annotation in annotations:
                counts.record(annotation)
            counts.truncated += planned.truncated
            # No drop_reason column: every row is kept; split_counted only does the counting.
            yield split_counted(planned.table, stage.with_annotations(planned.table, annotations), stats).kept, None
        failed = counts.failed
        sent = counts.documents - counts.statuses[STATUS_NO_TEXT]
        if failed and failed > stage.max_failed_fraction * sent:
            kinds = ", ".join(f"{s.removeprefix(LLM_FAILED)} {n}" for s, n in sorted(counts.statuses.items())
                              if s.startswith(LLM_FAILED))
            raise RuntimeError(
                f"{where}: {failed} of {sent} LLM requests failed ({kinds}), over max_failed_fraction "
                f"{stage.max_failed_fraction}; answers are cached, so a rerun sends only the failed requests")

    try:
        record = write_shard(task, results(), stats, schema=stage.output_schema(read_schema(input_path)))
        log.info("%s: %d documents: %s", where, counts.documents, counts.describe())
        return record
    finally:
        cache.close()
        write_json_atomic(shard_record_path(stats_dir, task), {
            "fingerprint": task.fingerprint, "llm": client.stats.to_json(), "annotations": counts.to_json(),
        })
