"""synth.math_cleanup: the prompt, the reading of answers, chunking and merging, and the stage against the
fake OpenAI-compatible server (real HTTP on 127.0.0.1), through the real runner on a LocalCluster, then
once with the real llama.cpp backend and the sample's GGUF model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from curator.llm import LLMClient, LLMResult
from curator.llm.engines import release_engines
from curator.pipeline import load_pipeline
from curator.plan import LLM_STATS
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from stages.math_cleanup import MathCleanup
from stages.math_cleanup_prompt import (
    CLEANUP_INSTRUCTIONS, COMPLETION_CUE, NO_USEFUL_CONTENT, PLACEHOLDER, cleanup_prompt, cleanup_prompt_text,
    is_no_useful_content, normalise_math_delimiters, read_answer, strip_outer_fence,
)
from tests.conftest import read_dataset
from tests.helpers.fake_llm_server import FakeLLMServer

# ---------------------------------------------------------------- the prompt


def test_prompt_content_and_forms() -> None:
    text = CLEANUP_INSTRUCTIONS
    assert text.count(PLACEHOLDER) == 1 and "[fault:" not in text
    assert "single dollar signs, $...$" in text and "double dollar signs, $$...$$" in text
    assert "Never use \\( \\) or \\[ \\]" in text
    flat = " ".join(text.split())
    assert f"answer with exactly these words and nothing else: {NO_USEFUL_CONTENT}" in flat
    for rule in ("navigation menus", "comment sections", "\"share this\"", "fenced code blocks",
                 "Do not answer questions, solve exercises", "Add nothing that is not on the page",
                 "Correct typos"):
        assert rule in flat, rule
    page = "Pythagoras: $a^2+b^2=c^2$."
    chat = cleanup_prompt(page, "chat")
    assert chat.is_chat and chat.messages is not None and len(chat.messages) == 1
    assert chat.messages[0].role == "user" and chat.messages[0].content == cleanup_prompt_text(page)
    assert f"--- PAGE START ---\n{page}\n--- PAGE END ---" in cleanup_prompt_text(page)
    completion = cleanup_prompt(page, "completions")
    assert completion.text == cleanup_prompt_text(page) + COMPLETION_CUE


# ---------------------------------------------------------------- reading answers


@pytest.mark.parametrize("answer", [
    "NO USEFUL CONTENT", "  no useful content.\n", "**NO USEFUL CONTENT**", "*No Useful Content.*",
    "`NO USEFUL CONTENT`", "\"NO USEFUL CONTENT\"", "# NO USEFUL CONTENT", "NO  USEFUL\nCONTENT",
    "Here is the cleaned text:\nNO USEFUL CONTENT", "```\nNO USEFUL CONTENT\n```",
])
def test_no_useful_content_answers(answer: str) -> None:
    assert read_answer(answer).kind == "no_useful_content"


def test_no_useful_content_needs_the_whole_answer() -> None:
    assert not is_no_useful_content("NO USEFUL CONTENT here, but a theorem below")
    kept = read_answer("Theorem 1. $x>0$.\nNO USEFUL CONTENT\nProof: trivial.")
    assert (kept.kind, kept.text) == ("text", "Theorem 1. $x>0$.\nProof: trivial.")  # the marker never leaks


@pytest.mark.parametrize(("answer", "text"), [
    ("Euler: \\(e^{i\\pi}+1=0\\).", "Euler: $e^{i\\pi}+1=0$."),
    ("Display:\n\\[\n  \\int_0^1 x\\,dx = \\frac12\n\\]\nend", "Display:\n$$\\int_0^1 x\\,dx = \\frac12$$\nend"),
    ("\\( a \\) and \\( b \\)", "$a$ and $b$"),
    ("Rows: $$\\begin{array}{c} a \\\\[2pt] b \\end{array}$$",  # a LaTeX line break with spacing stays
     "Rows: $$\\begin{array}{c} a \\\\[2pt] b \\end{array}$$"),
    ("Code `re.compile(r\"\\(x\\)\")` and \\(y\\)", "Code `re.compile(r\"\\(x\\)\")` and $y$"),
    ("Text \\(z\\)\n```python\nprint(\"\\(raw\\)\")\n```\nafter \\[w\\]",
     "Text $z$\n```python\nprint(\"\\(raw\\)\")\n```\nafter $$w$$"),
    ("Here is the cleaned text:\n\nTitle\n\nBody.", "Title\n\nBody."),
    ("Sure! Below is the cleaned-up version of the page:\nTitle", "Title"),
    ("Here is the theorem:\n$a=b$", "Here is the theorem:\n$a=b$"),  # the page's own words stay
    ("```markdown\n# Title\n\n$x$\n```", "# Title\n\n$x$"),
    ("```\nTitle\n```python\nx = 1\n```\nend\n```", "Title\n```python\nx = 1\n```\nend"),
    ("```python\nx = 1\n```", "```python\nx = 1\n```"),  # code stays fenced
    ("```\nx = 1\n```\nthen\n```\ny\n```", "```\nx = 1\n```\nthen\n```\ny\n```"),  # two blocks, not one wrap
])
def test_read_answer(answer: str, text: str) -> None:
    read = read_answer(answer)
    assert (read.kind, read.text) == ("text", text)


def test_empty_answers_and_helpers() -> None:
    assert read_answer("").kind == "empty" and read_answer(None).kind == "empty"
    assert read_answer("Here is the cleaned text:\n\n").kind == "empty"
    assert strip_outer_fence("```\nunclosed") == "```\nunclosed"
    assert normalise_math_delimiters("no math") == "no math"


# ---------------------------------------------------------------- a tokenizer and the fake server


def _page_of(prompt: str) -> str:
    return prompt.split("--- PAGE START ---\n", 1)[1].split("\n--- PAGE END ---", 1)[0]


WORDS = ("the function derivative integral limit series theorem proof lemma matrix vector space field "
         "prime number equation solve value sum product").split()


def _line(i: int) -> str:
    return f"L{i:03d} " + " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(8)) + "."


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [CLEANUP_INSTRUCTIONS + COMPLETION_CUE, *(_line(i) for i in range(200))]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def fake_answer(prompt: str) -> str | tuple[str, str]:
    """Answers shaped by markers in the chunk: a clean echo (BOILER lines removed) by default."""
    page = _page_of(prompt)
    if "NUC" in page:
        return "**No useful content.**"
    if "EMPTYANSWER" in page:
        return ""
    if "RUNAWAY" in page:
        return "This answer goes on and on and", "length"
    kept = [line for line in page.splitlines() if "BOILER" not in line]
    return "Here is the cleaned text:\n\n" + "\n".join(kept)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(answer=fake_answer) as fake:
        yield fake


def _stage(server: FakeLLMServer, tokenizer_file: Path, **extra: object) -> MathCleanup:
    llm = {"model": "fake-model", "base_url": server.url, "max_retries": 0, "timeout_s": 10, "concurrency": 4,
           **extra.pop("llm", {})}  # type: ignore[dict-item]
    return MathCleanup(llm=llm, tokenizer_path=str(tokenizer_file), **extra)


# ---------------------------------------------------------------- the stage-level API


def test_long_page_is_chunked_to_fit_and_merged_in_order(server: FakeLLMServer, tokenizer_file: Path) -> None:
    stage = _stage(server, tokenizer_file, chunk_tokens=500)
    counter = stage.token_counter()
    overhead = counter.count(stage.render(""))
    assert 300 < overhead < 450  # the instructions, counted: room for about 100 tokens of page per chunk
    lines = [_line(i) for i in range(60)]
    page = "\n".join(lines)
    batch = pa.table({"id": ["long", "short"], "text": [page, "Short page: \\(x^2\\)."],
                      "url": ["u0", "u1"]})
    before = len(server.payloads)
    out = stage.clean(batch, LLMClient(stage.llm.build_backend()), counter)
    payloads = server.payloads[before:]
    chunks = [_page_of(p["messages"][-1]["content"]) for p in payloads if "L0" in p["messages"][-1]["content"]]
    assert len(chunks) >= 4
    for payload in payloads:  # every prompt fits chunk_tokens; the answer cap follows the chunk's size
        sent = payload["messages"][-1]["content"]
        assert counter.count(sent) <= 500
        assert payload["max_tokens"] == -(-5 * counter.count(_page_of(sent)) // 4) + 64
        assert payload["temperature"] == 0.0
    assert "\n".join(chunks).splitlines() == lines  # split on line boundaries, nothing lost or doubled
    rows = out.to_pylist()
    assert [r["drop_reason"] for r in rows] == [None, None]
    assert rows[0]["text"] == "\n\n".join(chunks)  # merged back in order, a blank line between chunks
    assert [line for line in rows[0]["text"].splitlines() if line] == lines
    assert rows[0]["lynx_text"] == page and rows[0]["cleanup_chunks"] == len(chunks)
    assert rows[1]["text"] == "Short page: $x^2$." and rows[1]["cleanup_chunks"] == 1
    assert out.column_names == ["id", "text", "url", "lynx_text", "cleanup_chunks", "cleanup_model",
                                "cleanup_prompt_tokens", "cleanup_completion_tokens", "drop_reason"]
    assert rows[0]["cleanup_model"] == "fake-model" and rows[0]["cleanup_prompt_tokens"] > 0


def test_paren_math_normalised_and_boilerplate_removed(server: FakeLLMServer, tokenizer_file: Path) -> None:
    stage = _stage(server, tokenizer_file)
    page = ("Quadratics\nHome | About BOILER\n"
            "The roots are \\(x = \\frac{-b \\pm \\sqrt{D}}{2a}\\), with\n\\[D = b^2-4ac\\]")
    out = stage.clean(pa.table({"id": ["q"], "text": [page]}), LLMClient(stage.llm.build_backend()))
    row = out.to_pylist()[0]
    assert row["drop_reason"] is None
    assert row["text"] == "Quadratics\nThe roots are $x = \\frac{-b \\pm \\sqrt{D}}{2a}$, with\n$$D = b^2-4ac$$"


def test_no_useful_content_pages_and_chunks(server: FakeLLMServer, tokenizer_file: Path) -> None:
    stage = _stage(server, tokenizer_file, chunk_tokens=500)
    counter = stage.token_counter()
    mixed = "\n".join([f"NUC {_line(0)}", *(_line(i) for i in range(1, 40))])  # only the first chunk says NUC
    batch = pa.table({"id": ["all", "mixed", "null", "blank", "empty", "capped"],
                      "text": ["Menu NUC\nLogin", mixed, None, "  \n ", "EMPTYANSWER", "RUNAWAY text"]})
    planned = stage.plan(batch, counter)
    assert [len(c) for c in planned.chunks][2:4] == [0, 0] and len(planned.chunks[1]) >= 2
    out = stage.clean(batch, LLMClient(stage.llm.build_backend()), counter).to_pylist()
    by_id = {r["id"]: r for r in out}
    assert {k: r["drop_reason"] for k, r in by_id.items()} == {
        "all": "no_useful_content", "mixed": None, "null": "no_text", "blank": "no_text", "empty": "empty_answer",
        "capped": "length_cap"}
    others = [c.text for c in planned.chunks[1][1:]]
    assert by_id["mixed"]["text"] == "\n\n".join(others) and "NUC" not in by_id["mixed"]["text"]
    assert all(by_id[k]["text"] is None for k in ("all", "null", "blank", "empty", "capped"))
    assert by_id["all"]["lynx_text"] == "Menu NUC\nLogin"  # the dropped page is kept for keep_rejected
    assert by_id["null"]["cleanup_chunks"] == 0 and by_id["null"]["cleanup_model"] is None


def test_config_validation(tokenizer_file: Path, tmp_path: Path, gguf_model: Path) -> None:
    llm = {"model": "m", "base_url": "http://127.0.0.1:1"}
    with pytest.raises(ValueError, match="tokenizer_path is required"):
        MathCleanup(llm=llm)
    with pytest.raises(ValueError, match="tokenizer not found"):
        MathCleanup(llm=llm, tokenizer_path=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="must be different columns"):
        MathCleanup(llm=llm, tokenizer_path=str(tokenizer_file), output="clean", input_copy="clean")
    with pytest.raises(ValueError, match="instructions alone"):
        MathCleanup(llm=llm, tokenizer_path=str(tokenizer_file), chunk_tokens=100).token_counter()
    stage = MathCleanup(llm=llm, tokenizer_path=str(tokenizer_file))
    assert stage.output_columns(["id", "text", "url"]) == [
        "id", "text", "url", "lynx_text", "cleanup_chunks", "cleanup_model", "cleanup_prompt_tokens",
        "cleanup_completion_tokens"]
    assert stage.required_columns() == ("id", "text")
    assert stage.answer_cap(100) == 189 and stage.chunk_tokens == 2048 and stage.temperature == 0.0
    # Another output column: the input stays where it is, with no copy when input_copy names it.
    aside = MathCleanup(llm=llm, tokenizer_path=str(tokenizer_file), column="lynx", output="text", input_copy="lynx")
    assert aside.output_columns(["id", "lynx"]) == ["id", "lynx", "text", "cleanup_chunks", "cleanup_model",
                                                    "cleanup_prompt_tokens", "cleanup_completion_tokens"]
    assert aside.required_columns() == ("id", "lynx")
    table = aside.with_outcomes(pa.table({"id": ["a", "b"], "lynx": ["raw a", "raw b"]}),
                                [aside.merge([LLMResult(text="clean a", finish_reason="stop")]), aside.merge([])])
    assert table.to_pylist() == [
        {"id": "a", "lynx": "raw a", "text": "clean a", "cleanup_chunks": 1, "cleanup_model": "m",
         "cleanup_prompt_tokens": 0, "cleanup_completion_tokens": 0, "drop_reason": None},
        {"id": "b", "lynx": "raw b", "text": None, "cleanup_chunks": 0, "cleanup_model": None,
         "cleanup_prompt_tokens": 0, "cleanup_completion_tokens": 0, "drop_reason": "no_text"}]
    # A rerun over an earlier output replaces its columns instead of doubling them.
    again = stage.output_schema(pa.schema([("id", pa.string()), ("text", pa.string()), ("lynx_text", pa.string()),
                                           ("cleanup_chunks", pa.int32())]))
    assert again.names == ["id", "text", "lynx_text", "cleanup_chunks", "cleanup_model", "cleanup_prompt_tokens",
                           "cleanup_completion_tokens"]
    # llama_cpp: the GGUF file is the default tokenizer, and the context window is checked up front.
    gguf = {"backend": "llama_cpp", "model_path": str(gguf_model)}
    small = MathCleanup(llm={**gguf, "n_ctx": 4096})
    assert small.tokenizer_path == str(gguf_model)
    with pytest.raises(ValueError, match=r"over llm.n_ctx 4096"):
        small.token_counter()
    MathCleanup(llm={**gguf, "n_ctx": 4096}, chunk_tokens=1800).token_counter()
    MathCleanup(llm={**gguf, "n_ctx": 1024}, chunk_tokens=600, max_tokens=64).token_counter()


def test_completions_endpoint_and_merge_of_failures(server: FakeLLMServer, tokenizer_file: Path) -> None:
    stage = _stage(server, tokenizer_file, llm={"endpoint": "completions"}, stop=["--- PAGE START ---"],
                   max_tokens=300)
    batch = pa.table({"id": ["a"], "text": ["Limits: \\(\\lim_{x\\to0} \\frac{\\sin x}{x} = 1\\)"]})
    before = len(server.payloads)
    out = stage.clean(batch, LLMClient(stage.llm.build_backend())).to_pylist()
    payload = server.payloads[before]
    assert payload["prompt"].endswith(COMPLETION_CUE) and payload["stop"] == ["--- PAGE START ---"]
    assert payload["max_tokens"] == 300
    assert out[0]["text"] == "Limits: $\\lim_{x\\to0} \\frac{\\sin x}{x} = 1$"
    ok = LLMResult(text="Kept.", finish_reason="stop", tokens_in=5, tokens_out=1)
    nuc = LLMResult(text=NO_USEFUL_CONTENT, finish_reason="stop")
    failed = LLMResult(text=None, error_kind="timeout")
    capped = LLMResult(text="Cut", finish_reason="length")
    assert stage.merge([ok, failed, capped]).drop_reason == "llm_failed:timeout"  # a failure outranks a cap
    assert stage.merge([capped, ok]).drop_reason == "length_cap"
    assert stage.merge([nuc, nuc]).drop_reason == "no_useful_content"
    assert stage.merge([nuc, LLMResult(text=" ", finish_reason="stop")]).drop_reason == "empty_answer"
    merged = stage.merge([nuc, ok, ok])
    assert (merged.text, merged.drop_reason, merged.chunks, merged.prompt_tokens) == ("Kept.\n\nKept.", None, 3, 10)
    assert merged.chunk_outcomes == ("no_useful_content", "text", "text")
    assert stage.merge([]).drop_reason == "no_text"


# ---------------------------------------------------------------- through the runner


SHARDS: list[list[dict]] = [
    [
        {"id": "good", "text": "Derivatives\nNav BOILER\nThe derivative of \\(x^n\\) is \\(n x^{n-1}\\).", "url": "u0"},
        {"id": "nuc", "text": "NUC Cookie notice\nLogin", "url": "u1"},
        {"id": "fail", "text": "Series [fault:500x1]\nA geometric series sums to $\\frac{a}{1-r}$.", "url": "u2"},
        {"id": "none", "text": None, "url": "u3"},
    ],
    [
        {"id": "long", "text": "\n".join([f"NUC {_line(0)}", *(_line(i) for i in range(1, 30))]), "url": "u4"},
        {"id": "capped", "text": "RUNAWAY Matrices $A^T$", "url": "u5"},
    ],
]


def _write_input(directory: Path, shards: list[list[dict]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("url", pa.string())])
    for i, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / f"part-{i:05d}.parquet")


def _pipeline(tmp_path: Path, server: FakeLLMServer, tokenizer_file: Path, **extra: object) -> Path:
    params = {
        "llm": {"model": "fake-model", "base_url": server.url, "max_retries": 0, "timeout_s": 10, "concurrency": 4},
        "tokenizer_path": str(tokenizer_file), "chunk_tokens": 500, "max_failed_fraction": 1.0, **extra,
    }
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [stages.math_cleanup]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - {{id: cleanup, uses: synth.math_cleanup, from: docs, keep_rejected: true, with: {json.dumps(params)}}}
""")
    return path


