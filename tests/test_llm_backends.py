"""The LLM backends beyond the fault-injecting server: llama.cpp in process and the real llama.cpp
OpenAI-compatible server (both with the sample's GGUF model), vLLM's code path through a stand-in
module (vLLM itself needs CUDA, which CI machines do not have), and the backend settings."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curator.llm import LLMClient, OpenAICompatibleBackend, Prompt, ResponseCache, SamplingParams
from curator.llm.config import LLMConfig, TokenCounter
from curator.llm.engines import release_engines
from curator.llm.llama_cpp_backend import LlamaCppBackend, load_llama_engine
from curator.llm.vllm_backend import VLLMBackend
from curator.pipeline import PipelineError, load_pipeline
from stages.rephrase import Rephrase
from tests.helpers.counting_proxy import CountingProxy
from tests.helpers.llama_server import LlamaServer

GREEDY = SamplingParams(temperature=0.0, max_tokens=6)
PROMPTS = [Prompt.completion(f"Question: what comes after {i}?\nAnswer: the number") for i in range(5)]


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    release_engines()


# ---------------------------------------------------------------------- llama.cpp in process


def test_llama_cpp_answers_and_counts_tokens(gguf_model: Path) -> None:
    backend = LlamaCppBackend(gguf_model, n_ctx=512)
    prompt = PROMPTS[0]
    first = backend.generate_blocking(prompt, GREEDY)
    assert first.ok and first.text and first.attempts == 1 and first.latency_s > 0
    assert first.finish_reason in ("length", "stop") and 0 < first.tokens_out <= GREEDY.max_tokens
    assert first.tokens_in - TokenCounter(gguf_model).count(prompt.text or "") in (0, 1)  # 1: the BOS token
    assert backend.model == "gemma-3-270m-q4_k_m.gguf"
    # Greedy decoding is deterministic; a stop sequence ends the answer early.
    assert backend.generate_blocking(prompt, GREEDY).text == first.text
    stopped = backend.generate_blocking(Prompt.completion("Count: 1, 2, 3,"),
                                        SamplingParams(temperature=0.0, max_tokens=30, stop=[","]))
    assert stopped.ok and "," not in (stopped.text or "") and stopped.finish_reason == "stop"


def test_llama_cpp_engine_is_shared_per_process_and_settings(gguf_model: Path) -> None:
    a, b = LlamaCppBackend(gguf_model, n_ctx=512), LlamaCppBackend(gguf_model, n_ctx=512)
    assert a.engine() is b.engine()
    assert LlamaCppBackend(gguf_model, n_ctx=256).engine() is not a.engine()


def test_llama_cpp_logs_go_to_python_logging_not_stderr(gguf_model: Path, capfd: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # A Dask worker shares stderr with the progress lines of `curator run`; llama.cpp must not write there.
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="curator.llm.llama_cpp"):
        LlamaCppBackend(gguf_model, n_ctx=512).engine()
        TokenCounter(gguf_model).count("a vocabulary-only load logs too")
    assert capfd.readouterr().err == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "curator.llm.llama_cpp"]
    assert any(m.startswith("llama_model_loader: loaded meta data") for m in messages)
    assert all("\n" not in m and m.strip() for m in messages)  # whole lines, one record each
    assert any("SWA cache" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_loading_a_model_does_not_swallow_other_threads_stderr(gguf_model: Path) -> None:
    # llama-cpp-python points the process's fd 2 at /dev/null while it loads; `curator run` lost a
    # progress line to that when a global stage loaded a vocabulary on the client. Nothing may be lost.
    TokenCounter(gguf_model)  # installs the log route
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            load_llama_engine(str(gguf_model), 256, 1, None)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for i in range(100):
            os.write(2, f"line {i}\n".encode())
            time.sleep(0.005)
    finally:
        stop.set()
        loader.join()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        lines = [line for line in pipe.read().decode().splitlines() if line.startswith("line ")]
    assert len(lines) == 100


def test_llama_cpp_failures_are_results_not_exceptions(gguf_model: Path) -> None:
    backend = LlamaCppBackend(gguf_model, n_ctx=256)
    result = backend.generate_blocking(Prompt.completion("word " * 300), GREEDY)
    assert result.error_kind == "prompt_too_long" and result.text is None
    assert "the context window (n_ctx) 256" in (result.error or "")


def test_llama_cpp_chat_needs_a_template(gguf_model: Path) -> None:
    chat = Prompt.chat([{"role": "user", "content": "Say hello."}])
    with pytest.raises(ValueError, match="no chat template.*chat_format"):
        LlamaCppBackend(gguf_model, n_ctx=512).generate_blocking(chat, GREEDY)
    answer = LlamaCppBackend(gguf_model, n_ctx=512, chat_format="gemma").generate_blocking(chat, GREEDY)
    assert answer.ok and answer.tokens_out > 0


def test_llama_cpp_through_the_client_and_its_cache(gguf_model: Path, tmp_path: Path) -> None:
    items = [(p, GREEDY) for p in PROMPTS] + [(PROMPTS[0], GREEDY)]  # one duplicate
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = LLMClient(LlamaCppBackend(gguf_model, n_ctx=512), cache, concurrency=4)
    first = client.generate(items)
    assert all(r.ok for r in first) and client.stats.requests == 5 and client.stats.deduplicated == 1
    rerun = LLMClient(LlamaCppBackend(gguf_model, n_ctx=512), cache, concurrency=4)
    second = rerun.generate(items)
    assert rerun.stats.requests == 0 and rerun.stats.cache_hits == 6
    assert [r.text for r in second] == [r.text for r in first]
    cache.close()


# ---------------------------------------------------------------------- the real llama.cpp server


@pytest.fixture(scope="module")
def llama_server(gguf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the GGUF model on a free port (gemma chat format)."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer(gguf_model, log, ["--model_alias", "gemma-270m", "--n_ctx", "1024", "--chat_format", "gemma"],
                     ready_timeout_s=120) as server:
        yield server.url


def test_real_server_answers_and_a_rerun_sends_nothing(llama_server: str, gguf_model: Path, tmp_path: Path) -> None:
    items = [(p, GREEDY) for p in PROMPTS]
    with CountingProxy(llama_server) as proxy:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        first = LLMClient(OpenAICompatibleBackend(proxy.url, "gemma-270m", endpoint="completions", timeout_s=120),
                          cache, concurrency=3)
        answers = first.generate(items)
        assert all(r.ok and r.text and r.tokens_in > 0 and 0 < r.tokens_out <= 6 for r in answers), answers
        assert proxy.posts == len(PROMPTS) == first.stats.requests
        rerun = LLMClient(OpenAICompatibleBackend(proxy.url, "gemma-270m", endpoint="completions", timeout_s=120),
                          cache, concurrency=3)
        again = rerun.generate(items)
        assert proxy.posts == len(PROMPTS)  # counted at the server's door: nothing more was sent
        assert rerun.stats.requests == 0 and [r.text for r in again] == [r.text for r in answers]
        cache.close()
    # The same model in process answers greedy prompts with the same tokens as the server.
    local = LlamaCppBackend(gguf_model, n_ctx=1024)
    assert [local.generate_blocking(p, GREEDY).text for p in PROMPTS] == [r.text for r in answers]


def test_real_server_chat_endpoint(llama_server: str) -> None:
    backend = OpenAICompatibleBackend(llama_server, "gemma-270m", endpoint="chat", timeout_s=120)
    [answer] = LLMClient(backend).generate([(Prompt.chat([{"role": "user", "content": "Name a colour."}]), GREEDY)])
    assert answer.ok and answer.text is not None and answer.tokens_in > 5 and answer.tokens_out > 0


def test_rephrase_stage_against_the_real_server(llama_server: str, gguf_model: Path, tmp_path: Path) -> None:
    stage = Rephrase(
        llm={"backend": "openai", "base_url": llama_server, "model": "gemma-270m", "endpoint": "completions",
             "timeout_s": 120},
        tokenizer_path=str(gguf_model), tasks=["wikipedia", "knowledge_list"],
        unlabeled_tasks=["wikipedia", "knowledge_list"], prefill_prefix=True, budgets={"wikipedia": 200},
        max_tokens={"wikipedia": 24, "knowledge_list": 24}, min_output_words=0)
    text = "\n".join(f"Line {i}: the harbour town of Elmsport exported {i * 10} tons of salt." for i in range(12))
    batch = pa.table({"id": ["doc1"], "text": [text]})
    counter = stage.token_counter()
    requests, _ = stage.plan(batch, counter)
    assert len([r for r in requests if r.task == "wikipedia"]) > 1  # 200 tokens: several segments
    assert all(counter.count(r.prompt) <= 200 for r in requests if r.task == "wikipedia")
    assert [r.task for r in requests] == sorted((r.task for r in requests), key=["wikipedia", "knowledge_list"].index)
    rows = stage.rephrase(batch, LLMClient(stage.llm.build_backend(), concurrency=2), counter).to_pylist()
    assert len(rows) == len(requests)
    for row in rows:
        assert row["source_id"] == "doc1" and row["model"] == "gemma-270m" and row["prompt_tokens"] > 0
        assert row["drop_reason"] in (None, "length_cap")
        if row["drop_reason"] is None:
            assert not row["text"].startswith("Here is")  # the prefilled prefix is checked and stripped


# ---------------------------------------------------------------------- vLLM through a stand-in


class _FakeCompletion:
    def __init__(self, text: str, tokens: int, finish_reason: str) -> None:
        self.text, self.token_ids, self.finish_reason = text, list(range(tokens)), finish_reason


class _FakeRequestOutput:
    def __init__(self, prompt: str, params: Any) -> None:
        words = prompt.split()
        text = " ".join(f"echo-{w}" for w in words)[: params.max_tokens * 8]
        self.prompt_token_ids = list(range(len(words)))
        self.outputs = [_FakeCompletion(text, min(len(words), params.max_tokens), "stop")]


def _fake_vllm(calls: list[tuple[str, int]], loads: list[dict[str, Any]]) -> types.ModuleType:
    """A module with vLLM's offline API shape: LLM(model, **engine_args).generate/.chat, SamplingParams."""
    module = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, temperature: float, top_p: float, max_tokens: int, stop: list[str] | None,
                     seed: int | None) -> None:
            self.temperature, self.top_p, self.max_tokens, self.stop, self.seed = (
                temperature, top_p, max_tokens, stop, seed)

    class LLM:
        def __init__(self, model: str, **engine_args: Any) -> None:
            loads.append({"model": model, **engine_args})
            self.max_model_len = engine_args.get("max_model_len", 32)

        def _check(self, prompts: list[str], params: list[Any]) -> None:
            assert len(prompts) == len(params) and all(isinstance(p, SamplingParams) for p in params)
            for prompt in prompts:
                if len(prompt.split()) > self.max_model_len:
                    raise ValueError(f"The decoder prompt (length {len(prompt.split())}) is longer than the "
                                     f"maximum model length of {self.max_model_len}.")

        def generate(self, prompts: list[str], sampling_params: list[Any], use_tqdm: bool) -> list[Any]:
            calls.append(("generate", len(prompts)))
            self._check(prompts, sampling_params)
            return [_FakeRequestOutput(p, s) for p, s in zip(prompts, sampling_params)]

        def chat(self, messages: list[list[dict[str, str]]], sampling_params: list[Any], use_tqdm: bool) -> list[Any]:
            calls.append(("chat", len(messages)))
            prompts = [" ".join(f"{m['role']}: {m['content']}" for m in conv) for conv in messages]
            self._check(prompts, sampling_params)
            return [_FakeRequestOutput(p, s) for p, s in zip(prompts, sampling_params)]

    module.LLM = LLM  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    return module


