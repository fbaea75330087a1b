"""A backend for any OpenAI-compatible HTTP server: vLLM, SGLang, NIM, TensorRT-LLM, llama.cpp.

Each request is retried on 429, 5xx, 408/409, timeouts, connection errors (refused, reset,
dropped mid-response) and unparseable bodies, with exponential backoff and full jitter capped at
``backoff_max_s``. A ``Retry-After`` header (seconds or an HTTP date) on a retried response is
honoured, capped at ``RETRY_AFTER_CAP_FACTOR * backoff_max_s`` so a misbehaving server cannot
park a worker for an hour. Other 4xx answers are the caller's mistake and are not retried.

The API key is read from the environment variable named in the pipeline file, when the backend
is built (and again when it is unpickled on a worker). It is sent as a bearer token and kept out
of logs, ``repr`` and pickles.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from datetime import timezone
from typing import Any, Literal

import aiohttp

from curator.llm.backend import Backend
from curator.llm.requests import LLMResult, Prompt, SamplingParams

log = logging.getLogger("curator.llm")

RETRY_AFTER_CAP_FACTOR = 4.0
"""A server's ``Retry-After`` is honoured up to this many times ``backoff_max_s``."""
_RETRIED_4XX = frozenset({408, 409})
_SNIPPET_CHARS = 300

Endpoint = Literal["completions", "chat"]


