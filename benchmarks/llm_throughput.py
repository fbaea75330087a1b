"""LLM request throughput: synth.rephrase (and the LLM client under it) vs a bare aiohttp loop.

Both sides send exactly the same requests (the stage's own ``plan()``: same prompts, same JSON
body fields) to the same local OpenAI-compatible server, at the same concurrency, one run each.
The server runs in its own process, so it does not share the GIL with the client being measured.

Servers (``--server fake|llama|both``):
- fake: ``tests/helpers/fake_llm_server.FakeLLMServer`` with a fixed per-request latency
  (``--latency``), answering task-shaped text about as long as the segment. It counts the
  requests, hashes the request bodies it received (so we check that both sides sent the same
  bodies) and notes when the first request arrived and the last answer left.
- llama: ``python -m llama_cpp.server`` with ``models/gemma-3-270m-q4_k_m.gguf`` (completions
  endpoint; the model is a base model without a chat template), small ``--llama-max-tokens``.
  It answers one request at a time, so this one is bound by the server; requests are counted
  from its access log. Only the bare loop and the runner are run against it (one untimed warm-up
  request first).

Documents: real article text (aeb-dev paragraphs, ``--doc-chars`` each, every line made distinct),
quality labels alternating low (wikipedia task) and high (the other four tasks). Token budgets are
counted with a BPE ``tokenizer.json`` trained on them (fake server) or with the GGUF (llama.cpp).

Paths measured, each against a fresh response cache (so every request is really sent):
- bare loop: one aiohttp session, ``concurrency`` workers POSTing the request bodies (no cache,
  no retries);
- LLMClient.generate: the stage's (prompt, sampling) list through ``LLMClient`` with a
  ``ResponseCache`` in a fresh file, as the stage uses it;
- Rephrase.rephrase: the stage-level API on the documents (plan + requests + output rows);
- runner: the synth.rephrase stage end to end through ``PipelineRunner`` on a LocalCluster (one
  input shard, so one shard task with ``concurrency`` requests in flight, as the bare loop; cluster
  start-up excluded, the task's tokenizer load, Parquet read and write included).

Printed per path: wall seconds and requests/s; for the fake server also the server's window
(first request in to last answer out), which leaves out what a path does before its first and
after its last request (planning, tokenizer load, Dask scheduling, writing).

    python benchmarks/llm_throughput.py [--server both] [--requests 3000] [--concurrency 64]
        [--latency 0.05] [--llama-requests 40] [--llama-concurrency 4] [--llama-max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.helpers (the fake server) is not an installed package

from curator.llm import LLMClient, ResponseCache  # noqa: E402
from stages.rephrase import Rephrase  # noqa: E402
from stages.rephrase_prompts import TASK_NAMES, TASKS  # noqa: E402
from tests.helpers.llama_server import LlamaServer  # noqa: E402

log = logging.getLogger("llm_throughput")

AEB_TRUTH = REPO.parent / "shared" / "data" / "extraction" / "aeb-dev" / "ground-truth.json"
GGUF = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
LOAD_AT_START = os.getloadavg()[0]
LABELS = ("low", "high")  # low: wikipedia (1 request per segment); high: the four other tasks


# ---------------------------------------------------------------------- the fake server process


def _task_of(prompt: str) -> str | None:
    return next((t for t, s in TASKS.items() if f'Start your answer with "{s.prefix}"' in prompt), None)


def fake_answer(prompt: str) -> str:
    """An answer the stage keeps: the task's prefix, then text about as long as the segment."""
    task = _task_of(prompt)
    if task is None:
        return f"ECHO: {prompt}"
    segment = prompt.split("Passage:\n", 1)[-1].rsplit("\n\nStart your answer", 1)[0]
    prefix = TASKS[task].prefix
    if task == "diverse_qa":
        words = segment.split()
        pairs = [f"Question: What does part {i} of the text say?\nAnswer: {' '.join(words[i * 20:(i + 1) * 20])}"
                 for i in range(max(1, len(words) // 20))]
        return prefix + "\n" + "\n".join(pairs)
    if task == "knowledge_list":
        return prefix + "\n" + "\n".join(f"- {line}" for line in re.split(r"(?<=[.!?])\s+", segment) if line)
    return f"{prefix} {segment}"


def serve_fake(latency_s: float) -> None:
    """The fake server's process: prints its URL, then answers commands on stdin (stats, reset)."""
    from aiohttp import web

    from tests.helpers.fake_llm_server import FakeLLMServer

    class TimedServer(FakeLLMServer):
        """Also notes when the first request arrived and the last answer left."""

        first_in = last_out = 0.0

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            if not self.first_in:
                self.first_in = time.time()
            try:
                return await super()._handle(request)
            finally:
                self.last_out = time.time()

    with TimedServer(latency_s=latency_s, answer=fake_answer) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                bodies = sorted(json.dumps(p, sort_keys=True) for p in server.payloads)
                print(json.dumps({
                    "requests": server.total_requests, "max_in_flight": server.max_in_flight,
                    "bodies_sha256": hashlib.sha256("\n".join(bodies).encode()).hexdigest(),
                    "first_in": server.first_in, "last_out": server.last_out,
                }), flush=True)
            elif command == "reset":
                server.reset_counts()
                server.first_in = server.last_out = 0.0
                print("{}", flush=True)


class FakeServerProcess:
    """The fake server in a child process (this script with ``--serve-fake``)."""

    def __init__(self, latency_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-fake", "--latency", str(latency_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.close()
            raise RuntimeError(f"the fake server did not start (exit code {self.proc.poll()})")

    def command(self, name: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------- documents and requests


def source_texts() -> list[str]:
    """Paragraphs of real article text (aeb-dev), or generated sentences without the shared data."""
    if AEB_TRUTH.is_file():
        paras = [p.strip() for item in json.loads(AEB_TRUTH.read_text()).values()
                 for p in item["articleBody"].split("\n\n") if p.strip()]
        return [p for p in paras if len(p) > 40]
    words = ("river valley mountain city harbor engine theory planet forest market village bridge science "
             "history music language railway castle island winter summer ocean garden").split()
    return [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(25)).capitalize() + "." for i in range(500)]


def documents(n: int, chars: int) -> pa.Table:
    """``n`` distinct documents of about ``chars`` characters, labels alternating low / high."""
    paras = source_texts()
    texts, k = [], 0
    for i in range(n):
        parts: list[str] = []
        while sum(len(p) for p in parts) < chars:
            parts.append(f"{paras[k % len(paras)]} (Record {i}.{len(parts)}.)")  # every line distinct
            k += 1
        texts.append("\n".join(parts))
    return pa.table({"id": [f"doc{i:06d}" for i in range(n)], "text": texts,
                     "quality_label": [LABELS[i % 2] for i in range(n)]})


def train_tokenizer(texts: list[str], path: Path) -> Path:
    """A BPE tokenizer.json trained on the documents and prompts (what tests/test_rephrase.py does)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [s.template for s in TASKS.values()] + texts
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=8000, special_tokens=["[UNK]"],
                                                        show_progress=False))
    tok.save(str(path))
    return path


def documents_for(stage: Rephrase, want: int, chars: int) -> tuple[pa.Table, list]:
    """The smallest prefix of the documents whose plan has at most ``want`` requests, and the plan."""
    counter = stage.token_counter()
    table = documents(max(2, int(want / 2.5) + 4), chars)
    requests, _ = stage.plan(table, counter)
    per_doc: dict[str, int] = {}
    for r in requests:
        per_doc[r.source_id] = per_doc.get(r.source_id, 0) + 1
    total, keep = 0, 0
    for doc_id in table.column("id").to_pylist():
        if total + per_doc.get(doc_id, 0) > want:
            break
        total += per_doc.get(doc_id, 0)
        keep += 1
    table = table.slice(0, keep)
    requests, _ = stage.plan(table, counter)
    prompts = [stage.prompt(r) for r in requests]
    if len({p.model_dump_json() for p in prompts}) != len(prompts):
        raise RuntimeError("the planned prompts are not all distinct (the client would send duplicates once)")
    return table, requests


def request_body(stage: Rephrase, request) -> dict[str, Any]:
    """The JSON body an OpenAI-compatible client sends for a planned request (the backend's fields)."""
    params = stage.sampling(request.task)
    body: dict[str, Any] = {"model": stage.llm.model_name}
    if stage.llm.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    body.update(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens, n=1, stream=False)
    return body


# ---------------------------------------------------------------------- the paths


async def _bare(url: str, bodies: list[dict[str, Any]], concurrency: int, chat: bool) -> list[str]:
    texts: list[str] = [""] * len(bodies)
    pending = iter(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def worker() -> None:
            for i, body in pending:
                async with session.post(url, json=body) as response:
                    response.raise_for_status()
                    data = await response.json()
                choice = data["choices"][0]
                texts[i] = choice["message"]["content"] if chat else choice["text"]

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(bodies)))))
    return texts


def bare_loop(stage: Rephrase, requests: list, concurrency: int) -> float:
    """Seconds to send every request with a bare aiohttp worker pool."""
    chat = stage.llm.endpoint == "chat"
    url = stage.llm.base_url.rstrip("/") + ("/v1/chat/completions" if chat else "/v1/completions")
    bodies = [request_body(stage, r) for r in requests]
    start = time.perf_counter()
    texts = asyncio.run(_bare(url, bodies, concurrency, chat))
    seconds = time.perf_counter() - start
    assert len(texts) == len(requests)
    return seconds


def client_generate(stage: Rephrase, requests: list, cache_path: Path) -> float:
    """Seconds for ``LLMClient.generate`` over the stage's requests, through a fresh response cache."""
    items = [(stage.prompt(r), stage.sampling(r.task)) for r in requests]
    with ResponseCache(cache_path) as cache:
        client = LLMClient(stage.llm.build_backend(), cache=cache, concurrency=stage.llm.concurrency)
        start = time.perf_counter()
        results = client.generate(items)
        seconds = time.perf_counter() - start
    failed = sum(not r.ok for r in results)
    if failed or client.stats.requests != len(items):
        raise RuntimeError(f"LLMClient: {failed} failed, {client.stats.requests} sent of {len(items)}")
    return seconds


class TimedRephrase(Rephrase):
    """The stage, noting the seconds spent in ``plan`` and ``rows`` (what ``rephrase`` does besides requests)."""

    def plan(self, batch: pa.Table, counter: Any) -> tuple[list, int]:
        start = time.perf_counter()
        try:
            return super().plan(batch, counter)
        finally:
            STAGE_PARTS["plan"] += time.perf_counter() - start

    def rows(self, requests: list, results: list) -> pa.Table:
        start = time.perf_counter()
        try:
            return super().rows(requests, results)
        finally:
            STAGE_PARTS["rows"] += time.perf_counter() - start


STAGE_PARTS: dict[str, float] = {"plan": 0.0, "rows": 0.0}


def stage_api(params: dict[str, Any], table: pa.Table, cache_path: Path) -> tuple[float, dict[str, float]]:
    """Seconds for ``Rephrase.rephrase`` (plan, requests, output rows) with a fresh response cache,
    and the seconds of its plan and rows steps."""
    stage = TimedRephrase(**params)
    counter = stage.token_counter()  # loaded once per shard task in the runner; not timed here
    with ResponseCache(cache_path) as cache:
        client = LLMClient(stage.llm.build_backend(), cache=cache, concurrency=stage.llm.concurrency)
        STAGE_PARTS.update(plan=0.0, rows=0.0)
        start = time.perf_counter()
        rows = stage.rephrase(table, client, counter)
        seconds = time.perf_counter() - start
    reasons = [r for r in rows.column("drop_reason").to_pylist() if r and r.startswith("llm_failed")]
    if reasons:
        raise RuntimeError(f"Rephrase.rephrase: {len(reasons)} requests failed ({reasons[0]})")
    return seconds, dict(STAGE_PARTS)


def through_runner(client: Any, params: dict[str, Any], table: pa.Table, work: Path, tag: str) -> tuple[float, int]:
    """Seconds for the synth.rephrase stage through the runner (one shard), and the requests it sent."""
    from timed_run import timed_run  # benchmarks/ is on sys.path when run as a script

    data = work / f"{tag}-in"
    data.mkdir(parents=True)
    pq.write_table(table, data / "part-00000.parquet")
    run_dir = work / f"{tag}-run"
    seconds, _ = timed_run(client, f"""
name: llm-throughput
imports: [stages.rephrase]
inputs:
  docs: {{dataset: {data}}}
stages:
  - {{id: synth, uses: synth.rephrase, from: docs, with: {json.dumps(params)}}}
""", run_dir)
    # The runner calls a global stage complete once its last shard is in, while the stage's thread may
    # still be writing _llm_stats.json (curator/runner.py _check_complete): wait for the file, untimed.
    stats_file = run_dir / "synth" / "_llm_stats.json"
    deadline = time.monotonic() + 30
    if not stats_file.exists():
        log.info("  the runner returned before the stage wrote %s; waiting for it", stats_file.name)
    while not stats_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = json.loads(stats_file.read_text())
    if stats["successes"] != stats["requests"] or stats["cache_hits"]:
        raise RuntimeError(f"runner: {stats['requests']} sent, {stats['successes']} answered, "
                           f"{stats['cache_hits']} cache hits")
    return seconds, int(stats["requests"])


# ---------------------------------------------------------------------- one server


@dataclass
class Row:
    server: str
    path: str
    concurrency: int
    requests: int
    seconds: float
    cpu_s: float | None = None  # CPU seconds of this process (paths that run in it)
    window_s: float | None = None  # fake server: first request in to last answer out
    bodies: str | None = None  # fake server: sha256 of the request bodies it received, sorted

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def window_rate(self) -> float | None:
        return self.requests / self.window_s if self.window_s else None


PATHS = ("bare loop", "LLMClient.generate", "Rephrase.rephrase", "runner (synth.rephrase)")


def measure(server_name: str, stage: Rephrase, params: dict[str, Any], table: pa.Table, requests: list,
            dask: Any, work: Path, count: Any, concurrency: int,
            paths: tuple[str, ...] = PATHS) -> tuple[list[Row], dict[str, float]]:
    """Run each path once against the server; ``count()`` gives (requests seen, extra) since last call."""
    rows = []
    parts: dict[str, float] = {}
    for path in paths:
        count()  # reset
        log.info("%s: %s, %d requests at concurrency %d", server_name, path, len(requests), concurrency)
        tag = f"{server_name}-{PATHS.index(path)}"
        cpu = time.process_time()
        if path == "bare loop":
            seconds, sent = bare_loop(stage, requests, concurrency), len(requests)
        elif path == "LLMClient.generate":
            seconds, sent = client_generate(stage, requests, work / f"{tag}.sqlite"), len(requests)
        elif path == "Rephrase.rephrase":
            (seconds, parts), sent = stage_api(params, table, work / f"{tag}.sqlite"), len(requests)
        else:
            seconds, sent = through_runner(dask, params, table, work, tag)
        cpu = time.process_time() - cpu
        seen, extra = count()
        if seen != len(requests) or sent != len(requests):
            raise RuntimeError(f"{path}: the server saw {seen} requests, the path sent {sent}, "
                               f"{len(requests)} planned")
        rows.append(Row(server_name, path, concurrency, seen, seconds, None if path.startswith("runner") else cpu,
                        extra.get("window_s"), extra.get("bodies_sha256")))
        log.info("  %.2f s, %.1f requests/s%s", seconds, seen / seconds,
                 f", at most {extra['max_in_flight']} in flight at the server" if "max_in_flight" in extra else "")
    if len({r.bodies for r in rows}) != 1:
        raise RuntimeError("the paths did not send the same request bodies")
    return rows, parts


def stage_params(url: str, model: str, tokenizer: Path, endpoint: str, concurrency: int,
                 max_tokens: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "llm": {"model": model, "base_url": url, "endpoint": endpoint, "concurrency": concurrency},
        "tokenizer_path": str(tokenizer),
    }
    if max_tokens is not None:
        params["max_tokens"] = {t: max_tokens for t in TASK_NAMES}
    return params


def run_fake(args: argparse.Namespace, dask: Any, work: Path) -> tuple[list[Row], dict[str, float]]:
    texts = documents(200, args.doc_chars).column("text").to_pylist()
    tokenizer = train_tokenizer(texts, work / "tokenizer.json")
    server = FakeServerProcess(args.latency)
    try:
        params = stage_params(server.url, "fake-model", tokenizer, args.endpoint, args.concurrency, None)
        stage = Rephrase(**params)
        table, requests = documents_for(stage, args.requests, args.doc_chars)
        log.info("fake server (%s, latency %.3f s): %d documents, %d requests, mean prompt %.0f characters",
                 server.url, args.latency, table.num_rows, len(requests),
                 sum(len(r.prompt) for r in requests) / len(requests))

        def count() -> tuple[int, dict[str, Any]]:
            stats = server.command("stats")
            server.command("reset")
            window = stats["last_out"] - stats["first_in"] if stats["requests"] else None
            return stats["requests"], {"window_s": window, "bodies_sha256": stats["bodies_sha256"],
                                       "max_in_flight": stats["max_in_flight"]}

        return measure("fake", stage, params, table, requests, dask, work, count, args.concurrency)
    finally:
        server.close()


def run_llama(args: argparse.Namespace, dask: Any, work: Path) -> tuple[list[Row], dict[str, float]]:
    if not GGUF.is_file():
        raise SystemExit(f"{GGUF} not found: run scripts/fetch_llm_model.py (or use --server fake)")
    server = LlamaServer(GGUF, work / "llama_server.log",
                         ["--n_ctx", str(args.llama_n_ctx), "--n_threads", str(args.llama_threads)])
    try:
        params = stage_params(server.url, GGUF.stem, GGUF, "completions", args.llama_concurrency,
                              args.llama_max_tokens)
        stage = Rephrase(**params)
        table, requests = documents_for(stage, args.llama_requests, args.llama_doc_chars)
        log.info("llama.cpp server (%s): %d documents, %d requests, mean prompt %.0f characters, max_tokens %d",
                 server.url, table.num_rows, len(requests), sum(len(r.prompt) for r in requests) / len(requests),
                 args.llama_max_tokens)
        warm = json.dumps({"model": GGUF.stem, "prompt": "Hello", "max_tokens": 4}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{server.url}/v1/completions", data=warm, headers={
                "Content-Type": "application/json"}), timeout=120) as response:  # first-request costs, untimed
            response.read()
        seen_before = [server.completions_answered()]

        def count() -> tuple[int, dict[str, Any]]:
            now = server.completions_answered()
            seen, seen_before[0] = now - seen_before[0], now
            return seen, {}

        # Server-bound (one request at a time): the bare loop and the runner only, to keep the run short.
        return measure("llama.cpp", stage, params, table, requests, dask, work, count, args.llama_concurrency,
                       (PATHS[0], PATHS[3]))
    finally:
        server.close()


