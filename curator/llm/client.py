"""The LLM client: cache lookups, bounded concurrency over a backend, and the counts for the report."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from curator.llm.backend import AnyBackend, Backend, BatchBackend
from curator.llm.cache import ResponseCache
from curator.llm.requests import LLMResult, Prompt, SamplingParams, cache_key

log = logging.getLogger("curator.llm")

LATENCY_BUCKETS_PER_DECADE = 20
"""Resolution of the latency histogram: bucket edges 12% apart, so percentiles are within ~6%."""
LATENCY_FLOOR_S = 1e-3
"""Latencies at or below this fall into bucket 0."""
_FAILURES_LOGGED_PER_CALL = 10

_Settle = Callable[[str, list[int], LLMResult], None]


def _latency_bucket(seconds: float) -> int:
    if seconds <= LATENCY_FLOOR_S:
        return 0
    return 1 + math.floor(math.log10(seconds / LATENCY_FLOOR_S) * LATENCY_BUCKETS_PER_DECADE)


def _bucket_midpoint(bucket: int) -> float:
    if bucket == 0:
        return LATENCY_FLOOR_S
    return LATENCY_FLOOR_S * 10 ** ((bucket - 0.5) / LATENCY_BUCKETS_PER_DECADE)  # geometric middle


@dataclass
class LLMStats:
    """Counts of one client (or, merged, of many shards): what was sent, answered, failed, retried.

    ``requests`` are prompts sent to the backend (cache hits and duplicates within a batch are not
    sent); ``attempts`` are HTTP attempts, retries included. Tokens and latencies count answered
    requests only. Latencies are end to end (retries included), kept as a log-spaced histogram so
    that merged stats still give percentiles.
    """

    requests: int = 0
    attempts: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    tokens_in: int = 0
    tokens_out: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0
    latency_histogram: Counter[int] = field(default_factory=Counter)

    def record(self, result: LLMResult) -> None:
        """Count one result that came back from the backend."""
        self.requests += 1
        self.attempts += result.attempts
        self.retries.update(result.retries)
        if result.ok:
            self.successes += 1
            self.tokens_in += result.tokens_in
            self.tokens_out += result.tokens_out
            self.latency_sum_s += result.latency_s
            self.latency_max_s = max(self.latency_max_s, result.latency_s)
            self.latency_histogram[_latency_bucket(result.latency_s)] += 1
        else:
            self.failures[result.error_kind or "unknown"] += 1

    def add(self, other: LLMStats) -> None:
        """Accumulate another client's (or shard's) counts into this one."""
        self.requests += other.requests
        self.attempts += other.attempts
        self.cache_hits += other.cache_hits
        self.deduplicated += other.deduplicated
        self.successes += other.successes
        self.failures.update(other.failures)
        self.retries.update(other.retries)
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.latency_sum_s += other.latency_sum_s
        self.latency_max_s = max(self.latency_max_s, other.latency_max_s)
        self.latency_histogram.update(other.latency_histogram)

    def merge(self, other: LLMStats) -> LLMStats:
        """New stats holding the counts of both."""
        out = LLMStats()
        out.add(self)
        out.add(other)
        return out

    def latency_percentile(self, q: float) -> float | None:
        """The latency (seconds) below which a fraction ``q`` of answered requests fall, or None."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile fraction must be in [0, 1], not {q}")
        total = sum(self.latency_histogram.values())
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for bucket in sorted(self.latency_histogram):
            seen += self.latency_histogram[bucket]
            if seen >= rank:
                return min(_bucket_midpoint(bucket), self.latency_max_s)
        return self.latency_max_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for the per-shard stats files and the report)."""
        mean = self.latency_sum_s / self.successes if self.successes else None
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "cache_hits": self.cache_hits,
            "deduplicated": self.deduplicated,
            "successes": self.successes,
            "failures": dict(sorted(self.failures.items())),
            "retries": dict(sorted(self.retries.items())),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_s": {
                "p50": self.latency_percentile(0.5),
                "p90": self.latency_percentile(0.9),
                "p99": self.latency_percentile(0.99),
                "mean": mean,
                "max": self.latency_max_s if self.successes else None,
                "sum": self.latency_sum_s,
            },
            "latency_histogram": {
                "floor_s": LATENCY_FLOOR_S,
                "buckets_per_decade": LATENCY_BUCKETS_PER_DECADE,
                "counts": {str(b): n for b, n in sorted(self.latency_histogram.items())},
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LLMStats:
        """Inverse of :meth:`to_json`."""
        histogram = data.get("latency_histogram") or {}
        if histogram and (
            histogram.get("buckets_per_decade") != LATENCY_BUCKETS_PER_DECADE
            or histogram.get("floor_s") != LATENCY_FLOOR_S
        ):
            raise ValueError(f"latency histogram with another bucket layout: {histogram.get('buckets_per_decade')}")
        latency = data.get("latency_s") or {}
        return cls(
            requests=int(data.get("requests", 0)),
            attempts=int(data.get("attempts", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            deduplicated=int(data.get("deduplicated", 0)),
            successes=int(data.get("successes", 0)),
            failures=Counter({str(k): int(v) for k, v in (data.get("failures") or {}).items()}),
            retries=Counter({str(k): int(v) for k, v in (data.get("retries") or {}).items()}),
            tokens_in=int(data.get("tokens_in", 0)),
            tokens_out=int(data.get("tokens_out", 0)),
            latency_sum_s=float(latency.get("sum") or 0.0),
            latency_max_s=float(latency.get("max") or 0.0),
            latency_histogram=Counter({int(k): int(v) for k, v in (histogram.get("counts") or {}).items()}),
        )


class LLMClient:
    """Answers batches of requests through a backend, reading and filling a response cache.

    Cache hits are never sent. Identical requests within a batch are sent once. The others go to
    the backend with at most ``concurrency`` in flight; each answer is written to the cache as it
    arrives, so a killed run loses only the requests in flight and a rerun sends only the rest.

    The bound is per call: threads sharing one client through :meth:`generate` each get their own
    ``concurrency`` requests in flight.
    """

    def __init__(self, backend: AnyBackend, cache: ResponseCache | None = None, concurrency: int = 16) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.backend = backend
        self.cache = cache
        self.concurrency = concurrency
        self._stats = LLMStats()
        self._stats_lock = threading.Lock()  # sync callers may share a client across threads

    @property
    def stats(self) -> LLMStats:
        """A snapshot of this client's counts so far."""
        with self._stats_lock:
            return LLMStats().merge(self._stats)

    def key(self, prompt: Prompt, params: SamplingParams) -> str:
        """The cache key of a request to this client's model."""
        return cache_key(self.backend.model, prompt, params)

    async def agenerate(self, items: Sequence[tuple[Prompt, SamplingParams]],
                        limiter: asyncio.Semaphore | None = None) -> list[LLMResult]:
        """Results for ``items``, in order: answers, or failures with their error kind.

        ``limiter`` bounds the requests in flight across overlapping calls that share it (each
        call alone is bounded by ``concurrency``): a caller can start the next batch while the
        last requests of this one are still out, without exceeding the bound. Batch backends
        ignore it.
        """
        keys = [self.key(prompt, params) for prompt, params in items]
        results: list[LLMResult | None] = [None] * len(items)
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key in hits:
                results[index] = hits[key]
            else:
                todo.setdefault(key, []).append(index)
        with self._stats_lock:
            self._stats.cache_hits += len(items) - sum(len(indexes) for indexes in todo.values())
        failed: list[str] = []

        def settle(key: str, indexes: list[int], result: LLMResult) -> None:
            with self._stats_lock:
                self._stats.record(result)
                self._stats.deduplicated += len(indexes) - 1
            if self.cache is not None:
                self.cache.put(key, result)
            if not result.ok:
                failed.append(key)
                level = logging.WARNING if len(failed) <= _FAILURES_LOGGED_PER_CALL else logging.DEBUG
                log.log(level, "LLM request %s failed [%s]: %s", key, result.error_kind, result.error)
            results[indexes[0]] = result
            for index in indexes[1:]:
                results[index] = replace(result, cached=result.ok)

        if isinstance(self.backend, BatchBackend):
            await self._run_batches(self.backend, items, list(todo.items()), settle)
        else:
            await self._run_workers(self.backend, items, list(todo.items()), settle, limiter)
        if len(failed) > _FAILURES_LOGGED_PER_CALL:
            log.warning(
                "%d of %d LLM requests in this batch failed (first %d logged above)",
                len(failed), len(todo), _FAILURES_LOGGED_PER_CALL,
            )
        answered = [result for result in results if result is not None]
        if len(answered) != len(items):  # a bug, never a server fault: fail loudly rather than misalign
            raise RuntimeError(f"{len(items) - len(answered)} of {len(items)} LLM requests have no result")
        return answered

    async def _run_workers(self, backend: Backend, items: Sequence[tuple[Prompt, SamplingParams]],
                           todo: list[tuple[str, list[int]]], settle: _Settle,
                           limiter: asyncio.Semaphore | None) -> None:
        """Send one request at a time per worker, ``concurrency`` workers (and a slot of ``limiter``)."""
        # A fixed pool of workers pulling from one iterator: the concurrency bound of a semaphore
        # without a task per request, so a batch of a million prompts costs no more than a small one.
        pending = iter(todo)

        async def worker() -> None:
            for key, indexes in pending:
                prompt, params = items[indexes[0]]
                if limiter is None:
                    result = await backend.generate(prompt, params)
                else:
                    async with limiter:
                        result = await backend.generate(prompt, params)
                settle(key, indexes, result)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _run_batches(self, backend: BatchBackend, items: Sequence[tuple[Prompt, SamplingParams]],
                           todo: list[tuple[str, list[int]]], settle: _Settle) -> None:
        """Hand the backend ``batch_size`` requests per call, in a thread (the call blocks)."""
        for start in range(0, len(todo), backend.batch_size):
            chunk = todo[start:start + backend.batch_size]
            answers = await asyncio.to_thread(backend.generate_batch, [items[indexes[0]] for _, indexes in chunk])
            if len(answers) != len(chunk):
                raise RuntimeError(f"{backend!r} answered {len(answers)} of {len(chunk)} requests")
            for (key, indexes), result in zip(chunk, answers):
                settle(key, indexes, result)

    def generate(self, items: Sequence[tuple[Prompt, SamplingParams]]) -> list[LLMResult]:
        """Blocking :meth:`agenerate` in a fresh event loop (fine in a Dask worker thread).

        Not for use inside a running event loop; await :meth:`agenerate` there.
        """
        return asyncio.run(self._generate_and_close(items))

    async def _generate_and_close(self, items: Sequence[tuple[Prompt, SamplingParams]]) -> list[LLMResult]:
        try:
            return await self.agenerate(items)
        finally:
            await self.backend.close()  # its connections belong to this loop, which ends here

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self.backend.close()
