"""The interface every LLM backend implements (OpenAI-compatible HTTP now; in-process engines later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from curator.llm.requests import LLMResult, Prompt, SamplingParams

ERROR_KINDS = ("timeout", "connection", "http_429", "http_5xx", "http_4xx", "bad_response")
"""The fixed vocabulary of ``LLMResult.error_kind`` (and of the retry and failure counts)."""


class Backend(ABC):
    """Answers one request at a time; the client runs many concurrently.

    ``generate`` never raises for a failed request: it retries what is worth retrying and returns
    an :class:`LLMResult` with ``error_kind`` set when it gives up. It raises only for misuse (a
    prompt the backend cannot send at all).
    """

    model: str
    """The model name, part of every cache key."""

    @abstractmethod
    async def generate(self, prompt: Prompt, params: SamplingParams) -> LLMResult:
        """Answer one prompt (with retries)."""

    async def close(self) -> None:
        """Release connections and other resources; the backend may be used again afterwards."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
