"""classify.annotate_edu: the rubric's strict parser, document truncation, and the stage against the
fake OpenAI-compatible server (real HTTP on 127.0.0.1) through the real runner on a LocalCluster,
then once with the real llama.cpp backend and the sample's GGUF model."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from classifiers.annotate import (
    CUT_AT_MAX_TOKENS, EduAnnotator, cut_to_chars, cut_to_tokens,
)
from classifiers.edu_prompt import (
    COMPLETION_CUE, EDU_RUBRIC, PLACEHOLDER, UNPARSEABLE_REASONS, edu_prompt, edu_prompt_text, parse_edu_answer,
)
from curator.llm import LLMClient, LLMResult
from curator.llm.config import TokenCounter
from curator.llm.engines import release_engines
from curator.pipeline import load_pipeline
from curator.plan import LLM_STATS
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import read_dataset
from tests.helpers.fake_llm_server import FakeLLMServer

# ---------------------------------------------------------------- the parser


@pytest.mark.parametrize(("answer", "score", "reason"), [
    # The plain form, with a justification before it, in any letter case and spacing.
    ("Educational score: 3", 3, None),
    ("It explains photosynthesis clearly.\n\nEducational score: 4", 4, None),
    ("Some text.\neducational SCORE:5", 5, None),
    ("Text.\n  Educational   score :  0  \n\n  ", 0, None),
    ("Text.\r\nEducational score: 2\r\n", 2, None),
    ("Text.\nEducational score: 1.", 1, None),
    ("Text.\nEducational score: +2", 2, None),
    # Markdown emphasis around the line, the label or the number.
    ("Text.\n**Educational score: 4**", 4, None),
    ("Text.\n**Educational score:** 4", 4, None),
    ("Text.\nEducational score: **4**", 4, None),
    ("Text.\n*Educational score: 4*", 4, None),
    ("Text.\n__Educational score: 4__", 4, None),
    # Earlier mentions: the same number, or the instructions' placeholder, are fine.
    ("Educational score: 3\nTo restate:\nEducational score: 3", 3, None),
    ("The format is Educational score: N, so:\nEducational score: 2", 2, None),
    ("I would say Educational score: 2 at first.\nEducational score: 2", 2, None),
    # Unparseable, each with its reason.
    ("", None, "empty"),
    ("  \n\n\t", None, "empty"),
    ("A fine page about gardening.", None, "no_score"),
    ("Score: 3", None, "no_score"),
    ("Educational value: 3", None, "no_score"),
    ("Text.\n### Educational score: 3", None, "malformed_score_line"),
    ("Text.\nFinal answer: Educational score: 3", None, "malformed_score_line"),
    ("Text.\n- Educational score: 3", None, "malformed_score_line"),
    ("Text.\n\"Educational score: 3\"", None, "malformed_score_line"),
    ("Educational score: 3\nThis is because it explains well.", None, "score_not_last"),
    ("Educational score: 3\n\nThe extract: ...", None, "score_not_last"),
    ("Text.\nEducational score: 2.5", None, "not_an_integer"),
    ("Text.\nEducational score: 3/5", None, "not_an_integer"),
    ("Text.\nEducational score: 3 out of 5", None, "not_an_integer"),
    ("Text.\nEducational score: 3 points", None, "not_an_integer"),
    ("Text.\nEducational score: three", None, "not_an_integer"),
    ("Text.\nEducational score: <3>", None, "not_an_integer"),
    ("Text.\nEducational score: N", None, "not_an_integer"),
    ("Text.\nEducational score:", None, "not_an_integer"),
    ("Text.\nEducational score: \u0663", None, "not_an_integer"),  # an Arabic-Indic digit three
    ("Text.\nEducational score: 3, maybe 4", None, "not_an_integer"),
    ("Text.\nEducational score: 6", None, "out_of_range"),
    ("Text.\nEducational score: 10", None, "out_of_range"),
    ("Text.\nEducational score: -1", None, "out_of_range"),
    ("Educational score: 2\nOn reflection:\nEducational score: 4", None, "conflicting_scores"),
    ("First guess Educational score: 3.5\nEducational score: 3", None, "conflicting_scores"),
])
def test_parse_edu_answer(answer: str, score: int | None, reason: str | None) -> None:
    parsed = parse_edu_answer(answer)
    assert (parsed.score, parsed.reason) == (score, reason)
    assert parsed.ok == (score is not None)
    assert reason is None or reason in UNPARSEABLE_REASONS


def test_parse_none_answer() -> None:
    assert parse_edu_answer(None).reason == "empty"


# ---------------------------------------------------------------- the prompt


def test_prompt_for_chat_and_completions() -> None:
    assert EDU_RUBRIC.count(PLACEHOLDER) == 1 and "[fault:" not in EDU_RUBRIC
    assert EDU_RUBRIC.endswith("\nEducational score: N")  # the rubric itself shows the form the parser wants
    doc = "Plants make sugar from light."
    chat = edu_prompt(doc, "chat")
    assert chat.is_chat and chat.messages is not None and len(chat.messages) == 1
    assert chat.messages[0].role == "user" and chat.messages[0].content == edu_prompt_text(doc)
    completion = edu_prompt(doc, "completions")
    assert completion.text == edu_prompt_text(doc) + COMPLETION_CUE
    assert f'"""\n{doc}\n"""' in edu_prompt_text(doc)


# ---------------------------------------------------------------- truncation

WORDS = ("plant light sugar water leaf root cell energy carbon oxygen soil seed flower sun green "
         "science lesson student teacher chapter").split()


def _text(n_words: int, seed: int = 0) -> str:
    return " ".join(WORDS[(seed + 7 * i) % len(WORDS)] for i in range(n_words))


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [EDU_RUBRIC, _text(400), _text(400, 3)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"], show_progress=False))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def test_cut_to_chars() -> None:
    assert cut_to_chars("short text", 100) == "short text"
    text = "alpha beta gamma delta epsilon"
    assert cut_to_chars(text, 12) == "alpha beta"  # the space at 10 is in the last fifth of 12
    assert cut_to_chars("abcdefghij klm", 8) == "abcdefgh"  # no space near the end: cut mid-word
    assert cut_to_chars("one two three\nfour", 15) == "one two three"  # a line break counts as whitespace


def test_cut_to_tokens_is_the_longest_fitting_word_prefix(tokenizer_file: Path) -> None:
    counter = TokenCounter(tokenizer_file)
    text = _text(300)
    for budget in (1, 7, 50, 200):
        cut = cut_to_tokens(text, budget, counter)
        assert text.startswith(cut) and counter.count(cut) <= budget
        next_word = text[len(cut):].split()[0]
        assert counter.count(f"{cut} {next_word}".strip()) > budget  # one more word would not fit
    assert cut_to_tokens(text, 10_000, counter) == text
    long_word = "photosynthesis" * 20  # a first word over the budget alone is cut by characters
    cut = cut_to_tokens(long_word, 5, counter)
    assert cut and long_word.startswith(cut) and counter.count(cut) <= 5 < counter.count(long_word[:len(cut) + 1])


def test_truncate_and_plan(tokenizer_file: Path) -> None:
    llm = {"model": "m", "base_url": "http://127.0.0.1:1"}
    stage = EduAnnotator(llm=llm, tokenizer_path=str(tokenizer_file), max_document_chars=400, max_document_tokens=30)
    counter = stage.token_counter()
    assert counter is not None
    batch = pa.table({"id": ["a", "b", "c", "d"], "text": ["  short text about a leaf  ", _text(500), None, " \n "]})
    planned = stage.plan(batch, counter)
    assert planned.truncated == 1 and planned.prompts[2] is None and planned.prompts[3] is None
    assert planned.prompts[0] == edu_prompt("short text about a leaf", "chat")
    sent = planned.prompts[1]
    assert sent is not None and sent.messages is not None
    document = _document_of(sent.messages[0].content)
    assert _text(500).startswith(document) and counter.count(document) <= 30 and len(document) <= 400
    # Without a tokenizer (an HTTP endpoint whose tokenizer is not at hand) only characters count.
    chars_only = EduAnnotator(llm=llm, max_document_chars=100)
    assert chars_only.token_counter() is None
    assert chars_only.truncate(_text(500), None) == cut_to_chars(_text(500), 100)


def test_config_validation(tokenizer_file: Path, tmp_path: Path, gguf_model: Path) -> None:
    llm = {"model": "m", "base_url": "http://127.0.0.1:1"}
    with pytest.raises(ValueError, match="output_prefix"):
        EduAnnotator(llm=llm, output_prefix="edu-v2")
    with pytest.raises(ValueError, match="tokenizer not found"):
        EduAnnotator(llm=llm, tokenizer_path=str(tmp_path / "missing.json"))
    stage = EduAnnotator(llm=llm, output_prefix="edu_mixtral")
    assert stage.output_columns(["id", "text", "edu_mixtral_status"]) == [
        "id", "text", "edu_mixtral_score", "edu_mixtral_status", "edu_mixtral_answer"]
    assert stage.required_columns() == ("id", "text")
    assert stage.sampling.temperature == 0.0 and stage.sampling.max_tokens == 256
    # llama_cpp: the GGUF file is the default tokenizer, and the context window is checked up front.
    small = EduAnnotator(llm={"backend": "llama_cpp", "model_path": str(gguf_model), "n_ctx": 512})
    assert small.tokenizer_path == str(gguf_model)
    with pytest.raises(ValueError, match=r"over llm.n_ctx 512"):
        small.token_counter()
    EduAnnotator(llm={"backend": "llama_cpp", "model_path": str(gguf_model), "n_ctx": 1024},
                 max_document_tokens=300, max_tokens=64).token_counter()


def test_grade() -> None:
    stage = EduAnnotator(llm={"model": "m", "base_url": "http://127.0.0.1:1"})
    assert stage.grade(None).status == "no_text"
    failed = stage.grade(LLMResult(text=None, error_kind="timeout", error="slow"))
    assert (failed.score, failed.status, failed.answer) == (None, "llm_failed:timeout", None)
    good = stage.grade(LLMResult(text="Fine.\nEducational score: 2", finish_reason="stop"))
    assert (good.score, good.status, good.answer, good.reason) == (2, "ok", "Fine.\nEducational score: 2", None)
    cut = stage.grade(LLMResult(text="Fine.\nEducational score: 2", finish_reason="length"))
    assert (cut.score, cut.status, cut.reason) == (None, "unparseable", CUT_AT_MAX_TOKENS)
    bad = stage.grade(LLMResult(text="Fine.", finish_reason="stop"))
    assert (bad.score, bad.status, bad.answer, bad.reason) == (None, "unparseable", "Fine.", "no_score")


# ---------------------------------------------------------------- against the fake server


def _document_of(prompt: str) -> str:
    return prompt.split('Extract:\n"""\n', 1)[1].split('\n"""\n\nWrite', 1)[0]


def fake_answer(prompt: str) -> str | tuple[str, str]:
    """Answers shaped by markers in the document."""
    doc = _document_of(prompt)
    if "BOLD" in doc:
        return "A clear lesson with exercises.\n\n**Educational score: 4**"
    if "NOSCORE" in doc:
        return "A pleasant page about gardens."
    if "TWICE" in doc:
        return "Educational score: 2\nOn reflection it is better.\nEducational score: 4"
    if "RANGE" in doc:
        return "Outstanding.\nEducational score: 7"
    if "LONG" in doc:
        return "This justification goes on and on and", "length"
    for score in range(6):
        if f"GOOD{score}" in doc:
            return f"The extract teaches something.\nEducational score: {score}"
    return "Nothing to say."


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(answer=fake_answer) as fake:
        yield fake


FILLER = " ".join(["The water cycle moves water between the sea, the air and the land."] * 20)
SHARDS: list[list[dict]] = [
    [
        {"id": "good3", "text": "GOOD3 Plants use light to make sugar.", "url": "u0"},
        {"id": "bold", "text": "BOLD Fractions explained with exercises.", "url": "u1"},
        {"id": "noscore", "text": "NOSCORE A garden blog.", "url": "u2"},
        {"id": "twice", "text": "TWICE Volcanoes erupt.", "url": "u3"},
        {"id": "fail5xx", "text": "GOOD2 [fault:500x1] The moon orbits the earth.", "url": "u4"},
        {"id": "empty", "text": "", "url": "u5"},
    ],
    [
        {"id": "range", "text": "RANGE Multiplication tables.", "url": "u6"},
        {"id": "long", "text": "LONG A story.", "url": "u7"},
        {"id": "fail4xx", "text": "GOOD5 [fault:400x1] Long division step by step.", "url": "u8"},
        {"id": "dup1", "text": "GOOD1 Rivers flow to the sea.", "url": "u9"},
        {"id": "dup2", "text": "GOOD1 Rivers flow to the sea.", "url": "u10"},
        {"id": "null", "text": None, "url": "u11"},
        {"id": "longdoc", "text": "GOOD0 " + FILLER, "url": "u12"},
    ],
    [],  # an empty shard still gets the output schema
]
FIRST_RUN = {
    "good3": (3, "ok"), "bold": (4, "ok"), "noscore": (None, "unparseable"), "twice": (None, "unparseable"),
    "fail5xx": (None, "llm_failed:http_5xx"), "empty": (None, "no_text"), "range": (None, "unparseable"),
    "long": (None, "unparseable"), "fail4xx": (None, "llm_failed:http_4xx"), "dup1": (1, "ok"), "dup2": (1, "ok"),
    "null": (None, "no_text"), "longdoc": (0, "ok"),
}
MAX_CHARS = 300


def _write_input(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("url", pa.string())])
    for i, rows in enumerate(SHARDS):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / f"part-{i:05d}.parquet")
    return directory


def _pipeline(tmp_path: Path, server: FakeLLMServer, **extra: object) -> Path:
    params = {
        "llm": {"model": "fake-model", "base_url": server.url, "max_retries": 0, "timeout_s": 10, "concurrency": 4},
        "max_document_chars": MAX_CHARS, "max_failed_fraction": 1.0, **extra,
    }
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [classifiers.annotate]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - {{id: annotate, uses: classify.annotate_edu, from: docs, with: {json.dumps(params)}}}
""")
    return path