def _run(path: Path, client):
    pipeline = load_pipeline(str(path), [])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()


def test_cleanup_pipeline(tmp_path: Path, dask_client, server: FakeLLMServer, tokenizer_file: Path) -> None:
    _write_input(tmp_path / "in", SHARDS)
    before = server.total_requests
    result = _run(_pipeline(tmp_path, server, tokenizer_file), dask_client)
    assert result.ok, result.failures
    sent = server.total_requests - before
    stage_dir = tmp_path / "run" / "cleanup"
    kept = {r["id"]: r for r in read_dataset(stage_dir).to_pylist()}
    assert set(kept) == {"good", "long"}
    assert kept["good"]["text"] == "Derivatives\nThe derivative of $x^n$ is $n x^{n-1}$."
    assert kept["good"]["lynx_text"] == SHARDS[0][0]["text"] and kept["good"]["url"] == "u0"
    assert kept["long"]["cleanup_chunks"] >= 2 and "NUC" not in kept["long"]["text"]
    assert kept["long"]["text"].splitlines()[-1] == _line(29)
    rejected = pq.read_table(stage_dir / "_rejected").to_pylist()
    assert {r["id"]: r["drop_reason"] for r in rejected} == {
        "nuc": "no_useful_content", "fail": "llm_failed:http_5xx", "none": "no_text", "capped": "length_cap"}
    assert all(r["text"] is None for r in rejected)
    assert {r["id"]: r["lynx_text"] for r in rejected}["capped"] == "RUNAWAY Matrices $A^T$"

    stats = json.loads((stage_dir / LLM_STATS).read_text())
    long_chunks = kept["long"]["cleanup_chunks"]
    assert stats["model"] == "fake-model" and stats["shards"] == 2 and stats["requests"] == sent
    assert stats["documents"] == 6 and stats["documents_kept"] == 2 and stats["documents_no_useful_content"] == 1
    assert stats["chunks"] == 4 + long_chunks == sent and stats["chunks_no_useful_content"] == 2
    assert stats["chunk_outcomes"] == {"text": long_chunks, "no_useful_content": 2, "llm_failed:http_5xx": 1,
                                       "length_cap": 1}
    assert stats["drops"] == {"no_useful_content": 1, "llm_failed:http_5xx": 1, "no_text": 1, "length_cap": 1}
    assert stats["failures"] == {"http_5xx": 1}

    # A rerun with another setting redoes every shard but sends only the failed request (now answered);
    # a third sends nothing at all.
    before = server.total_requests
    result = _run(_pipeline(tmp_path, server, tokenizer_file, max_failed_fraction=0.9), dask_client)
    assert result.ok, result.failures
    assert server.total_requests - before == 1
    kept = {r["id"]: r for r in read_dataset(stage_dir).to_pylist()}
    assert kept["fail"]["text"] == "Series [fault:500x1]\nA geometric series sums to $\\frac{a}{1-r}$."
    second = read_dataset(stage_dir).sort_by("id")
    before = server.total_requests
    result = _run(_pipeline(tmp_path, server, tokenizer_file, max_failed_fraction=0.8), dask_client)
    assert result.ok, result.failures
    assert server.total_requests == before
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["requests"] == 0 and stats["cache_hits"] == stats["chunks"] and stats["documents_kept"] == 3
    assert read_dataset(stage_dir).sort_by("id").equals(second)


