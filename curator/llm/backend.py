"""The interfaces LLM backends implement: one request at a time (HTTP servers, llama.cpp) or whole
batches at once (vLLM in process)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType

from curator.llm.requests import LLMResult, Prompt, SamplingParams

ERROR_KINDS = (
    "timeout", "connection", "http_429", "http_5xx", "http_4xx", "bad_response", "prompt_too_long", "engine_error",
)
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


class BatchBackend(ABC):
    """Answers a whole batch of requests in one call: engines that schedule requests themselves
    (vLLM's continuous batching) are fastest when handed many at once.

    ``generate_batch`` blocks (the client runs it in a thread) and, like
    :meth:`Backend.generate`, reports failed requests as results with ``error_kind`` set instead of
    raising. ``batch_size`` is how many requests the client hands over per call; the answers of a
    call are cached together when it returns.
    """

    model: str
    """The model name, part of every cache key."""
    batch_size: int = 256

    @abstractmethod
    def generate_batch(self, items: Sequence[tuple[Prompt, SamplingParams]]) -> list[LLMResult]:
        """Answer every prompt of ``items``, in order."""

    async def close(self) -> None:
        """Release what the backend holds for this caller (a shared engine stays loaded)."""


AnyBackend = Backend | BatchBackend
"""What :class:`~curator.llm.client.LLMClient` accepts."""
