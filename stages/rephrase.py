"""Synthetic rephrasing (``synth.rephrase``): the five Nemotron-CC tasks run through an LLM.

Routing: each document goes to the tasks whose labels (``routes``, defaults in
:mod:`stages.rephrase_prompts`: wikipedia for ``low``, the four others for ``high``) hold its
``quality_column`` value. Documents without the column, or with a null label, go to
``unlabeled_tasks`` (none by default); labels no task lists produce nothing.

Segmenting: a document is split on line boundaries into segments such that the whole prompt
(instructions plus segment) fits the task's token ``budget``, counted with the model's
``tokenizer.json``. Lines are packed greedily and every segment is checked with the tokenizer. A
single line longer than the room left by the instructions is cut at sentence ends
(``.``/``!``/``?`` followed by whitespace), sentences still too long at whitespace, and a word too
long for the budget into halves by characters.

Requests of a batch are sent grouped by task, so that an engine with a prefix cache evaluates each
task's instructions once. ``max_segments_per_document`` sends only the first segments of each
document (the rest are counted as ``segments_skipped``). With ``prefill_prefix`` (completions
endpoint only) every prompt ends with the task's answer prefix on its own line, so a base model
continues an answer already begun; the prefix is put back in front of the answer before the
checks below.

Post-processing of each answer, in order (the first failing check gives the drop reason):
``llm_failed:<kind>`` (the request failed after retries; kinds in
:data:`curator.llm.ERROR_KINDS`), ``length_cap`` (the answer stopped at ``max_tokens``),
Markdown stripped (code fences, headings, horizontal rules, bold/italic markers, and bullet
markers except for ``knowledge_list``, whose items become ``- `` lines), ``missing_prefix`` (the
answer does not start with the task's prefix, case-insensitive; the prefix is removed),
``too_short`` (fewer than ``min_output_words`` words left), and for ``diverse_qa``
``no_qa_pairs`` (no ``Question:``/``Answer:`` pair could be parsed).

Diverse QA, as the paper does: the parsed pairs are shuffled with a RNG seeded by
(``seed``, source id, segment index), so the choice is the same in every run and on every worker;
``max(1, round(segment words / qa_words_per_pair))`` of them (at most all) are appended to the
original segment text, separated by blank lines.

Output: one row per (document, task, segment): ``id`` (``<source id>/<task>/<segment index>``),
``text``, ``source_id``, ``task``, ``segment_index``, ``model``, ``sampling`` (JSON of the sampling
parameters sent), ``prompt_tokens`` and ``completion_tokens`` (as the server reports them).
Rejected rows keep their columns (``text`` null for failed requests) and carry ``drop_reason``.

Requests and resuming: each shard task has its own response cache
``<stage>/_work/llm_cache/part-NNNNN.sqlite`` (one writer per file), keyed by model, prompt and
sampling parameters, so a rerun or a resumed run sends no request that was answered before. A
shard in which more than ``max_failed_fraction`` of the requests failed fails as a whole (after
caching every answer it got), so the rerun retries exactly the failed requests instead of
committing a shard with holes. Per-shard LLM counts go to ``_work/llm_stats/part-NNNNN.json``
and are merged after the run into ``<stage>/_llm_stats.json`` (requests, cache hits, tokens,
failures and retries by kind, latency percentiles, and per task the segments, rows kept and
rejections by reason).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
from curator.storage import read_batches, write_json_atomic
from curator.tasks import write_shard
from stages.rephrase_prompts import TASK_NAMES, TASKS, TaskName, TaskSpec

log = logging.getLogger("stages.rephrase")


OUTPUT_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("source_id", pa.string()), ("task", pa.string()),
    ("segment_index", pa.int32()), ("model", pa.string()), ("sampling", pa.string()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
])
_WITH_REASON = OUTPUT_SCHEMA.append(pa.field(DROP_REASON, pa.string()))


# ---------------------------------------------------------------------- segmenting

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\S+\s*|\s+")


def _split_long(piece: str) -> list[str]:
    """Smaller pieces of a piece over the budget: sentences, else words, else two halves."""
    for pattern in (_SENTENCE_END, None):
        if pattern is not None:
            parts, last = [], 0
            for m in pattern.finditer(piece):
                parts.append(piece[last:m.end()])
                last = m.end()
            parts.append(piece[last:])
        else:
            parts = _WORD.findall(piece)
        parts = [p for p in parts if p]
        if len(parts) > 1:
            return parts
    half = len(piece) // 2
    return [piece[:half], piece[half:]] if half else [piece]


@dataclass
class DocumentLines:
    """A document's lines (with their line ends) and their token counts: counted once per
    document and shared by all of its tasks."""

    pieces: list[str]
    sizes: list[int]

    @classmethod
    def count(cls, text: str, counter: TokenCounter) -> DocumentLines:
        """The lines of ``text``, counted with ``counter``."""
        pieces = text.splitlines(keepends=True)
        return cls(pieces, counter.count_many(pieces))


def segment_document(text: str, spec: TaskSpec, counter: TokenCounter, budget: int | None = None,
                     render: Callable[[str], str] | None = None, *, lines: DocumentLines | None = None,
                     overhead: int | None = None) -> list[str]:
    """Split ``text`` on line boundaries into segments whose prompt fits ``budget`` tokens.

    ``render`` makes the prompt of a segment (default: the task's template). ``lines`` (the
    document's counted lines) and ``overhead`` (the tokens of ``render("")``) may be passed when
    known, so that several tasks over one document count them once. Segments are stripped of
    surrounding whitespace; empty ones are skipped.
    """
    budget = budget or spec.budget
    render = render or spec.prompt
    if overhead is None:
        overhead = counter.count(render(""))
    room = budget - overhead
    if room < 1:
        raise ValueError(f"task {spec.name}: the prompt alone takes the whole budget of {budget} tokens")
    lines = lines or DocumentLines.count(text, counter)
    pieces, sizes = list(lines.pieces), list(lines.sizes)
    # Lines over the room are cut into sentences (then words, then halves) until each piece fits.
    i = 0
    while i < len(pieces):
        if sizes[i] > room:
            parts = _split_long(pieces[i])
            if len(parts) > 1:
                pieces[i:i + 1] = parts
                sizes[i:i + 1] = counter.count_many(parts)
                continue
        i += 1
    # Pack greedily by the pieces' counts, then count every real prompt at once: counts are not
    # additive across piece boundaries, and a segment found over the budget is packed again, piece
    # by piece, with a count of each candidate.
    ranges = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and (j == i or total + sizes[j] <= room):
            total += sizes[j]
            j += 1
        ranges.append((i, j))
        i = j
    texts = ["".join(pieces[i:j]).strip() for i, j in ranges]
    kept = [(r, t) for r, t in zip(ranges, texts) if t]
    counts = counter.count_many([render(t) for _, t in kept])
    segments: list[str] = []
    for ((i, j), segment), count in zip(kept, counts):
        if count <= budget:
            segments.append(segment)
        else:
            segments.extend(_pack_exact(pieces[i:j], sizes[i:j], room, budget, render, counter, spec))
    return segments


def _pack_exact(pieces: list[str], sizes: list[int], room: int, budget: int, render: Callable[[str], str],
                counter: TokenCounter, spec: TaskSpec) -> list[str]:
    """Segments of ``pieces``, each checked with a count of its whole prompt before it is taken."""
    segments: list[str] = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and (j == i or total + sizes[j] <= room):
            total += sizes[j]
            j += 1
        while True:
            segment = "".join(pieces[i:j]).strip()
            if not segment or counter.count(render(segment)) <= budget:
                break
            if j - i > 1:
                j -= 1
                continue
            parts = _split_long(pieces[i])
            if len(parts) == 1:  # one character over the budget: cannot happen while room >= 1
                raise ValueError(f"task {spec.name}: cannot fit {pieces[i]!r} in {budget} tokens")
            pieces[i:i + 1] = parts
            sizes[i:i + 1] = counter.count_many(parts)
            j = i + 1
        if segment:
            segments.append(segment)
        i = j
    return segments


# ---------------------------------------------------------------------- post-processing

_FENCE = re.compile(r"^\s*(```|~~~)")
_HRULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022])\s+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?![\w_])")


def strip_markdown(text: str, keep_bullets: bool = False) -> str:
    """Remove Markdown decoration: fences, rules, heading marks, emphasis, and bullets unless kept.

    Kept bullets are normalised to ``- ``. Numbered lists are left alone (the numbers are content).
    """
    out = []
    for line in text.splitlines():
        if _FENCE.match(line) or _HRULE.match(line):
            continue
        line = _HEADING.sub("", line)
        if _BULLET.match(line):
            line = _BULLET.sub("- " if keep_bullets else "", line)
        line = _BOLD.sub(r"\2", line)
        line = _ITALIC_STAR.sub(r"\1", line)
        line = _ITALIC_UNDERSCORE.sub(r"\1", line)
        out.append(line.rstrip())
    return "\n".join(out).strip()


_QUESTION = re.compile(r"^\s*(?:Q|Question)\s*\d*\s*[:.]\s*(.*)$", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(?:A|Answer)\s*\d*\s*[:.]\s*(.*)$", re.IGNORECASE)


def parse_qa_pairs(text: str) -> list[tuple[str, str]]:
    """``Question:``/``Answer:`` pairs in ``text`` (continuation lines belong to the line above)."""
    pairs: list[tuple[str, str]] = []
    question: list[str] | None = None
    answer: list[str] | None = None

    def flush() -> None:
        if question is not None and answer is not None:
            q, a = " ".join(question).strip(), "\n".join(answer).strip()
            if q and a:
                pairs.append((q, a))

    for line in text.splitlines():
        if m := _QUESTION.match(line):
            flush()
            question, answer = [m.group(1)], None
        elif (m := _ANSWER.match(line)) and question is not None and answer is None:
            answer = [m.group(1)]
        elif answer is not None:
            answer.append(line)
        elif question is not None and line.strip():
            question.append(line.strip())
    flush()
    return pairs


def qa_pairs_to_keep(segment: str, available: int, words_per_pair: int) -> int:
    """How many QA pairs go with a segment: one per ``words_per_pair`` words, at least 1."""
    return min(available, max(1, round(len(segment.split()) / words_per_pair)))


@dataclass
class Request:
    """One planned request: a segment of a document for one task."""

    source_id: str
    task: TaskName
    segment_index: int
    segment: str
    prompt: str


# ---------------------------------------------------------------------- the stage


class Rephrase(GlobalStage):
    """Nemotron-CC synthetic data: rephrase, QA, distill, extract and list knowledge with an LLM."""

    name = "synth.rephrase"
    requires = ("id", "text")
    adds = tuple(OUTPUT_SCHEMA.names)

    llm: LLMConfig = Field(description="The model and how to reach it (backend, base_url, model, ...).")
    tokenizer_path: PathParam | None = Field(None, description=(
        "The model's tokenizer.json (or its folder, or a .gguf model) for the token budgets; in a "
        "pipeline file relative to the file. Default with backend llama_cpp: the model file itself."))
    tasks: list[TaskName] = Field(default_factory=lambda: list(TASK_NAMES), min_length=1, description=(
        "Tasks to run: wikipedia, diverse_qa, distill, extract_knowledge, knowledge_list."))
    quality_column: str = Field("quality_label", description="Column holding each document's quality label.")
    routes: dict[TaskName, list[str]] = Field(default_factory=dict, description=(
        "Per task, the quality labels it serves; tasks not given keep their defaults "
        "(wikipedia: [low]; the others: [high])."))
    unlabeled_tasks: list[TaskName] = Field(default_factory=list, description=(
        "Tasks for documents without the quality column or with a null label."))
    column: str = Field("text", description="Column holding the document text.")
    budgets: dict[TaskName, int] = Field(default_factory=dict, description=(
        "Per task, tokens allowed for prompt plus segment (defaults: the paper's 512 wikipedia, "
        "1000 diverse_qa and knowledge_list, 1400 extract_knowledge, 2000 distill)."))
    temperature: float = Field(0.5, ge=0.0, description="Sampling temperature (the recipe's 0.5).")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling (the recipe's 0.9).")
    max_tokens: dict[TaskName, int] = Field(default_factory=dict, description=(
        "Per task, the answer's token cap (default: the task's budget). Answers that hit it are "
        "rejected as length_cap."))
    max_segments_per_document: int | None = Field(None, ge=1, description=(
        "Send only the first N segments of each document per task (trial runs, spending caps); "
        "the segments left out are counted in the stats as segments_skipped. Default: all."))
    stop: list[str] = Field(default_factory=list, description=(
        "Stop sequences sent with every request (a base model that starts another example can be "
        "cut off at, say, a new \"Passage:\" line)."))
    min_output_words: int = Field(10, ge=0, description="Answers with fewer words (prefix removed) are too_short.")
    qa_words_per_pair: int = Field(100, ge=1, description=(
        "diverse_qa: keep one shuffled pair per this many words of the segment (at least one)."))
    seed: int = Field(0, description="Seed of the diverse_qa shuffle.")
    prefill_prefix: bool = Field(False, description=(
        "completions endpoint only: end each prompt with the task's answer prefix, so the model "
        "continues an answer already begun (what a base model needs to follow the format); the "
        "prefix is put back in front of the answer before it is checked."))
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0, description=(
        "A shard with a larger fraction of failed requests fails (and is retried on rerun) "
        "instead of dropping them as llm_failed:<kind>."))

    @model_validator(mode="after")
    def _check(self) -> Rephrase:
        for name, value in [*self.budgets.items(), *self.max_tokens.items()]:
            if value < 1:
                raise ValueError(f"task {name}: budgets and max_tokens must be positive, not {value}")
        if self.prefill_prefix and self.llm.endpoint != "completions":
            raise ValueError("prefill_prefix needs llm.endpoint: completions (a chat answer cannot be prefilled)")
        self.tokenizer_path = resolve_tokenizer_path(self.tokenizer_path, self.llm, "the token budgets")
        return self

    # ------------------------------------------------------------------ settings per task

    def spec(self, task: TaskName) -> TaskSpec:
        """The task's prompt, prefix and defaults."""
        return TASKS[task]

    def budget(self, task: TaskName) -> int:
        """Tokens allowed for a task's prompt with its segment."""
        return self.budgets.get(task, TASKS[task].budget)

    def labels(self, task: TaskName) -> list[str]:
        """Quality labels routed to a task."""
        return self.routes.get(task, list(TASKS[task].labels))

    def sampling(self, task: TaskName) -> SamplingParams:
        """The sampling parameters of a task's requests."""
        return SamplingParams(temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens.get(task, self.budget(task)), stop=self.stop or None)

    def tasks_for(self, label: str | None) -> list[TaskName]:
        """The tasks a document with this quality label goes to (in the order of ``tasks``)."""
        if label is None:
            return [t for t in self.tasks if t in self.unlabeled_tasks]
        return [t for t in self.tasks if label in self.labels(t)]

    def required_columns(self) -> tuple[str, ...]:
        return ("id", self.column)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return list(OUTPUT_SCHEMA.names)

    # ------------------------------------------------------------------ stage-level API

    def token_counter(self) -> TokenCounter:
        """The tokenizer of the budgets; checks that every task's prompt leaves room for text."""
        counter = TokenCounter(self.tokenizer_path or "")
        for task in self.tasks:
            overhead = counter.count(self.prompt_text(task, ""))
            if overhead >= self.budget(task):
                raise ValueError(f"stage {self.name}: task {task}: the prompt alone is {overhead} tokens, "
                                 f"not under its budget of {self.budget(task)}")
        return counter

    def plan(self, batch: pa.Table, counter: TokenCounter) -> tuple[list[Request], int]:
        """The requests for a batch of documents, and how many documents no task took.

        Requests come grouped by task (in the order of ``tasks``): prompts of one task share their
        instructions, which an engine with a prefix cache (llama.cpp, vLLM) then evaluates once.
        """
        requests, unrouted, _ = self.plan_counted(batch, counter)
        return requests, unrouted

    def plan_counted(self, batch: pa.Table, counter: TokenCounter) -> tuple[list[Request], int, int]:
        """:meth:`plan`, and the number of segments left out by ``max_segments_per_document``."""
        ids = batch.column("id").cast(pa.string()).to_pylist()
        texts = batch.column(self.column).to_pylist()
        if self.quality_column in batch.column_names:
            labels = batch.column(self.quality_column).cast(pa.string()).to_pylist()
        else:
            labels = [None] * batch.num_rows
        by_task: dict[TaskName, list[Request]] = {task: [] for task in self.tasks}
        renders = {task: functools.partial(self.prompt_text, task) for task in self.tasks}
        overheads = dict(zip(self.tasks, counter.count_many([renders[task]("") for task in self.tasks])))
        unrouted = skipped = 0
        for doc_id, text, label in zip(ids, texts, labels):
            tasks = self.tasks_for(label)
            if not tasks or not text:
                unrouted += 1
                continue
            lines = DocumentLines.count(text, counter)
            for task in tasks:
                render = renders[task]
                segments = segment_document(text, TASKS[task], counter, self.budget(task), render, lines=lines,
                                            overhead=overheads[task])
                if self.max_segments_per_document is not None:
                    skipped += max(0, len(segments) - self.max_segments_per_document)
                    segments = segments[:self.max_segments_per_document]
                for index, segment in enumerate(segments):
                    by_task[task].append(Request(doc_id, task, index, segment, render(segment)))
        return [r for task in self.tasks for r in by_task[task]], unrouted, skipped

    def prompt_text(self, task: TaskName, segment: str) -> str:
        """The prompt text of a segment: the task's template, and its answer prefix when prefilled."""
        text = TASKS[task].prompt(segment)
        return f"{text}\n\n{TASKS[task].prefix}\n" if self.prefill_prefix else text

    def prompt(self, request: Request) -> Prompt:
        """The request as sent: a single user message (chat) or the text itself (completions)."""
        if self.llm.endpoint == "chat":
            return Prompt.chat([{"role": "user", "content": request.prompt}])
        return Prompt.completion(request.prompt)

    def postprocess(self, request: Request, result: LLMResult) -> tuple[str | None, str | None]:
        """The output text of an answer, or its drop reason: ``(text, None)`` or ``(text?, reason)``."""
        if not result.ok:
            return None, f"llm_failed:{result.error_kind}"
        raw = result.text or ""
        spec = TASKS[request.task]
        if self.prefill_prefix:
            raw = f"{spec.prefix} {raw.lstrip()}"
        if result.finish_reason == "length":
            return raw, "length_cap"
        text = strip_markdown(raw, keep_bullets=spec.keep_bullets)
        if not text.lower().startswith(spec.prefix.lower()):
            return raw, "missing_prefix"
        text = text[len(spec.prefix):].strip()
        if len(text.split()) < self.min_output_words:
            return text, "too_short"
        if request.task == "diverse_qa":
            pairs = parse_qa_pairs(text)
            if not pairs:
                return text, "no_qa_pairs"
            rng = random.Random(f"{self.seed}:{request.source_id}:{request.segment_index}")
            rng.shuffle(pairs)
            keep = qa_pairs_to_keep(request.segment, len(pairs), self.qa_words_per_pair)
            text = "\n\n".join([request.segment, *(f"Question: {q}\nAnswer: {a}" for q, a in pairs[:keep])])
        return text, None

    def rows(self, requests: list[Request], results: list[LLMResult]) -> pa.Table:
        """Output rows (with ``drop_reason``) for answered requests."""
        cols: dict[str, list[Any]] = {name: [] for name in _WITH_REASON.names}
        sampling = {t: json.dumps(self.sampling(t).model_dump(mode="json", exclude_none=True), sort_keys=True)
                    for t in self.tasks}
        for request, result in zip(requests, results):
            text, reason = self.postprocess(request, result)
            cols["id"].append(f"{request.source_id}/{request.task}/{request.segment_index}")
            cols["text"].append(text)
            cols["source_id"].append(request.source_id)
            cols["task"].append(request.task)
            cols["segment_index"].append(request.segment_index)
            cols["model"].append(self.llm.model_name)
            cols["sampling"].append(sampling[request.task])
            cols["prompt_tokens"].append(result.tokens_in)
            cols["completion_tokens"].append(result.tokens_out)
            cols[DROP_REASON].append(reason)
        return pa.table(cols, schema=_WITH_REASON)

    def rephrase(self, batch: pa.Table, client: LLMClient, counter: TokenCounter | None = None) -> pa.Table:
        """Stage-level API: the output rows for a batch of documents, rejected ones with ``drop_reason``."""
        counter = counter or self.token_counter()
        requests, _ = self.plan(batch, counter)
        results = client.generate([(self.prompt(r), self.sampling(r.task)) for r in requests])
        return self.rows(requests, results)

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        run_llm_shards(ctx, self, _output_shard, merge_llm_stats)



def merge_llm_stats(tasks: list[ShardTask], stats_dir: str, stage_id: str, model: str) -> dict[str, Any]:
    """The per-shard LLM counts of the current shards (stale files of other configs ignored), merged."""
    merged = LLMStats()
    per_task: dict[str, dict[str, Any]] = {}
    shards = 0
    unrouted = skipped = 0
    for record in current_shard_records(tasks, stats_dir):
        shards += 1
        unrouted += int(record.get("docs_unrouted", 0))
        skipped += int(record.get("segments_skipped", 0))
        merged.add(LLMStats.from_json(record["llm"]))
        for name, counts in record.get("tasks", {}).items():
            entry = per_task.setdefault(name, {"segments": 0, "kept": 0, "rejected": Counter()})
            entry["segments"] += counts["segments"]
            entry["kept"] += counts["kept"]
            entry["rejected"].update(counts["rejected"])
    tasks_out = {name: {**e, "rejected": dict(sorted(e["rejected"].items()))} for name, e in sorted(per_task.items())}
    return {"stage": stage_id, "model": model, "shards": shards, "shards_total": len(tasks),
            "docs_unrouted": unrouted, "segments_skipped": skipped, **merged.to_json(), "tasks": tasks_out}


def _planned_chunks(stage: Rephrase, counter: TokenCounter, input_path: str,
                    batch_rows: int) -> Iterator[tuple[pa.Table, tuple[list[Request], int, int]]]:
    """The shard's documents in chunks, each with its plan; the next chunk is planned in a thread
    while the caller sends the requests of this one, so the server does not wait for planning.

    A chunk holds ``4 x concurrency`` documents (at least 32): enough requests to keep
    ``concurrency`` in flight, few enough that the first requests go out soon.
    """
    chunk_rows = max(32, 4 * stage.llm.concurrency)

    def chunks() -> Iterator[pa.Table]:
        for batch in read_batches(input_path, batch_rows):
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows)

    with ThreadPoolExecutor(1, thread_name_prefix="rephrase-plan") as pool:
        pending: tuple[pa.Table, Future[tuple[list[Request], int, int]]] | None = None
        for chunk in chunks():
            planned = (chunk, pool.submit(stage.plan_counted, chunk, counter))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = planned
        if pending is not None:
            yield pending[0], pending[1].result()


