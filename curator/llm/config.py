"""LLM settings as they appear in pipeline files, and token counting with a model's tokenizer.

``LLMConfig`` is a pydantic model a stage takes as one parameter (``llm:``); ``build_backend()``
turns it into a :class:`~curator.llm.backend.Backend`. Only the OpenAI-compatible HTTP backend
exists so far; in-process engines (``llama_cpp``, ``vllm``) will be further values of ``backend``
with their own fields, checked by :meth:`LLMConfig._check_backend_fields`.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curator.llm.backend import Backend

BackendName = Literal["openai"]
"""Backends a pipeline file may name (later also "llama_cpp" and "vllm")."""


class LLMConfig(BaseModel):
    """Which model to call and how: backend, endpoint, concurrency, timeouts and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = Field("openai", description=(
        "openai: any OpenAI-compatible HTTP server (vLLM, SGLang, NIM, TensorRT-LLM, llama.cpp server)."))
    model: str = Field(min_length=1, description="Model name sent with every request; part of every cache key.")
    base_url: str = Field("http://127.0.0.1:8000", description="Server address (with or without /v1).")
    api_key_env: str | None = Field(None, description=(
        "Environment variable holding the API key (the key itself never goes in a pipeline file)."))
    endpoint: Literal["completions", "chat"] = Field("chat", description=(
        "chat: /v1/chat/completions (the server applies the model's chat template); "
        "completions: /v1/completions with the prompt text as is."))
    concurrency: int = Field(16, ge=1, description="Requests in flight at once, per shard task.")
    timeout_s: float = Field(300.0, gt=0, description="Seconds allowed for one complete answer.")
    max_retries: int = Field(5, ge=0, description=(
        "Retries of a request after timeouts, 429s, 5xx and dropped connections."))
    backoff_base_s: float = Field(1.0, ge=0, description="First backoff ceiling (doubles per retry, full jitter).")
    backoff_max_s: float = Field(60.0, ge=0, description="Largest backoff between two attempts.")

    @model_validator(mode="after")
    def _check_backend_fields(self) -> LLMConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs a base_url")
        return self

    def build_backend(self) -> Backend:
        """The backend these settings describe (reads the API key from its variable now)."""
        if self.backend == "openai":
            from curator.llm.openai_http import OpenAICompatibleBackend

            return OpenAICompatibleBackend(
                self.base_url, self.model, api_key_env=self.api_key_env, endpoint=self.endpoint,
                timeout_s=self.timeout_s, max_retries=self.max_retries,
                backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s,
            )
        raise ValueError(f"unknown LLM backend {self.backend!r}")  # unreachable while validated


class TokenCounter:
    """Counts the tokens of texts with a local Hugging Face ``tokenizer.json`` (no special tokens)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # an optional dependency until pyproject lists it
            raise ImportError("token counting needs the `tokenizers` package (pip install tokenizers)") from exc
        if os.path.isdir(self.path):
            self.path = os.path.join(self.path, "tokenizer.json")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"tokenizer file not found: {self.path}")
        try:
            self._tokenizer = Tokenizer.from_file(self.path)
        except Exception as exc:  # noqa: BLE001 - the Rust error type is not importable; name the file
            raise ValueError(f"{self.path}: not a usable tokenizer.json: {exc}") from exc

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        """Tokens in each of ``texts`` (encoded in parallel)."""
        if not texts:
            return []
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def __repr__(self) -> str:
        return f"TokenCounter({self.path!r})"