def test_too_many_failures_fail_the_shard(tmp_path: Path, dask_client, server: FakeLLMServer,
                                          tokenizer_file: Path) -> None:
    _write_input(tmp_path / "in", [[{"id": "ok", "text": "Sets and maps.", "url": "a"},
                                    {"id": "bad", "text": "[fault:always500] Rings.", "url": "b"}]])
    result = _run(_pipeline(tmp_path, server, tokenizer_file, max_failed_fraction=0.0), dask_client)
    assert not result.ok and len(result.failures) == 1
    assert "part-00000" in result.failures[0] and "1 of 2 LLM requests failed (http_5xx 1)" in result.failures[0]
    stats = json.loads((tmp_path / "run" / "cleanup" / LLM_STATS).read_text())
    assert stats["drops"] == {"llm_failed:http_5xx": 1} and stats["documents_kept"] == 1  # counts kept


# ---------------------------------------------------------------- the real llama.cpp backend


def test_real_llama_cpp_model_gives_every_page_an_outcome(tmp_path: Path, dask_client, gguf_model: Path) -> None:
    """A 270M base model writes junk: every page must end kept or dropped with a reason, nothing lost."""
    pages = ["Pythagorean theorem\nIn a right triangle $a^2 + b^2 = c^2$, where $c$ is the hypotenuse.",
             "Home | Blog | Contact\nShare this: Facebook Twitter",
             "", "Sum of a geometric series: $$\\sum_{k=0}^{n} r^k = \\frac{1-r^{n+1}}{1-r}$$"]
    _write_input(tmp_path / "in", [[{"id": f"p{i}", "text": t, "url": f"u{i}"} for i, t in enumerate(pages)]])
    params = {"llm": {"backend": "llama_cpp", "model_path": str(gguf_model), "endpoint": "completions",
                      "n_ctx": 1024, "concurrency": 2}, "chunk_tokens": 600, "max_tokens": 16}
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [stages.math_cleanup]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - {{id: cleanup, uses: synth.math_cleanup, from: docs, keep_rejected: true, with: {json.dumps(params)}}}
""")
    try:
        result = _run(path, dask_client)
    finally:
        release_engines()
    assert result.ok, result.failures
    stage_dir = tmp_path / "run" / "cleanup"
    kept = read_dataset(stage_dir).to_pylist()
    rejected = pq.read_table(stage_dir / "_rejected").to_pylist()
    assert sorted(r["id"] for r in kept + rejected) == [f"p{i}" for i in range(len(pages))]
    assert all(r["text"] for r in kept) and all(r["drop_reason"] for r in rejected)
    assert {r["id"]: r["drop_reason"] for r in rejected}.get("p2") == "no_text"
    assert all(r["drop_reason"] in ("no_text", "length_cap", "no_useful_content", "empty_answer") for r in rejected)
    stats = json.loads((stage_dir / LLM_STATS).read_text())
    assert stats["model"] == gguf_model.name and stats["requests"] == 3 and stats["documents"] == 4
    assert stats["documents_kept"] + sum(stats["drops"].values()) == 4
