"""A fault-injecting OpenAI-compatible server for tests, on 127.0.0.1 in a background thread.

Behaviour is scripted by a directive in the prompt (the completion prompt, or the last chat
message): ``[fault:SPEC]`` where SPEC is

- ``500``, ``503``, ``429``, ``400``: answer with that status; ``500x2`` does it for the first two
  attempts (the default is the first one), then answers normally. Options follow colons:
  ``429:retry-after=1`` sends ``Retry-After: 1``; ``retry-after=date+2`` sends an HTTP date 2 s ahead.
- ``always500``: answer 500 every time.
- ``stall``: on the first attempt(s), send nothing for ``stall_s`` seconds (past the client timeout).
- ``truncated``: a complete HTTP answer whose JSON body is cut in half.
- ``cut``: announce the full body length, send half of it, and close the connection.
- ``drop``: close the connection without answering.
- ``badshape``: HTTP 200 with valid JSON that is not a completion.

A normal answer is ``"ECHO: " + prompt`` with usage counts of whitespace-separated words; an
``answer`` hook given to the server replaces it: it gets the prompt and returns the text, or
``(text, finish_reason)``.
The server counts requests per prompt and the most requests ever in flight at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

_DIRECTIVE = re.compile(r"\[fault:([^\]]+)\]")


@dataclass(frozen=True)
class Fault:
    """A parsed ``[fault:...]`` directive."""

    kind: str
    times: int = 1
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        """The value of one option, or None."""
        return dict(self.options).get(name)


def parse_fault(prompt: str) -> Fault | None:
    """The fault directive in a prompt, or None."""
    match = _DIRECTIVE.search(prompt)
    if match is None:
        return None
    head, *rest = match.group(1).split(":")
    kind, _, times = head.partition("x")
    options = tuple(tuple(part.split("=", 1)) for part in rest if "=" in part)
    return Fault(kind, int(times) if times else 1, options)  # type: ignore[arg-type]


def answer_text(prompt: str) -> str:
    """What the server answers to a prompt."""
    return f"ECHO: {prompt}"


class FakeLLMServer:
    """The server; use as a context manager. ``latency_s`` delays every normal answer."""

    def __init__(self, *, latency_s: float = 0.0, stall_s: float = 5.0,
                 answer: Callable[[str], str | tuple[str, str]] | None = None) -> None:
        self.latency_s = latency_s
        self.answer = answer
        self.stall_s = stall_s
        self.url = ""
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._payloads: list[dict[str, Any]] = []
        self._auth: list[str | None] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # --- what the tests read -------------------------------------------------------------------

    def requests_for(self, prompt: str) -> int:
        """Requests received whose prompt (or last chat message) is ``prompt``."""
        with self._lock:
            return self._counts[prompt]

    @property
    def total_requests(self) -> int:
        """Requests received in all."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def max_in_flight(self) -> int:
        """The most requests being handled at one time."""
        with self._lock:
            return self._max_in_flight

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """Every request body received, in arrival order."""
        with self._lock:
            return list(self._payloads)

    @property
    def authorization_headers(self) -> list[str | None]:
        """The ``Authorization`` header of every request (None where absent)."""
        with self._lock:
            return list(self._auth)

    def reset_counts(self) -> None:
        """Forget the requests counted so far."""
        with self._lock:
            self._counts.clear()
            self._payloads.clear()
            self._auth.clear()
            self._max_in_flight = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeLLMServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-llm-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        # handler_cancellation: a handler whose client hung up (a stall past the timeout) ends.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self._stopping is not None and self._runner is not None
        self._stopping.set()
        await self._runner.cleanup()

    # --- the endpoint -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        chat = "messages" in payload
        prompt = payload["messages"][-1]["content"] if chat else payload["prompt"]
        with self._lock:
            self._counts[prompt] += 1
            attempt = self._counts[prompt]
            self._payloads.append(payload)
            self._auth.append(request.headers.get("Authorization"))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            fault = parse_fault(prompt)
            if fault is not None and (fault.kind.startswith("always") or attempt <= fault.times):
                return await self._fail(request, fault, prompt, chat)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return web.json_response(_completion(prompt, chat, payload.get("model", ""), self.answer))
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _fail(self, request: web.Request, fault: Fault, prompt: str, chat: bool) -> web.StreamResponse:
        kind = fault.kind.removeprefix("always")
        if kind.isdigit():
            headers = {}
            retry_after = fault.option("retry-after")
            if retry_after is not None and retry_after.startswith("date+"):
                headers["Retry-After"] = email.utils.formatdate(time.time() + float(retry_after[5:]), usegmt=True)
            elif retry_after is not None:
                headers["Retry-After"] = retry_after
            body = {"error": {"message": f"injected {kind}", "type": "fault"}}
            return web.json_response(body, status=int(kind), headers=headers)
        full = json.dumps(_completion(prompt, chat, "")).encode()
        if kind == "stall":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), self.stall_s)
            except asyncio.TimeoutError:
                pass
            return web.json_response(_completion(prompt, chat, ""))
        if kind == "truncated":
            return web.Response(body=full[: len(full) // 2], content_type="application/json")
        if kind == "badshape":
            return web.json_response({"object": "not a completion"})
        if kind == "cut":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(full)
            await response.prepare(request)
            await response.write(full[: len(full) // 2])
            _close(request)
            return response
        if kind == "drop":
            _close(request)
            return web.Response()  # never reaches the client: the connection is gone
        raise ValueError(f"unknown fault {fault}")


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _completion(prompt: str, chat: bool, model: str,
                answer: Callable[[str], str | tuple[str, str]] | None = None) -> dict[str, Any]:
    reply = answer(prompt) if answer is not None else answer_text(prompt)
    text, finish_reason = reply if isinstance(reply, tuple) else (reply, "stop")
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": "cmpl-fake",
        "object": "chat.completion" if chat else "text_completion",
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())},
    }
