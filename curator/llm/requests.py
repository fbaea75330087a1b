"""What one LLM request is made of (a prompt and sampling parameters), what comes back, and the
cache key that names a request."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

CACHE_KEY_VERSION = 1
"""Bump when the canonical form of a request changes: every cached response becomes a miss."""


class SamplingParams(BaseModel):
    """Sampling parameters sent with a request (the OpenAI field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    stop: list[str] | None = None
    seed: int | None = None


class ChatMessage(BaseModel):
    """One message of a chat prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str
    content: str


class Prompt(BaseModel):
    """A completion prompt (``text``) or a chat prompt (``messages``); exactly one of the two.

    Build one with :meth:`completion` or :meth:`chat`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = None
    messages: tuple[ChatMessage, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Prompt:
        if (self.text is None) == (self.messages is None):
            raise ValueError("a Prompt has either text (completion) or messages (chat), not both or neither")
        if self.messages is not None and not self.messages:
            raise ValueError("a chat Prompt needs at least one message")
        return self

    @classmethod
    def completion(cls, text: str) -> Prompt:
        """A prompt for the completions endpoint."""
        return cls(text=text)

    @classmethod
    def chat(cls, messages: list[dict[str, str]] | list[ChatMessage]) -> Prompt:
        """A prompt for the chat completions endpoint, from ``{"role", "content"}`` dicts."""
        return cls(messages=tuple(ChatMessage.model_validate(m) for m in messages))

    @property
    def is_chat(self) -> bool:
        """Whether this is a chat prompt."""
        return self.messages is not None

    def canonical(self) -> dict[str, Any]:
        """The JSON-able form hashed into the cache key."""
        if self.messages is not None:
            return {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}
        return {"text": self.text}


@dataclass
class LLMResult:
    """The outcome of one request: an answer (``text`` set) or a failure (``error_kind`` set).

    ``latency_s`` is end to end, retries and backoff included. ``attempts`` counts HTTP attempts;
    ``retries`` counts the retried attempts by error kind. ``cached`` marks an answer read from the
    response cache (or shared with an identical request in the same batch) instead of sent.
    """

    text: str | None
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    error_kind: str | None = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False
    retries: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the request was answered."""
        return self.error_kind is None


def cache_key(model: str, prompt: Prompt, params: SamplingParams) -> str:
    """The sha256 hex digest naming a request: model, prompt and sampling parameters.

    Hashed over canonical JSON (sorted keys, no whitespace, UTF-8), so it is stable across
    processes, machines and Python versions.
    """
    payload = {
        "v": CACHE_KEY_VERSION,
        "model": model,
        "prompt": prompt.canonical(),
        "params": params.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
