"""The LLM client against a fault-injecting OpenAI-compatible server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from curator.llm import (
    ERROR_KINDS,
    LLMClient,
    LLMResult,
    LLMStats,
    OpenAICompatibleBackend,
    Prompt,
    ResponseCache,
    SamplingParams,
    cache_key,
    parse_retry_after,
)
from tests.helpers.fake_llm_server import FakeLLMServer, answer_text

REPO = Path(__file__).resolve().parents[1]
PARAMS = SamplingParams(temperature=0.0, max_tokens=32)
FAST: dict[str, Any] = {
    "timeout_s": 0.5, "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "connect_timeout_s": 1.0,
}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(stall_s=5.0) as fake:
        yield fake


def make_backend(server: FakeLLMServer, **overrides: Any) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(server.url, "fake-model", **{**FAST, **overrides})


def ask(client: LLMClient, prompts: list[str], params: SamplingParams = PARAMS) -> list[LLMResult]:
    return client.generate([(Prompt.completion(p), params) for p in prompts])


def test_answers_come_back_in_order_with_usage(server: FakeLLMServer) -> None:
    prompts = [f"prompt number {i}" for i in range(30)]
    client = LLMClient(make_backend(server), concurrency=8)
    results = ask(client, prompts)
    assert [r.text for r in results] == [answer_text(p) for p in prompts]
    assert all(r.ok and r.attempts == 1 and r.finish_reason == "stop" and not r.cached for r in results)
    assert results[0].tokens_in == 3 and results[0].tokens_out == 4
    stats = client.stats
    assert (stats.requests, stats.attempts, stats.successes) == (30, 30, 30)
    assert stats.tokens_in == 90 and stats.tokens_out == 120
    sent = server.payloads[0]
    assert sent["model"] == "fake-model" and sent["temperature"] == 0.0 and sent["max_tokens"] == 32
    assert "stop" not in sent and "seed" not in sent


def test_chat_endpoint_and_prompt_kind_checked(server: FakeLLMServer) -> None:
    client = LLMClient(make_backend(server, endpoint="chat"))
    prompt = Prompt.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}])
    params = SamplingParams(stop=["\n"], seed=7)
    [result] = client.generate([(prompt, params)])
    assert result.ok and result.text == answer_text("hi there")
    sent = server.payloads[0]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["stop"] == ["\n"] and sent["seed"] == 7
    with pytest.raises(ValueError, match="chat backend"):
        client.generate([(Prompt.completion("plain"), params)])
    with pytest.raises(ValueError):
        Prompt(text="a", messages=({"role": "user", "content": "b"},))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("directive", "kind", "attempts"),
    [
        ("[fault:500x2]", "http_5xx", 3),
        ("[fault:503]", "http_5xx", 2),
        ("[fault:429]", "http_429", 2),
        ("[fault:408]", "http_4xx", 2),
        ("[fault:stall]", "timeout", 2),
        ("[fault:truncated]", "bad_response", 2),
        ("[fault:badshape]", "bad_response", 2),
        ("[fault:cut]", "connection", 2),
        ("[fault:drop]", "connection", 2),
    ],
)
def test_each_fault_is_retried_until_answered(server: FakeLLMServer, directive: str, kind: str, attempts: int) -> None:
    prompt = f"{directive} recover"
    client = LLMClient(make_backend(server))
    [result] = ask(client, [prompt])
    assert result.ok, result.error
    assert result.text == answer_text(prompt)
    assert result.attempts == attempts
    assert result.retries == {kind: attempts - 1}
    assert server.requests_for(prompt) == attempts
    assert client.stats.retries == {kind: attempts - 1}


def test_persistent_faults_are_recorded_failed_with_their_kind(server: FakeLLMServer) -> None:
    expected = {
        "[fault:always500] a": ("http_5xx", 3),
        "[fault:stallx9] b": ("timeout", 3),
        "[fault:dropx9] c": ("connection", 3),
        "[fault:truncatedx9] d": ("bad_response", 3),
        "[fault:429x9] e": ("http_429", 3),
        "[fault:400] f": ("http_4xx", 1),  # not worth retrying
        "fine": (None, 1),
    }
    client = LLMClient(make_backend(server, max_retries=2), concurrency=8)
    results = ask(client, list(expected))
    for prompt, result in zip(expected, results):
        kind, attempts = expected[prompt]
        assert result.error_kind == kind, (prompt, result)
        assert result.attempts == attempts == server.requests_for(prompt)
        assert result.ok == (kind is None)
        if kind is not None:
            assert result.error_kind in ERROR_KINDS and result.text is None
            assert f"POST {server.url}/v1/completions" in result.error  # names what failed
    always500 = results[0]
    assert "HTTP 500" in always500.error and "gave up after 3 attempts" in always500.error
    assert "not retried" in results[5].error
    stats = client.stats
    assert stats.successes == 1
    assert stats.failures == {"http_5xx": 1, "timeout": 1, "connection": 1, "bad_response": 1, "http_429": 1, "http_4xx": 1}
    assert stats.retries["http_5xx"] == 2 and stats.attempts == 3 * 5 + 1 + 1


def test_connection_refused_is_a_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", **{**FAST, "max_retries": 1})
    [result] = ask(LLMClient(backend), ["anyone there?"])
    assert result.error_kind == "connection" and result.attempts == 2
    assert f"127.0.0.1:{port}/v1/completions" in result.error


def test_retry_after_is_honoured_in_seconds_and_dates(server: FakeLLMServer) -> None:
    prompts = [
        "[fault:429:retry-after=1] seconds",
        "[fault:503:retry-after=1] unavailable",
        "[fault:429:retry-after=date+2] date",  # HTTP dates have whole seconds: a wait of 1 to 2 s
    ]
    # backoff alone would wait at most 0.5 s; Retry-After is honoured up to 4 x 0.5 s
    client = LLMClient(make_backend(server, backoff_max_s=0.5, timeout_s=2.0), concurrency=4)
    start = time.perf_counter()
    results = ask(client, prompts)
    assert time.perf_counter() - start < 3.5
    assert all(r.ok and r.attempts == 2 and sum(r.retries.values()) == 1 for r in results)
    assert all(r.latency_s >= 1.0 for r in results)

    capped = LLMClient(make_backend(server, backoff_max_s=0.05))  # waits at most 4 x 0.05 s
    [result] = ask(capped, ["[fault:429:retry-after=100] capped"])
    assert result.ok and result.attempts == 2 and result.latency_s < 0.5


def test_retry_after_parsing_and_backoff_bounds() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    backend = OpenAICompatibleBackend("http://127.0.0.1:1", "m", backoff_base_s=0.1, backoff_max_s=1.0)
    for attempt in range(1, 12):
        delays = [backend._delay(attempt, None) for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= min(1.0, 0.1 * 2 ** (attempt - 1))
    assert all(2.0 <= backend._delay(1, 2.0) <= 2.1 for _ in range(100))
    assert backend._delay(1, 3600.0) <= 4.0 + 0.1


def test_concurrency_limit_is_respected_and_reached() -> None:
    with FakeLLMServer(latency_s=0.05) as server:
        prompts = [f"slow {i}" for i in range(50)]
        client = LLMClient(make_backend(server, timeout_s=5.0), concurrency=4)
        results = ask(client, prompts)
        assert [r.text for r in results] == [answer_text(p) for p in prompts]
        assert server.total_requests == 50
        assert server.max_in_flight == 4


def test_rerun_sends_nothing_for_finished_prompts(server: FakeLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "run" / "llm-cache.sqlite"
    good = [f"good {i}" for i in range(10)] + ["[fault:500x1] flaky"]
    bad = ["[fault:always500] bad one", "[fault:always500] bad two"]
    prompts = good[:5] + bad[:1] + good[5:] + bad[1:]
    with ResponseCache(path) as cache:
        first = ask(LLMClient(make_backend(server, max_retries=2), cache, concurrency=4), prompts)
    assert sum(r.ok for r in first) == 11 and sum(not r.ok for r in first) == 2
    assert server.total_requests == 10 + 2 + 2 * 3

    server.reset_counts()
    with ResponseCache(path) as cache:
        assert cache.counts() == (11, 2)
        client = LLMClient(make_backend(server, max_retries=2), cache, concurrency=4)
        second = ask(client, prompts)
    assert all(server.requests_for(p) == 0 for p in good)  # answers come from the cache
    assert all(server.requests_for(p) == 3 for p in bad)  # failures are sent again
    assert server.total_requests == 6
    for before, after in zip(first, second):
        assert after.text == before.text and after.ok == before.ok
        assert after.cached == before.ok
    assert client.stats.cache_hits == 11 and client.stats.requests == 2


def test_duplicates_in_a_batch_are_sent_once(server: FakeLLMServer) -> None:
    client = LLMClient(make_backend(server), concurrency=4)
    results = ask(client, ["same", "other", "same", "same"])
    assert server.requests_for("same") == 1
    assert [r.text for r in results] == [answer_text(p) for p in ["same", "other", "same", "same"]]
    assert [r.cached for r in results] == [False, False, True, True]
    assert client.stats.deduplicated == 2 and client.stats.requests == 2


_CHILD = """
import logging, sys
from curator.llm import LLMClient, OpenAICompatibleBackend, Prompt, ResponseCache, SamplingParams
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = LLMClient(OpenAICompatibleBackend(url, "fake-model", timeout_s=10), ResponseCache(path), concurrency=2)
client.generate([(Prompt.completion(f"killed {i}"), SamplingParams(temperature=0.0, max_tokens=32)) for i in range(n)])
"""


def test_a_killed_run_loses_only_requests_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    prompts = [f"killed {i}" for i in range(40)]
    with FakeLLMServer(latency_s=0.1) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, server.url, str(path), "40"], env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            while server.total_requests < 10 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)
            assert child.poll() is None, "the child finished or died before it could be killed"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            time.sleep(0.3)  # let the server read any request the child wrote before it died
        finally:
            if child.poll() is None:
                child.kill()
        sent_before = server.total_requests
        with ResponseCache(path) as cache:
            answered_before, _ = cache.counts()
            assert answered_before >= sent_before - 2  # at most the 2 in flight were lost
            results = ask(LLMClient(make_backend(server), cache, concurrency=8), prompts)
    assert all(r.ok for r in results)
    assert sum(r.cached for r in results) == answered_before
    assert all(server.requests_for(p) <= 2 for p in prompts)
    assert server.total_requests == 40 + (sent_before - answered_before)


def test_cache_key_names_model_prompt_and_params() -> None:
    prompt, params = Prompt.completion("hello"), SamplingParams(temperature=0.7)
    key = cache_key("m", prompt, params)
    assert len(key) == 64 and key == cache_key("m", Prompt.completion("hello"), SamplingParams(temperature=0.7))
    others = {
        cache_key("m2", prompt, params),
        cache_key("m", Prompt.completion("hello!"), params),
        cache_key("m", Prompt.chat([{"role": "user", "content": "hello"}]), params),
        cache_key("m", prompt, SamplingParams(temperature=0.8)),
        cache_key("m", prompt, SamplingParams(temperature=0.7, top_p=0.9)),
        cache_key("m", prompt, SamplingParams(temperature=0.7, max_tokens=100)),
        cache_key("m", prompt, SamplingParams(temperature=0.7, stop=["\n"])),
        cache_key("m", prompt, SamplingParams(temperature=0.7, seed=1)),
    }
    assert len(others) == 8 and key not in others


def test_cache_keeps_answers_over_failures_and_commits_each_write(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = ResponseCache(path)
    answer = LLMResult(text="yes", finish_reason="stop", tokens_in=1, tokens_out=1, latency_s=0.1, attempts=1)
    failure = LLMResult(text=None, error_kind="http_5xx", error="POST x: HTTP 500", attempts=3)
    writer.put("k1", failure)
    writer.put("k1", answer)
    writer.put("k1", failure)  # a later failure never replaces an answer
    writer.put("k2", failure)
    reader = ResponseCache(path)  # a second connection sees every write without the writer closing
    found = reader.get_many(["k1", "k2", "k3"])
    assert list(found) == ["k1"] and found["k1"].text == "yes" and found["k1"].cached
    assert reader.failures() == [("k2", "http_5xx", "POST x: HTTP 500")]
    for i in range(1200):  # more keys than SQLite takes in one statement
        writer.put(f"many{i}", answer)
    assert len(reader.get_many(f"many{i}" for i in range(1200))) == 1200
    writer.close()
    reader.close()


def test_api_key_is_sent_and_never_shown(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-5up3r-s3cr3t"
    monkeypatch.setenv("CURATOR_TEST_LLM_KEY", secret)
    backend = make_backend(server, api_key_env="CURATOR_TEST_LLM_KEY", max_retries=1)
    with caplog.at_level(logging.DEBUG):
        ask(LLMClient(backend), ["hello", "[fault:always500] no", "[fault:400] bad"])
    assert server.authorization_headers == [f"Bearer {secret}"] * 4
    assert "CURATOR_TEST_LLM_KEY" in repr(backend)
    for shown in (caplog.text, repr(backend), str(backend), repr(backend.__dict__.get("url"))):
        assert secret not in shown
    blob = pickle.dumps(backend)
    assert secret.encode() not in blob
    monkeypatch.setenv("CURATOR_TEST_LLM_KEY", "sk-on-the-worker")  # a worker reads its own environment
    [result] = ask(LLMClient(pickle.loads(blob)), ["after pickling"])
    assert result.ok and server.authorization_headers[-1] == "Bearer sk-on-the-worker"

    monkeypatch.delenv("CURATOR_TEST_LLM_KEY")
    with pytest.raises(ValueError, match="CURATOR_TEST_LLM_KEY") as missing:
        make_backend(server, api_key_env="CURATOR_TEST_LLM_KEY")
    assert secret not in str(missing.value)
    ask(LLMClient(make_backend(server)), ["no key"])
    assert server.authorization_headers[-1] is None


def test_stats_merge_and_percentiles() -> None:
    def stats_of(latencies: list[float], failures: int = 0) -> LLMStats:
        stats = LLMStats()
        for latency in latencies:
            stats.record(LLMResult(text="x", tokens_in=2, tokens_out=3, latency_s=latency, attempts=1))
        for _ in range(failures):
            stats.record(LLMResult(text=None, error_kind="timeout", attempts=2, retries={"timeout": 1}))
        return stats

    fast = stats_of([i / 1000 for i in range(1, 501)])  # 1..500 ms
    slow = stats_of([0.5 + i / 1000 for i in range(1, 501)], failures=3)  # 501..1000 ms
    merged = fast.merge(slow)
    assert merged.requests == 1003 and merged.successes == 1000 and merged.attempts == 1006
    assert merged.failures == {"timeout": 3} and merged.retries == {"timeout": 3}
    assert merged.tokens_in == 2000 and merged.tokens_out == 3000
    for q, true in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99)]:
        assert merged.latency_percentile(q) == pytest.approx(true, rel=0.07)
    assert fast.latency_percentile(0.5) == pytest.approx(0.25, rel=0.07)
    assert merged.latency_percentile(1.0) <= 1.0 and LLMStats().latency_percentile(0.5) is None
    data = merged.to_json()
    assert data["latency_s"]["p50"] == pytest.approx(0.5, rel=0.07) and data["latency_s"]["max"] == 1.0
    restored = LLMStats.from_json(data)
    assert restored == merged
    assert LLMStats.from_json(fast.to_json()).merge(LLMStats.from_json(slow.to_json())) == merged


def test_sync_generate_in_worker_threads_and_async_use(server: FakeLLMServer) -> None:
    backend = make_backend(server)
    client = LLMClient(backend, concurrency=2)
    with ThreadPoolExecutor(2) as pool:  # like Dask worker threads: each call runs its own loop
        batches = list(pool.map(lambda i: ask(client, [f"thread {i} a", f"thread {i} b"]), range(4)))
    assert all(r.ok for batch in batches for r in batch)

    async def main() -> list[LLMResult]:
        try:
            return await client.agenerate([(Prompt.completion("async"), PARAMS)])
        finally:
            await client.aclose()

    [result] = asyncio.run(main())
    assert result.text == answer_text("async")
    assert client.stats.requests == 9
