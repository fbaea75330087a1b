"""Streaming a shard's chunks of requests through the LLM client, one chunk ahead.

Used by the stages that call an LLM over a shard (``synth.rephrase``, ``classify.annotate_edu``):
the caller's thread iterates answered chunks while an event loop in a worker thread keeps the
server busy across chunk boundaries.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import Any, TypeVar

from curator.llm.client import LLMClient
from curator.llm.requests import LLMResult, Prompt, SamplingParams

T = TypeVar("T")


def answered_chunks(client: LLMClient, chunks: Generator[tuple[T, Sequence[tuple[Prompt, SamplingParams]]], None, None],
                    concurrency: int) -> Iterator[tuple[T, list[LLMResult]]]:
    """``(payload, answers)`` for each ``(payload, requests)`` of ``chunks``, in order.

    An event loop in a thread keeps the server busy across chunks: the next chunk is produced (in
    a worker thread) and its requests started while the last requests of this one are out, all
    sharing one bound of ``concurrency`` requests in flight. At most two chunks are in flight and
    two answered chunks wait for the caller. The client's backend is closed at the end.
    """
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    async def pump() -> None:
        limiter = asyncio.Semaphore(concurrency)
        in_flight: deque[tuple[T, asyncio.Task[list[LLMResult]]]] = deque()

        async def hand_over() -> None:
            payload, answering = in_flight.popleft()
            answers = await answering
            await asyncio.to_thread(out.put, ("chunk", (payload, answers)))

        try:
            while not stop.is_set():
                item = await asyncio.to_thread(next, chunks, None)
                if item is None:
                    break
                payload, requests = item
                in_flight.append((payload, asyncio.create_task(client.agenerate(requests, limiter))))
                if len(in_flight) > 1:  # the next chunk is on its way: hand this one over when answered
                    await hand_over()
            while in_flight and not stop.is_set():
                await hand_over()
        finally:
            for _, answering in in_flight:
                answering.cancel()
            await asyncio.gather(*(answering for _, answering in in_flight), return_exceptions=True)
            await asyncio.to_thread(chunks.close)
            await client.aclose()

    def run() -> None:
        try:
            asyncio.run(pump())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out.put(("error", exc))
        else:
            out.put(("done", None))

    thread = threading.Thread(target=run, name="annotate-requests", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # let a pump blocked on a full queue finish
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass
