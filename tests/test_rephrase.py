"""synth.rephrase against the fake OpenAI-compatible server, through the real runner on a LocalCluster.

The tokenizer is a tiny BPE trained here on the prompts and the test documents, so token budgets
are counted the way they are with a real model's tokenizer.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from curator.llm import LLMResult
from curator.llm.config import LLMConfig, TokenCounter
from curator.pipeline import load_pipeline
from curator.plan import LLM_STATS
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from stages.rephrase import (
    Rephrase, Request, parse_qa_pairs, qa_pairs_to_keep, segment_document, strip_markdown,
)
from stages.rephrase_prompts import TASK_NAMES, TASKS
from tests.conftest import read_dataset
from tests.helpers.fake_llm_server import FakeLLMServer

WORDS = ("river valley mountain city harbor engine theory planet forest market village bridge "
         "science history music language railway castle island winter summer ocean garden").split()
QA_PAIRS = 6
WORDS_PER_PAIR = 10
HEADROOM = 60
"""Tokens of text a segment may hold beyond a task's instructions in these tests."""


def _sentence(seed: int, n: int = 9) -> str:
    return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(n)).capitalize() + "."


def _paragraphs(seed: int, lines: int) -> str:
    return "\n".join(f"{_sentence(seed + i)} {_sentence(seed + i + 50)}" for i in range(lines))


DOCS: list[list[dict]] = [
    [
        {"id": "low1", "text": _paragraphs(1, 3), "quality_label": "low"},
        {"id": "high1", "text": _paragraphs(10, 14), "quality_label": "high"},
        {"id": "none1", "text": _paragraphs(30, 2), "quality_label": None},
        {"id": "med1", "text": _paragraphs(40, 2), "quality_label": "medium"},
        {"id": "low_fail", "text": "Broken [fault:always500] " + _sentence(3), "quality_label": "low"},
    ],
    [
        {"id": "high2", "text": " ".join(_sentence(60 + i) for i in range(30)), "quality_label": "high"},
        {"id": "low_short", "text": "MARKSHORT " + _sentence(4), "quality_label": "low"},
        {"id": "low_len", "text": "MARKLENGTH " + _sentence(5), "quality_label": "low"},
        {"id": "low_nopre", "text": "MARKNOPREFIX " + _sentence(6), "quality_label": "low"},
    ],
]


def _segment_of(prompt: str) -> str:
    return prompt.split("Passage:\n", 1)[1].rsplit("\n\nStart your answer", 1)[0]


def _task_of(prompt: str) -> str:
    return next(t for t, s in TASKS.items() if f'Start your answer with "{s.prefix}"' in prompt)


def fake_answer(prompt: str) -> str | tuple[str, str]:
    """Task-shaped answers, with Markdown to strip, and the faults the markers ask for."""
    task, segment = _task_of(prompt), _segment_of(prompt)
    prefix = TASKS[task].prefix
    if "MARKSHORT" in segment:
        return f"{prefix} Too short."
    if "MARKLENGTH" in segment:
        return f"{prefix} {segment} and so on and so", "length"
    if "MARKNOPREFIX" in segment:
        return f"Sure! {segment}"
    first = segment.split()[0]
    if task == "diverse_qa":
        pairs = "\n".join(f"- **Question:** What is item {i} of the {first} text?\n  Answer: It is item {i}, "
                          "as the text says." for i in range(QA_PAIRS))
        return f"**{prefix}**\n\n{pairs}"
    if task == "knowledge_list":
        return f"{prefix}\n* The {first} fact one is true.\n* The {first} fact two is *also* true."
    return f"## {prefix}\n\n```\nThe **rewritten** text: {segment}\n```"


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [s.template for s in TASKS.values()] + [d["text"] for shard in DOCS for d in shard]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"], show_progress=False))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def counter(tokenizer_file: Path) -> TokenCounter:
    return TokenCounter(tokenizer_file)


@pytest.fixture(scope="module")
def budgets(counter: TokenCounter) -> dict[str, int]:
    return {t: counter.count(s.prompt("")) + HEADROOM for t, s in TASKS.items()}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(answer=fake_answer) as fake:
        yield fake


# ---------------------------------------------------------------- pieces, no cluster


def test_markdown_stripping() -> None:
    text = "# Title\n\n**Bold** and *italic* and __under__ x*y*z\n---\n```python\ncode()\n```\n- item\n* star\n1. one"
    assert strip_markdown(text) == "Title\n\nBold and italic and under x*y*z\ncode()\nitem\nstar\n1. one"
    assert strip_markdown("* a\n+ b\n- c", keep_bullets=True) == "- a\n- b\n- c"


def test_qa_parsing_and_count_rule() -> None:
    text = "Question: What?\nAnswer: This.\nMore of it.\nQ2: Why not\nsay more?\nA2: Because.\nAnswer: stray"
    assert parse_qa_pairs(text) == [("What?", "This.\nMore of it."), ("Why not say more?", "Because.\nAnswer: stray")]
    assert parse_qa_pairs("no pairs here") == []
    assert qa_pairs_to_keep("w " * 3, 5, 100) == 1
    assert qa_pairs_to_keep("w " * 260, 5, 100) == 3
    assert qa_pairs_to_keep("w " * 2000, 5, 100) == 5