def test_vllm_backend_batches_bisects_failures_and_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    loads: list[dict[str, Any]] = []
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls, loads))
    params = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=50, stop=["\n\n"], seed=7)
    prompts = [Prompt.completion(f"short prompt number {i}") for i in range(9)]
    prompts[4] = Prompt.completion("long " * 40)  # over the stand-in's max_model_len of 32 words
    chats = [Prompt.chat([{"role": "user", "content": f"chat {i}"}]) for i in range(2)]
    items = [(p, params) for p in prompts + chats]
    config = LLMConfig(backend="vllm", model="org/model", engine_args={"tensor_parallel_size": 1}, batch_size=4)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = LLMClient(config.build_backend(), cache)
    results = client.generate(items)

    assert loads == [{"model": "org/model", "tensor_parallel_size": 1}]
    assert [r.error_kind for r in results] == [None] * 4 + ["prompt_too_long"] + [None] * 6
    assert results[0].text == "echo-short echo-prompt echo-number echo-0" and results[0].tokens_in == 4
    assert results[9].text and results[9].text.startswith("echo-user:")
    # Batches of 4 (the last one mixes 1 completion and 2 chats); the failing batch is bisected down
    # to the long prompt: [4..7] -> [4,5] [6,7] -> [4] [5].
    assert calls == [("generate", 4), ("generate", 4), ("generate", 2), ("generate", 1), ("generate", 1),
                     ("generate", 2), ("generate", 1), ("chat", 2)]
    assert client.stats.requests == 11 and client.stats.failures == {"prompt_too_long": 1}

    calls.clear()
    rerun = LLMClient(VLLMBackend("org/model", {"tensor_parallel_size": 1}, batch_size=4), cache)
    again = rerun.generate(items)
    assert calls == [("generate", 1)]  # only the failed request is tried again; the engine is not reloaded
    assert len(loads) == 1 and rerun.stats.cache_hits == 10
    assert [r.text for r in again] == [r.text for r in results]
    cache.close()