def _run(path: Path, client):
    pipeline = load_pipeline(str(path), [])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()


def _by_id(stage_dir: Path) -> dict[str, dict]:
    return {row["id"]: row for row in read_dataset(stage_dir).to_pylist()}


def test_annotation_pipeline(tmp_path: Path, dask_client, server: FakeLLMServer,
                             caplog: pytest.LogCaptureFixture) -> None:
    _write_input(tmp_path / "in")
    before = server.total_requests
    with caplog.at_level(logging.INFO, logger="classifiers.annotate"):
        result = _run(_pipeline(tmp_path, server), dask_client)
    assert result.ok, result.failures
    # The status counts are logged, with a warning when many answers are unparseable.
    assert ("13 documents annotated (1 truncated): llm_failed:http_4xx 1, llm_failed:http_5xx 1, no_text 2, "
            "ok 5, unparseable 4; 10 requests sent" in caplog.text)
    assert "4 of 9 answers are unparseable" in caplog.text
    stage_dir = tmp_path / "run" / "annotate"

    # Every row is kept, with its input columns, and gets a status; scores only where the status is ok.
    table = read_dataset(stage_dir)
    assert table.schema.field("edu_score").type == pa.int8()
    assert pq.read_schema(stage_dir / "part-00002.parquet") == table.schema
    assert table.column_names == ["id", "text", "url", "edu_score", "edu_status", "edu_answer"]
    rows = _by_id(stage_dir)
    assert {k: (r["edu_score"], r["edu_status"]) for k, r in rows.items()} == FIRST_RUN
    assert all(r["url"] == d["url"] for shard in SHARDS for d in shard for r in [rows[d["id"]]])
    assert rows["bold"]["edu_answer"] == "A clear lesson with exercises.\n\n**Educational score: 4**"
    assert rows["long"]["edu_answer"] == "This justification goes on and on and"
    assert rows["fail5xx"]["edu_answer"] is None and rows["null"]["edu_answer"] is None

    # What was sent: chat requests, greedy, 256 tokens, the long document cut to max_document_chars.
    payloads = server.payloads[-(server.total_requests - before):]
    assert all(p["temperature"] == 0.0 and p["max_tokens"] == 256 and "messages" in p for p in payloads)
    documents = [_document_of(p["messages"][-1]["content"]) for p in payloads]
    long_doc = next(d for d in documents if d.startswith("GOOD0"))
    assert len(long_doc) <= MAX_CHARS and ("GOOD0 " + FILLER).startswith(long_doc)
    assert len(payloads) == 10  # 13 rows - 2 without text - 1 duplicate (sent once)

    # The counts: the client's, in the report's format, and per status, score and unparseable reason.
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["model"] == "fake-model" and stats["shards"] == 3 and stats["requests"] == 10
    assert stats["deduplicated"] == 1 and stats["cache_hits"] == 0
    assert stats["failures"] == {"http_4xx": 1, "http_5xx": 1}
    assert stats["documents"] == 13 and stats["documents_truncated"] == 1
    assert stats["statuses"] == {"ok": 5, "unparseable": 4, "no_text": 2, "llm_failed:http_4xx": 1,
                                 "llm_failed:http_5xx": 1}
    assert stats["scores"] == {"0": 1, "1": 2, "3": 1, "4": 1}
    assert stats["unparseable_reasons"] == {"no_score": 1, "conflicting_scores": 1, "out_of_range": 1,
                                            CUT_AT_MAX_TOKENS: 1}
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    assert "<h2>LLM requests</h2>" in page and "10 requests sent" in page

    # A rerun with another setting redoes every shard but sends only the two failed requests
    # (which the server now answers); a third sends nothing at all.
    answered = stats["successes"]
    before = server.total_requests
    result = _run(_pipeline(tmp_path, server, max_failed_fraction=0.9), dask_client)
    assert result.ok, result.failures
    assert server.total_requests - before == 2
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["requests"] == 2 and stats["cache_hits"] == answered + 1  # + the duplicate, now a hit
    rows = _by_id(stage_dir)
    assert (rows["fail5xx"]["edu_score"], rows["fail5xx"]["edu_status"]) == (2, "ok")
    assert (rows["fail4xx"]["edu_score"], rows["fail4xx"]["edu_status"]) == (5, "ok")
    second = read_dataset(stage_dir).sort_by("id")

    before = server.total_requests
    result = _run(_pipeline(tmp_path, server, max_failed_fraction=0.8), dask_client)
    assert result.ok, result.failures
    assert server.total_requests == before
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["requests"] == 0 and stats["cache_hits"] == 11 and stats["statuses"]["ok"] == 7
    assert read_dataset(stage_dir).sort_by("id").equals(second)