_Answered = tuple[pa.Table, list[Request], list[LLMResult], int, int]


def _answered_chunks(stage: Rephrase, client: LLMClient, counter: TokenCounter, input_path: str,
                     batch_rows: int) -> Iterator[_Answered]:
    """Chunks of the shard with their requests and answers: ``(chunk, requests, answers, unrouted,
    skipped)``, in order, streamed through :func:`curator.llm.streaming.answered_chunks` (chunk k+1's
    requests start while the last ones of chunk k are out, under one bound of ``concurrency``)."""

    def prompts() -> Iterator[tuple[tuple[pa.Table, list[Request], int, int], list[tuple[Prompt, SamplingParams]]]]:
        planned = _planned_chunks(stage, counter, input_path, batch_rows)
        try:
            for chunk, (requests, unrouted, skipped) in planned:
                items = [(stage.prompt(r), stage.sampling(r.task)) for r in requests]
                yield (chunk, requests, unrouted, skipped), items
        finally:
            planned.close()

    for (chunk, requests, unrouted, skipped), answers in answered_chunks(client, prompts(), stage.llm.concurrency):
        yield chunk, requests, answers, unrouted, skipped


def _output_shard(task: ShardTask, input_path: str, params: dict[str, Any], stage_id: str, cache_dir: str,
                  stats_dir: str, batch_rows: int) -> dict[str, Any]:
    """One output shard: plan, send (through the shard's cache), post-process, write."""
    stage = Rephrase(**params)
    counter = stage.token_counter()
    stats = ShardStats()
    per_task: dict[str, dict[str, Any]] = {}
    totals = {"requests": 0, "failed": Counter(), "unrouted": 0, "skipped": 0}
    os.makedirs(cache_dir, exist_ok=True)
    cache = ResponseCache(os.path.join(cache_dir, f"{task.name}.sqlite"))
    client = LLMClient(stage.llm.build_backend(), cache=cache, concurrency=stage.llm.concurrency)

    def results() -> Iterator[tuple[pa.Table, pa.Table | None]]:
        for batch, requests, answers, unrouted, skipped in _answered_chunks(stage, client, counter, input_path,
                                                                            batch_rows):
            res = split_counted(batch, stage.rows(requests, answers), stats)
            totals["requests"] += len(requests)
            totals["unrouted"] += unrouted
            totals["skipped"] += skipped
            totals["failed"].update(a.error_kind for a in answers if not a.ok)
            for name in res.kept.column("task").to_pylist():
                per_task.setdefault(name, {"segments": 0, "kept": 0, "rejected": Counter()})["kept"] += 1
            for request in requests:
                per_task.setdefault(request.task, {"segments": 0, "kept": 0, "rejected": Counter()})["segments"] += 1
            if res.rejected is not None:
                for name, reason in zip(res.rejected.column("task").to_pylist(),
                                        res.rejected.column(DROP_REASON).to_pylist()):
                    per_task[name]["rejected"][reason] += 1
            yield res.kept, res.rejected
        failed = sum(totals["failed"].values())
        if failed and failed > stage.max_failed_fraction * totals["requests"]:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(totals["failed"].items()))
            raise RuntimeError(
                f"stage {stage_id} ({stage.name}) {task.name} ({input_path}): {failed} of {totals['requests']} "
                f"LLM requests failed ({kinds}), over max_failed_fraction {stage.max_failed_fraction}; "
                "answers are cached, so a rerun sends only the failed requests")

    try:
        return write_shard(task, results(), stats, schema=OUTPUT_SCHEMA)
    finally:
        cache.close()
        write_json_atomic(shard_record_path(stats_dir, task), {
            "fingerprint": task.fingerprint, "llm": client.stats.to_json(), "docs_unrouted": totals["unrouted"],
            "segments_skipped": totals["skipped"],
            "tasks": {name: {**e, "rejected": dict(e["rejected"])} for name, e in per_task.items()},
        })