def test_vllm_sampling_params_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    module = _fake_vllm([], [])
    original = module.LLM.generate

    def spy(self: Any, prompts: list[str], sampling_params: list[Any], use_tqdm: bool) -> list[Any]:
        seen.extend(sampling_params)
        return original(self, prompts, sampling_params, use_tqdm)

    module.LLM.generate = spy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    params = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=12, stop=["END"], seed=3)
    [result] = VLLMBackend("m").generate_batch([(Prompt.completion("a b c"), params)])
    assert result.ok and result.finish_reason == "stop"
    assert [(p.temperature, p.top_p, p.max_tokens, p.stop, p.seed) for p in seen] == [(0.5, 0.9, 12, ["END"], 3)]


# ---------------------------------------------------------------------- settings


def test_llm_config_checks_backend_fields(gguf_model: Path) -> None:
    with pytest.raises(ValueError, match="not used by backend openai: n_ctx \\(a setting of backend llama_cpp\\)"):
        LLMConfig(model="m", n_ctx=2048)
    with pytest.raises(ValueError, match="not used by backend llama_cpp: base_url \\(a setting of backend openai\\)"):
        LLMConfig(backend="llama_cpp", model_path=str(gguf_model), base_url="http://x")
    with pytest.raises(ValueError, match="needs model_path"):
        LLMConfig(backend="llama_cpp")
    with pytest.raises(ValueError, match="GGUF model not found"):
        LLMConfig(backend="llama_cpp", model_path="/nonexistent/model.gguf")
    with pytest.raises(ValueError, match="backend vllm needs a model name"):
        LLMConfig(backend="vllm")
    config = LLMConfig(backend="llama_cpp", model_path=str(gguf_model))
    assert config.model_name == "gemma-3-270m-q4_k_m.gguf" and LLMConfig(**config.model_dump()) == config
    assert isinstance(config.build_backend(), LlamaCppBackend)


