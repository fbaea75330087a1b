"""LLM settings as they appear in pipeline files, and token counting with a model's tokenizer.

``LLMConfig`` is a pydantic model a stage takes as one parameter (``llm:``); ``build_backend()``
turns it into a backend. Three backends: ``openai`` (any OpenAI-compatible HTTP server),
``llama_cpp`` (a GGUF model in process, on the CPU) and ``vllm`` (vLLM in process, on a GPU).
Fields that belong to one backend are refused with another, so a typo'd switch of backend does
not silently ignore half of the settings.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curator.llm.backend import AnyBackend
from curator.llm.engines import shared_engine
from curator.stage import PathParam

BackendName = Literal["openai", "llama_cpp", "vllm"]
"""Backends a pipeline file may name."""

_BACKEND_FIELDS: dict[str, tuple[str, ...]] = {
    "openai": ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s"),
    "llama_cpp": ("model_path", "n_ctx", "n_threads", "chat_format"),
    "vllm": ("engine_args", "batch_size"),
}


class LLMConfig(BaseModel):
    """Which model to call and how: backend, endpoint or model file, concurrency, timeouts and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = Field("openai", description=(
        "openai: any OpenAI-compatible HTTP server (vLLM, SGLang, NIM, TensorRT-LLM, llama.cpp server); "
        "llama_cpp: a GGUF model in process on the CPU (the llm extra); vllm: vLLM in process on a GPU."))
    model: str | None = Field(None, min_length=1, description=(
        "Model name: sent with every HTTP request, loaded by vllm, and part of every cache key "
        "(llama_cpp: defaults to the GGUF file name)."))
    endpoint: Literal["completions", "chat"] = Field("chat", description=(
        "chat: the model's chat template formats the prompt; completions: the prompt text is sent as is."))
    concurrency: int = Field(16, ge=1, description="Requests in flight at once, per shard task.")
    # openai
    base_url: str = Field("http://127.0.0.1:8000", description="openai: server address (with or without /v1).")
    api_key_env: str | None = Field(None, description=(
        "openai: environment variable holding the API key (the key itself never goes in a pipeline file)."))
    timeout_s: float = Field(300.0, gt=0, description="openai: seconds allowed for one complete answer.")
    max_retries: int = Field(5, ge=0, description=(
        "openai: retries of a request after timeouts, 429s, 5xx and dropped connections."))
    backoff_base_s: float = Field(1.0, ge=0, description="openai: first backoff ceiling (doubles per retry).")
    backoff_max_s: float = Field(60.0, ge=0, description="openai: largest backoff between two attempts.")
    # llama_cpp
    model_path: PathParam | None = Field(None, description=(
        "llama_cpp: the GGUF file (in a pipeline file, relative to the file)."))
    n_ctx: int = Field(4096, ge=256, description="llama_cpp: context length in tokens (prompt plus answer).")
    n_threads: int = Field(1, ge=1, description=(
        "llama_cpp: CPU threads per model; the local cluster runs one single-threaded worker per core, "
        "so 1 keeps every core busy without oversubscribing them."))
    chat_format: str | None = Field(None, description=(
        "llama_cpp: chat template name (gemma, chatml, ...) for a GGUF without one (chat endpoint only)."))
    # vllm
    engine_args: dict[str, Any] = Field(default_factory=dict, description=(
        "vllm: keyword arguments of vllm.LLM (tensor_parallel_size, max_model_len, dtype, ...)."))
    batch_size: int = Field(256, ge=1, description="vllm: requests handed to the engine per call.")

    @model_validator(mode="after")
    def _check_backend_fields(self) -> LLMConfig:
        fields = type(self).model_fields
        # A dumped and reloaded config sets every field: only values off their default are foreign.
        foreign = [f"{name} (a setting of backend {other})" for other, names in _BACKEND_FIELDS.items()
                   if other != self.backend for name in names
                   if getattr(self, name) != fields[name].get_default(call_default_factory=True)]
        if foreign:
            raise ValueError(f"not used by backend {self.backend}: {', '.join(foreign)}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs a base_url")
        if self.backend in ("openai", "vllm") and not self.model:
            raise ValueError(f"backend {self.backend} needs a model name")
        if self.backend == "llama_cpp":
            if not self.model_path:
                raise ValueError("backend llama_cpp needs model_path (a GGUF file)")
            path = os.path.abspath(os.path.expanduser(self.model_path))
            if not os.path.isfile(path):
                raise ValueError(f"GGUF model not found: {path} (scripts/setup.sh fetches the sample's model)")
            object.__setattr__(self, "model_path", path)
        return self

    @property
    def model_name(self) -> str:
        """The model name in cache keys and output rows."""
        if self.model:
            return self.model
        return os.path.basename(self.model_path or "")

    def build_backend(self) -> AnyBackend:
        """The backend these settings describe (reads the API key from its variable now)."""
        if self.backend == "openai":
            from curator.llm.openai_http import OpenAICompatibleBackend

            return OpenAICompatibleBackend(
                self.base_url, self.model_name, api_key_env=self.api_key_env, endpoint=self.endpoint,
                timeout_s=self.timeout_s, max_retries=self.max_retries,
                backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s,
            )
        if self.backend == "llama_cpp":
            from curator.llm.llama_cpp_backend import LlamaCppBackend

            return LlamaCppBackend(self.model_path or "", model=self.model_name, n_ctx=self.n_ctx,
                                   n_threads=self.n_threads, chat_format=self.chat_format)
        if self.backend == "vllm":
            from curator.llm.vllm_backend import VLLMBackend

            return VLLMBackend(self.model_name, engine_args=self.engine_args, batch_size=self.batch_size)
        raise ValueError(f"unknown LLM backend {self.backend!r}")  # unreachable while validated


class TokenCounter:
    """Counts the tokens of texts with a model's tokenizer (no special tokens).

    ``path`` is a Hugging Face ``tokenizer.json`` (or its folder), or a ``.gguf`` model, whose
    vocabulary llama.cpp loads without the weights (needs the ``llm`` extra).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            self.path = os.path.join(self.path, "tokenizer.json")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"tokenizer file not found: {self.path}")
        self._gguf = self.path.endswith(".gguf")
        if self._gguf:
            self._vocab = shared_engine(("llama_cpp_vocab", os.path.abspath(self.path)), self._load_gguf_vocab)
            return
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(self.path)
        except Exception as exc:  # noqa: BLE001 - the Rust error type is not importable; name the file
            raise ValueError(f"{self.path}: not a usable tokenizer.json: {exc}") from exc
        # A tokenizer.json saved for a model's inputs may pad or truncate every sequence (the MiniLM one to 128):
        # counts must be of the text as it is.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def _load_gguf_vocab(self) -> Any:
        from curator.llm.llama_cpp_backend import _import_llama

        try:
            return _import_llama()(model_path=self.path, vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path}: not a usable GGUF model: {exc}") from exc

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        if self._gguf:
            return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        """Tokens in each of ``texts`` (encoded in parallel for tokenizer.json)."""
        if not texts:
            return []
        if self._gguf:
            return [self.count(text) for text in texts]
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def __repr__(self) -> str:
        return f"TokenCounter({self.path!r})"
