"""llama.cpp in process (``llama-cpp-python``, the ``llm`` extra): a GGUF model on the CPU.

The embedded default of the sample run. One model per (file, settings) per worker process is
shared by all the shard tasks there (:mod:`curator.llm.engines`); a llama.cpp context answers one
request at a time, so requests queue on the engine's lock, and the client's concurrency only
decides how many wait. Prompts of one task share their instructions, and llama.cpp reuses the
evaluated prefix of the previous prompt, so the instructions are evaluated once per run of
same-task requests, not once per request.

Failures do not raise: a prompt longer than the context is ``prompt_too_long``, anything else the
engine raises is ``engine_error``. Neither is retried (the same prompt fails the same way).
``timeout_s`` does not apply: a generation in progress cannot be interrupted from outside.
Latency is the engine's time on a request, without the wait for the engine.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from curator.llm.backend import Backend
from curator.llm.engines import shared_engine
from curator.llm.llama_cpp_log import route_llama_cpp_log
from curator.llm.requests import LLMResult, Prompt, SamplingParams

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


def _import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ImportError(
            "the llama_cpp backend needs llama-cpp-python: pip install 'curator[llm]' "
            "(scripts/setup.sh installs it)") from exc
    route_llama_cpp_log()
    return Llama


@dataclass
class LlamaEngine:
    """A loaded model and the lock that serialises its use (a llama.cpp context is not thread-safe)."""

    llama: Any
    lock: threading.Lock
    has_chat_template: bool
    n_ctx: int


def load_llama_engine(model_path: str, n_ctx: int, n_threads: int, chat_format: str | None) -> LlamaEngine:
    """Load a GGUF model (not shared; see :meth:`LlamaCppBackend.engine` for the shared one)."""
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"GGUF model not found: {model_path}")
    llama_cls = _import_llama()
    llama = llama_cls(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                      chat_format=chat_format, verbose=False)
    has_template = bool(llama.metadata.get(CHAT_TEMPLATE_KEY)) or chat_format is not None
    # llama.cpp may round the context up; llama-cpp-python's buffers keep the size asked for.
    return LlamaEngine(llama, threading.Lock(), has_template, min(n_ctx, llama.n_ctx()))


class LlamaCppBackend(Backend):
    """A GGUF model run by llama.cpp in this process.

    ``model`` names the model in cache keys and output rows (default: the file name).
    ``chat_format`` is llama-cpp-python's name of a chat template (``gemma``, ``chatml``, ...) for
    models whose GGUF carries none; chat prompts to a model with neither are refused rather than
    formatted with a template the model never saw.
    """

    def __init__(self, model_path: str | os.PathLike[str], model: str | None = None, n_ctx: int = 4096,
                 n_threads: int = 1, chat_format: str | None = None) -> None:
        if n_ctx < 256:
            raise ValueError(f"n_ctx must be at least 256 (llama.cpp's smallest context), not {n_ctx}")
        self.model_path = os.path.abspath(os.fspath(model_path))
        self.model = model or os.path.basename(self.model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format

    def engine(self) -> LlamaEngine:
        """The model, loaded once per process for these settings."""
        key = ("llama_cpp", self.model_path, self.n_ctx, self.n_threads, self.chat_format)
        return shared_engine(key, lambda: load_llama_engine(self.model_path, self.n_ctx, self.n_threads,
                                                             self.chat_format))

    async def generate(self, prompt: Prompt, params: SamplingParams) -> LLMResult:
        return await asyncio.to_thread(self.generate_blocking, prompt, params)

    def generate_blocking(self, prompt: Prompt, params: SamplingParams) -> LLMResult:
        """Answer one prompt in the calling thread."""
        engine = self.engine()
        if prompt.is_chat and not engine.has_chat_template:
            raise ValueError(
                f"{self.model_path} has no chat template: set chat_format (e.g. gemma, chatml) or send "
                "completion prompts (endpoint: completions)")
        kwargs: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                                  "max_tokens": params.max_tokens, "stop": params.stop, "seed": params.seed}
        with engine.lock:
            start = time.monotonic()  # the engine's time on this request, not the wait for the lock
            try:
                if prompt.messages is not None:
                    messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
                    response = engine.llama.create_chat_completion(messages=messages, **kwargs)
                    choice = response["choices"][0]
                    text = choice["message"]["content"] or ""
                else:
                    tokens = engine.llama.tokenize((prompt.text or "").encode("utf-8"), add_bos=True, special=True)
                    if len(tokens) >= engine.n_ctx:  # llama.cpp's own error for this is unreadable
                        return _failure("prompt_too_long", f"{self.model}: the prompt is {len(tokens)} tokens, "
                                        f"the context window (n_ctx) {engine.n_ctx}", time.monotonic() - start)
                    response = engine.llama.create_completion(prompt=tokens, **kwargs)
                    choice = response["choices"][0]
                    text = choice["text"]
            except ValueError as exc:
                kind = "prompt_too_long" if "context window" in str(exc) else "engine_error"
                return _failure(kind, f"{self.model}: {exc}", time.monotonic() - start)
            except Exception as exc:  # noqa: BLE001 - whatever the engine raised, the request failed
                return _failure("engine_error", f"{self.model}: {type(exc).__name__}: {exc}",
                                time.monotonic() - start)
        usage = response.get("usage") or {}
        return LLMResult(text=text, finish_reason=choice.get("finish_reason"),
                         tokens_in=int(usage.get("prompt_tokens", 0)),
                         tokens_out=int(usage.get("completion_tokens", 0)),
                         latency_s=time.monotonic() - start, attempts=1)

    def __repr__(self) -> str:
        return f"LlamaCppBackend({self.model_path!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"


def _failure(kind: str, message: str, latency_s: float) -> LLMResult:
    return LLMResult(text=None, error_kind=kind, error=message, latency_s=latency_s, attempts=1)