def test_rephrase_settings_for_embedded_models(gguf_model: Path) -> None:
    llm = {"backend": "llama_cpp", "model_path": str(gguf_model), "endpoint": "completions"}
    stage = Rephrase(llm=llm)
    assert stage.tokenizer_path == str(gguf_model)  # the GGUF's own vocabulary counts the budgets
    with pytest.raises(ValueError, match="tokenizer_path is required with backend openai"):
        Rephrase(llm={"model": "m"})
    with pytest.raises(ValueError, match="prefill_prefix needs llm.endpoint: completions"):
        Rephrase(llm={**llm, "endpoint": "chat"}, prefill_prefix=True)
    prefilled = Rephrase(llm=llm, prefill_prefix=True)
    assert prefilled.prompt_text("distill", "Some text.").endswith("Some text.\n\nStart your answer with "
                                                                   "\"Here is the condensed text:\" and then give "
                                                                   "that text only.\n\nHere is the condensed text:\n")


def test_pipeline_resolves_nested_model_path_against_the_file(gguf_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pipes"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "m.gguf").symlink_to(gguf_model)
    (tmp_path / "in").mkdir()
    pa_table = pa.table({"id": ["a"], "text": ["x"]})
    import pyarrow.parquet as pq

    pq.write_table(pa_table, tmp_path / "in" / "part-00000.parquet")
    text = f"""name: t
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - id: synth
    uses: synth.rephrase
    from: docs
    with:
      llm: {{backend: llama_cpp, model_path: models/m.gguf, endpoint: completions}}
"""
    (folder / "p.yaml").write_text(text)
    pipeline = load_pipeline(str(folder / "p.yaml"), run_dir=str(tmp_path / "run"))
    stage = pipeline.stages[0].stage
    assert stage.llm.model_path == str(folder / "models" / "m.gguf") == stage.tokenizer_path
    (folder / "bad.yaml").write_text(text.replace("models/m.gguf", "models/missing.gguf"))
    with pytest.raises(PipelineError, match=r"bad.yaml:\d+: .*llm.*GGUF model not found: .*pipes/models/missing.gguf"):
        load_pipeline(str(folder / "bad.yaml"), run_dir=str(tmp_path / "run2"))