class _AttemptFailed(Exception):
    """One HTTP attempt failed: its error kind, a message naming what failed, whether to retry."""

    def __init__(self, kind: str, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class OpenAICompatibleBackend(Backend):
    """Sends requests to ``POST {base_url}/v1/completions`` or ``/v1/chat/completions``.

    ``base_url`` may end in ``/v1`` or not. ``timeout_s`` bounds one attempt from connecting to the
    last byte of the body; ``connect_timeout_s`` bounds opening the connection. ``max_retries``
    counts retries, so a request makes at most ``max_retries + 1`` attempts.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        endpoint: Endpoint = "completions",
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', not {endpoint!r}")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeout_s and connect_timeout_s must be positive")
        if max_retries < 0 or backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("max_retries, backoff_base_s and backoff_max_s must not be negative")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.endpoint: Endpoint = endpoint
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        root = self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"
        self.url = f"{root}/chat/completions" if endpoint == "chat" else f"{root}/completions"
        self._init_runtime()

    def _init_runtime(self) -> None:
        """State that is never pickled: the key, the HTTP session, the jitter source."""
        self._api_key = _read_api_key(self.api_key_env)
        # One session per event loop: a session is bound to its loop, and a backend shared by
        # several Dask worker threads (each running its own loop) must not hand one to another.
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._sessions_lock = threading.Lock()
        self._rng = random.Random()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_api_key", "_sessions", "_sessions_lock", "_rng"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"OpenAICompatibleBackend(url={self.url!r}, model={self.model!r}{key})"

    __str__ = __repr__

    async def generate(self, prompt: Prompt, params: SamplingParams) -> LLMResult:
        """Answer one prompt, retrying transient failures; never raises for a failed request."""
        payload = self._payload(prompt, params)
        session = self._session_for_running_loop()
        start = time.perf_counter()
        retries: dict[str, int] = {}
        attempt = 0
        while True:
            attempt += 1
            try:
                data = await self._attempt(session, payload)
                text, finish_reason, tokens_in, tokens_out = self._parse(data)
            except _AttemptFailed as failure:
                if not failure.retryable or attempt > self.max_retries:
                    reason = "not retried" if not failure.retryable else f"gave up after {attempt} attempts"
                    return LLMResult(
                        text=None,
                        latency_s=time.perf_counter() - start,
                        error_kind=failure.kind,
                        error=f"{failure.message} ({reason})",
                        attempts=attempt,
                        retries=retries,
                    )
                retries[failure.kind] = retries.get(failure.kind, 0) + 1
                delay = self._delay(attempt, failure.retry_after)
                log.debug("%s; retry %d of %d in %.2fs", failure.message, attempt, self.max_retries, delay)
                await asyncio.sleep(delay)
                continue
            return LLMResult(
                text=text,
                finish_reason=finish_reason,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                latency_s=time.perf_counter() - start,
                attempts=attempt,
                retries=retries,
            )

    async def close(self) -> None:
        """Close the running loop's HTTP session (a later ``generate`` opens a new one)."""
        with self._sessions_lock:
            session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()

    def _payload(self, prompt: Prompt, params: SamplingParams) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            if prompt.messages is None:
                raise ValueError(f"{self!r} is a chat backend; it cannot send a completion prompt")
            payload["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
        else:
            if prompt.text is None:
                raise ValueError(f"{self!r} is a completions backend; it cannot send a chat prompt")
            payload["prompt"] = prompt.text
        payload.update(
            temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens, n=1, stream=False
        )
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.seed is not None:
            payload["seed"] = params.seed
        return payload

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        with self._sessions_lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                session = aiohttp.ClientSession(
                    # No connection cap here: the client bounds the requests in flight.
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.connect_timeout_s),
                    headers=headers,
                )
                self._sessions[loop] = session
        return session

    async def _attempt(self, session: aiohttp.ClientSession, payload: dict[str, Any]) -> Any:
        """One POST: the decoded JSON body of a 2xx answer, or :class:`_AttemptFailed`."""
        where = f"POST {self.url}"
        try:
            async with session.post(self.url, json=payload) as response:
                status = response.status
                body = await response.read()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except asyncio.TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise _AttemptFailed("timeout", f"{where}: no complete response within {self.timeout_s}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _AttemptFailed("connection", f"{where}: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            try:
                return json.loads(body)
            except ValueError as exc:
                raise _AttemptFailed(
                    "bad_response", f"{where}: HTTP {status} with invalid JSON ({exc}): {_snippet(body)}"
                ) from None
        message = f"{where}: HTTP {status}: {_snippet(body)}"
        if status == 429:
            raise _AttemptFailed("http_429", message, retry_after=retry_after)
        if status >= 500:
            raise _AttemptFailed("http_5xx", message, retry_after=retry_after)
        if 400 <= status < 500:
            raise _AttemptFailed("http_4xx", message, retryable=status in _RETRIED_4XX, retry_after=retry_after)
        raise _AttemptFailed("bad_response", message, retryable=False)

    def _parse(self, data: Any) -> tuple[str, str | None, int, int]:
        """Text, finish reason and token counts of a decoded answer, or :class:`_AttemptFailed`."""
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
            finish_reason = choice.get("finish_reason")
            usage = data.get("usage") or {}
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            shape = f"{type(exc).__name__}: {exc}"
            raise _AttemptFailed(
                "bad_response", f"POST {self.url}: unexpected answer ({shape}): {_snippet(json.dumps(data))}"
            ) from None
        if text is None:  # chat answers with no content (e.g. only reasoning before max_tokens)
            text = ""
        if not isinstance(text, str):
            raise _AttemptFailed("bad_response", f"POST {self.url}: answer text is {type(text).__name__}, not str")
        return text, finish_reason, tokens_in, tokens_out

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before the next attempt, after ``attempt`` attempts failed."""
        if retry_after is not None:
            # The server's wait, plus a little spread so that waiting requests do not return at once.
            return min(retry_after, RETRY_AFTER_CAP_FACTOR * self.backoff_max_s) + self._rng.uniform(
                0, min(self.backoff_base_s, self.backoff_max_s)
            )
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt - 1, 62))
        return self._rng.uniform(0, ceiling)  # full jitter


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _read_api_key(env_var: str | None) -> str | None:
    if env_var is None:
        return None
    key = os.environ.get(env_var)
    if not key:
        raise ValueError(f"the API key environment variable {env_var!r} is not set (or is empty)")
    return key


def _snippet(body: bytes | str) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else f"{text[:_SNIPPET_CHARS]}... ({len(text)} chars)"