def test_too_many_failures_fail_the_shard(tmp_path: Path, dask_client, server: FakeLLMServer) -> None:
    rows = [{"id": "ok", "text": "GOOD2 Clouds.", "url": "a"},
            {"id": "bad", "text": "GOOD2 [fault:always500] Rain.", "url": "b"}]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "part-00000.parquet")
    result = _run(_pipeline(tmp_path, server, max_failed_fraction=0.0), dask_client)
    assert not result.ok and len(result.failures) == 1
    assert "part-00000" in result.failures[0]
    assert "1 of 2 LLM requests failed (http_5xx 1)" in result.failures[0]
    stats = json.loads((tmp_path / "run" / "annotate" / LLM_STATS).read_text())
    assert stats["statuses"] == {"ok": 1, "llm_failed:http_5xx": 1}  # the counts of the failed shard are kept


def test_completions_endpoint_through_the_stage_api(server: FakeLLMServer, tokenizer_file: Path) -> None:
    stage = EduAnnotator(llm={"model": "fake-model", "base_url": server.url, "endpoint": "completions",
                              "max_retries": 0}, tokenizer_path=str(tokenizer_file), output_prefix="edu_base",
                         max_document_tokens=40, stop=["\n\n\n"])
    batch = pa.table({"id": ["a", "b", "c"], "text": ["GOOD5 Addition.", _text(200), None],
                      "edu_base_score": pa.array([1, 1, 1], pa.int8())})  # an earlier annotation: replaced
    before = server.total_requests
    out = stage.annotate(batch, LLMClient(stage.llm.build_backend()))
    assert out.column_names == ["id", "text", "edu_base_score", "edu_base_status", "edu_base_answer"]
    assert out.column("edu_base_score").to_pylist() == [5, None, None]
    assert out.column("edu_base_status").to_pylist() == ["ok", "unparseable", "no_text"]
    payloads = server.payloads[-(server.total_requests - before):]
    assert len(payloads) == 2 and all("prompt" in p and p["prompt"].endswith(COMPLETION_CUE) for p in payloads)
    assert all(p["stop"] == ["\n\n\n"] for p in payloads)
    counter = TokenCounter(tokenizer_file)
    assert all(counter.count(_document_of(p["prompt"])) <= 40 for p in payloads)