def test_segments_fit_the_budget_and_keep_the_text(counter: TokenCounter, budgets: dict[str, int]) -> None:
    spec = TASKS["wikipedia"]
    budget = budgets["wikipedia"]
    lines_doc = _paragraphs(10, 14)
    long_line = " ".join(_sentence(60 + i) for i in range(30))
    no_spaces = "x" * 3000  # one "word" over the budget: cut into halves by characters
    for text in (lines_doc, long_line, no_spaces):
        segments = segment_document(text, spec, counter, budget)
        assert len(segments) > 1
        assert all(counter.count(spec.prompt(s)) <= budget for s in segments)
        assert "".join("".join(s.split()) for s in segments) == "".join(text.split())
    # Line boundaries are preferred: a multi-line document is cut only between lines.
    lines = set(lines_doc.splitlines())
    assert all(set(s.splitlines()) <= lines for s in segment_document(lines_doc, spec, counter, budget))
    with pytest.raises(ValueError, match="prompt alone"):
        segment_document("text", spec, counter, 5)


class _NewlineHungryCounter:
    """Words plus 3 per line break inside the stripped text: joined lines cost more than their sum,
    as tokens across a boundary can with a real tokenizer, so the greedy packing overshoots."""

    calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        stripped = text.strip()
        return len(stripped.split()) + 3 * stripped.count("\n")

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


def test_segments_over_budget_after_packing_are_packed_again() -> None:
    spec = TASKS["wikipedia"]
    counter = _NewlineHungryCounter()
    overhead = counter.count(spec.prompt(""))
    budget = overhead + 40
    text = "\n".join(f"line {i} has exactly six words" for i in range(30))
    segments = segment_document(text, spec, counter, budget)  # type: ignore[arg-type]
    assert all(counter.count(spec.prompt(s)) <= budget for s in segments)
    assert "\n".join(segments).splitlines() == text.splitlines()
    # Greedy packing by line counts would put 6 lines (36 words) in a segment; the newlines make
    # that 36 + 15 tokens of text, so segments are cut shorter.
    assert max(len(s.splitlines()) for s in segments) < 6


def test_config_validation(tokenizer_file: Path, tmp_path: Path) -> None:
    llm = LLMConfig(model="m", base_url="http://127.0.0.1:1")
    assert llm.build_backend().model == "m"
    with pytest.raises(ValueError, match="tokenizer not found"):
        Rephrase(llm=llm, tokenizer_path=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown_task|Input should be"):
        Rephrase(llm=llm, tokenizer_path=str(tokenizer_file), tasks=["unknown_task"])
    stage = Rephrase(llm=llm, tokenizer_path=str(tokenizer_file), budgets={"distill": 3})
    with pytest.raises(ValueError, match="distill: the prompt alone"):
        stage.token_counter()
    assert stage.tasks_for("low") == ["wikipedia"]
    assert stage.tasks_for("high") == ["diverse_qa", "distill", "extract_knowledge", "knowledge_list"]
    assert stage.tasks_for(None) == [] and stage.tasks_for("medium") == []


# ---------------------------------------------------------------- through the runner


def _write_input(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("quality_label", pa.string())])
    for i, rows in enumerate(DOCS):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / f"part-{i:05d}.parquet")
    return directory