# ---------------------------------------------------------------------- main


def print_table(rows: list[Row], parts: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    bare = {r.server: r for r in rows if r.path == "bare loop"}
    header = (f"{'server':10s} {'path':24s} {'conc':>4s} {'requests':>8s} {'seconds':>8s} {'req/s':>8s} "
              f"{'ratio':>6s} {'window s':>8s} {'req/s':>8s} {'ratio':>6s} {'cpu s':>6s}")
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        b = bare[r.server]
        ratio = f"{r.rate / b.rate:.2f}x" if r is not b else ""
        if r.window_s and b.window_s:
            window_ratio = f"{r.window_rate / b.window_rate:.2f}x" if r is not b else ""  # type: ignore[operator]
            window = f"{r.window_s:8.2f} {r.window_rate:8.1f} {window_ratio:>6s}"
        else:
            window = f"{'-':>8s} {'-':>8s} {'':6s}"
        cpu = f"{r.cpu_s:6.2f}" if r.cpu_s is not None else f"{'-':>6s}"
        print(f"{r.server:10s} {r.path:24s} {r.concurrency:4d} {r.requests:8d} {r.seconds:8.2f} {r.rate:8.1f} "
              f"{ratio:>6s} {window} {cpu}")
    print()
    print("ratio: the path's requests/s over the bare loop's on the same server (goal >= 0.9x). window: first "
          "request in to last answer out, seen by the fake server. cpu s: CPU seconds of this process "
          "(the runner's work happens in a Dask worker)")
    for server, p in parts.items():
        if not p:
            continue
        total = next(r.seconds for r in rows if r.server == server and r.path == "Rephrase.rephrase")
        print(f"{server}: Rephrase.rephrase = plan (segmenting, token counts) {p['plan']:.2f} s + requests "
              f"{total - p['plan'] - p['rows']:.2f} s + output rows {p['rows']:.2f} s")
    if any(r.server == "fake" for r in rows):
        ideal = args.concurrency / args.latency
        print(f"fake server: latency {args.latency} s, so at most {ideal:,.0f} requests/s at concurrency "
              f"{args.concurrency}; endpoint {args.endpoint}")
    print(f"load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores; this benchmark's processes included: more at start means others were busy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["fake", "llama", "both"], default="both")
    parser.add_argument("--requests", type=int, default=3000, help="fake server: requests per path")
    parser.add_argument("--concurrency", type=int, default=64, help="fake server: requests in flight")
    parser.add_argument("--latency", type=float, default=0.05, help="fake server: seconds per request")
    parser.add_argument("--endpoint", choices=["chat", "completions"], default="chat", help="fake server")
    parser.add_argument("--doc-chars", type=int, default=1200, help="fake server: characters per document")
    parser.add_argument("--llama-requests", type=int, default=40)
    parser.add_argument("--llama-concurrency", type=int, default=4)
    parser.add_argument("--llama-max-tokens", type=int, default=16)
    parser.add_argument("--llama-doc-chars", type=int, default=400)
    parser.add_argument("--llama-n-ctx", type=int, default=2048)
    parser.add_argument("--llama-threads", type=int, default=2, help="llama.cpp server threads")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers for the runner path")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.latency)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("curator").setLevel(logging.WARNING)

    from distributed import Client, LocalCluster

    work = Path(tempfile.mkdtemp(prefix="llm-throughput-"))
    rows: list[Row] = []
    parts: dict[str, dict[str, float]] = {}
    try:
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as dask:
            for name, run in (("fake", run_fake), ("llama.cpp", run_llama)):
                if args.server in (name.split(".")[0], "both"):
                    server_rows, parts[name] = run(args, dask, work)
                    rows += server_rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, parts, args)


if __name__ == "__main__":
    main()