# ---------------------------------------------------------------- the real llama.cpp backend


def test_real_llama_cpp_model_annotates_every_row(tmp_path: Path, dask_client, gguf_model: Path) -> None:
    """A 270M base model may well not follow the format: every row must get a status, not a given score."""
    docs = ["Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen. "
            "The green pigment chlorophyll in the leaves captures the light.",
            "BUY NOW!!! Cheap watches, free shipping, best prices online, click here.",
            "To add fractions with the same denominator, add the numerators and keep the denominator: "
            "1/4 + 2/4 = 3/4.",
            ""]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs}),
                   tmp_path / "in" / "part-00000.parquet")
    params = {"llm": {"backend": "llama_cpp", "model_path": str(gguf_model), "endpoint": "completions",
                      "n_ctx": 1024, "concurrency": 2},
              "max_document_tokens": 200, "max_tokens": 24}
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [classifiers.annotate]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - {{id: annotate, uses: classify.annotate_edu, from: docs, with: {json.dumps(params)}}}
""")
    try:
        result = _run(path, dask_client)
    finally:
        release_engines()
    assert result.ok, result.failures
    stage_dir = tmp_path / "run" / "annotate"
    rows = read_dataset(stage_dir).to_pylist()
    assert len(rows) == len(docs)
    for row in rows:
        assert row["edu_status"] in ("ok", "unparseable", "no_text")  # in process: no HTTP failures
        assert (row["edu_score"] is not None) == (row["edu_status"] == "ok")
        if row["edu_status"] != "no_text":
            assert row["edu_answer"] is not None
    assert [r["edu_status"] for r in rows if r["id"] == "d3"] == ["no_text"]
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["model"] == gguf_model.name and stats["requests"] == 3 and stats["documents"] == 4
    assert sum(stats["statuses"].values()) == 4