def _pipeline(tmp_path: Path, server: FakeLLMServer, tokenizer: Path, budgets: dict[str, int], **extra) -> Path:
    params = {
        "llm": {"model": "fake-model", "base_url": server.url, "max_retries": 0, "backoff_base_s": 0.01,
                "timeout_s": 10, "concurrency": 4},
        "tokenizer_path": str(tokenizer), "unlabeled_tasks": ["distill"], "budgets": budgets,
        "min_output_words": 5, "qa_words_per_pair": WORDS_PER_PAIR, "seed": 7, "max_failed_fraction": 1.0,
        **extra,
    }
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [stages.rephrase]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - {{id: synth, uses: synth.rephrase, from: docs, keep_rejected: true, with: {json.dumps(params)}}}
""")
    return path


def _run(path: Path, client):
    pipeline = load_pipeline(str(path), [])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()


def test_rephrase_pipeline(tmp_path: Path, dask_client, server: FakeLLMServer, tokenizer_file: Path,
                           counter: TokenCounter, budgets: dict[str, int]) -> None:
    _write_input(tmp_path / "in")
    server.reset_counts()
    result = _run(_pipeline(tmp_path, server, tokenizer_file, budgets), dask_client)
    assert result.ok, result.failures
    stage_dir = tmp_path / "run" / "synth"
    out = read_dataset(stage_dir).to_pylist()
    rejected = pq.read_table(stage_dir / "_rejected").to_pylist()

    # Routing: low -> wikipedia, high -> the other four, unlabeled -> distill, medium -> nothing.
    tasks_by_doc: dict[str, set[str]] = {}
    for row in out + rejected:
        tasks_by_doc.setdefault(row["source_id"], set()).add(row["task"])
    assert tasks_by_doc["low1"] == {"wikipedia"}
    assert tasks_by_doc["high1"] == tasks_by_doc["high2"] == set(TASK_NAMES) - {"wikipedia"}
    assert tasks_by_doc["none1"] == {"distill"}
    assert "med1" not in tasks_by_doc

    # Segmenting: every prompt the server saw fits its task's budget; long documents have several segments.
    payloads = server.payloads
    assert payloads and all(p["temperature"] == 0.5 and p["top_p"] == 0.9 for p in payloads)
    for p in payloads:
        prompt = p["messages"][-1]["content"]
        assert counter.count(prompt) <= budgets[_task_of(prompt)]
    for doc in ("high1", "high2"):
        for task in set(TASK_NAMES) - {"wikipedia"}:
            indexes = sorted(r["segment_index"] for r in out if r["source_id"] == doc and r["task"] == task)
            assert len(indexes) > 1 and indexes == list(range(len(indexes)))

    # Rejections, each with its reason.
    reasons = {r["source_id"]: r["drop_reason"] for r in rejected}
    assert reasons == {"low_fail": "llm_failed:http_5xx", "low_short": "too_short", "low_len": "length_cap",
                       "low_nopre": "missing_prefix"}

    # Provenance and post-processing.
    ids = [r["id"] for r in out]
    assert len(ids) == len(set(ids))
    for row in out:
        assert row["id"] == f"{row['source_id']}/{row['task']}/{row['segment_index']}"
        assert row["model"] == "fake-model"
        assert json.loads(row["sampling"]) == {"temperature": 0.5, "top_p": 0.9, "max_tokens": budgets[row["task"]]}
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        assert "**" not in row["text"] and "```" not in row["text"] and "#" not in row["text"]
        assert not row["text"].startswith("Here")
    lists = [r["text"] for r in out if r["task"] == "knowledge_list"]
    assert lists and all(t.splitlines()[0].startswith("- The ") for t in lists)
    wiki = next(r["text"] for r in out if r["source_id"] == "low1")
    assert wiki.startswith("The rewritten text: ")

    # Diverse QA: the segment, then a length-proportional number of shuffled pairs, the same as in-process.
    stage = Rephrase(**load_pipeline(str(tmp_path / "p.yaml"), []).stages[0].stage.model_dump())
    orders = []
    for row in (r for r in out if r["task"] == "diverse_qa"):
        segment, *pairs = row["text"].split("\n\nQuestion: ")
        assert len(pairs) == qa_pairs_to_keep(segment, QA_PAIRS, WORDS_PER_PAIR) < QA_PAIRS
        orders.append([int(p.split("item ")[1].split()[0]) for p in pairs])
        request = Request(row["source_id"], "diverse_qa", row["segment_index"], segment,
                          TASKS["diverse_qa"].prompt(segment))
        answer = LLMResult(text=str(fake_answer(request.prompt)), finish_reason="stop")
        assert stage.postprocess(request, answer) == (row["text"], None)
    assert any(order != sorted(order) for order in orders)  # shuffled, not the first pairs in order

    # Stats merged over the shards.
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["shards"] == 2 and stats["requests"] == server.total_requests == len(out) + len(rejected)
    assert stats["failures"] == {"http_5xx": 1} and stats["cache_hits"] == 0
    assert stats["tokens_in"] == sum(r["prompt_tokens"] for r in out + rejected)
    assert stats["latency_s"]["p50"] is not None and stats["docs_unrouted"] == 1
    assert stats["tasks"]["wikipedia"]["rejected"] == {"llm_failed:http_5xx": 1, "too_short": 1, "length_cap": 1,
                                                       "missing_prefix": 1}
    assert sum(t["kept"] for t in stats["tasks"].values()) == len(out)
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    assert "<h2>LLM requests</h2>" in page and f"{stats['requests']:,} requests sent" in page
    assert "http_5xx: 1" in page and "<td>wikipedia</td>" in page and "missing_prefix: 1" in page

    # A rerun with another setting redoes every shard but sends only the request that failed.
    answered = stats["successes"]
    server.reset_counts()
    result = _run(_pipeline(tmp_path, server, tokenizer_file, budgets, min_output_words=4), dask_client)
    assert result.ok, result.failures
    assert server.total_requests == 1
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["requests"] == 1 and stats["cache_hits"] == answered
    assert len(read_dataset(stage_dir)) == len(out)

    # Too many failed requests fail the shard (named), so that a rerun retries them.
    result = _run(_pipeline(tmp_path, server, tokenizer_file, budgets, max_failed_fraction=0.0), dask_client)
    assert not result.ok
    assert len(result.failures) == 1 and "part-00000" in result.failures[0]
    assert re.search(r"1 of \d+ LLM requests failed \(http_5xx 1\)", result.failures[0])
