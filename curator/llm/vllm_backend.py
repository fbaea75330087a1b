"""vLLM in process (GPU nodes: the ``vllm`` extra, installed on CUDA workers only).

vLLM schedules requests itself (continuous batching, paged KV cache), so this backend hands it
whole batches: ``LLM.generate`` for completion prompts and ``LLM.chat`` (the model's own chat
template) for chat prompts, with one ``SamplingParams`` per request. The client caches a batch's
answers when the call returns, so ``batch_size`` bounds what a killed task loses.

One engine per (model, engine arguments) per worker process, shared by the shard tasks there
(:mod:`curator.llm.engines`): a second engine would not fit on the GPU. Run one worker process
per GPU.

A prompt that vLLM refuses (longer than ``max_model_len``, for one) makes it raise for the whole
call. The backend then bisects the batch until the failing prompts are alone and reports each of
them as ``prompt_too_long`` or ``engine_error``; the others are answered. Latency is the wall time
of the ``generate`` call that answered a request (offline batching has no per-request clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from curator.llm.backend import BatchBackend
from curator.llm.engines import shared_engine
from curator.llm.requests import LLMResult, Prompt, SamplingParams

_TOO_LONG_MARKERS = ("longer than the maximum model length", "max_model_len", "too long")


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError("the vllm backend needs vLLM in the worker environment "
                          "(pip install 'curator[vllm]', on a CUDA machine)") from exc
    return vllm


class VLLMBackend(BatchBackend):
    """A model run by vLLM's offline engine in this process.

    ``model`` is what vLLM loads (a Hugging Face name or a local folder) and what cache keys name.
    ``engine_args`` go to ``vllm.LLM`` as they are (``tensor_parallel_size``, ``max_model_len``,
    ``gpu_memory_utilization``, ``dtype``, ...).
    """

    def __init__(self, model: str, engine_args: dict[str, Any] | None = None, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.model = model
        self.engine_args = dict(engine_args or {})
        self.batch_size = batch_size

    def engine(self) -> Any:
        """The ``vllm.LLM``, loaded once per process for this model and these arguments."""
        return self._engine_and_lock()[0]

    def _engine_and_lock(self) -> tuple[Any, threading.Lock]:
        key = ("vllm", self.model, tuple(sorted((k, repr(v)) for k, v in self.engine_args.items())))
        return shared_engine(key, lambda: (_import_vllm().LLM(model=self.model, **self.engine_args), threading.Lock()))

    def generate_batch(self, items: Sequence[tuple[Prompt, SamplingParams]]) -> list[LLMResult]:
        if not items:
            return []
        vllm = _import_vllm()
        llm, lock = self._engine_and_lock()
        results: list[LLMResult | None] = [None] * len(items)
        completion = [i for i, (prompt, _) in enumerate(items) if not prompt.is_chat]
        chat = [i for i, (prompt, _) in enumerate(items) if prompt.is_chat]
        with lock:  # calls from overlapping batches (or shard tasks) take turns: the engine is not thread-safe
            for indexes in (completion, chat):
                if indexes:
                    for index, result in zip(indexes, self._answer(llm, vllm, [items[i] for i in indexes])):
                        results[index] = result
        return [r for r in results if r is not None]

    def _answer(self, llm: Any, vllm: Any, items: list[tuple[Prompt, SamplingParams]]) -> list[LLMResult]:
        """Answers for prompts of one kind (all chat or all completion), bisecting around failures."""
        params = [vllm.SamplingParams(temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                                      stop=p.stop, seed=p.seed) for _, p in items]
        start = time.monotonic()
        try:
            if items[0][0].messages is not None:
                conversations = [[{"role": m.role, "content": m.content} for m in prompt.messages or ()]
                                 for prompt, _ in items]
                outputs = llm.chat(conversations, sampling_params=params, use_tqdm=False)
            else:
                outputs = llm.generate([prompt.text for prompt, _ in items], sampling_params=params, use_tqdm=False)
        except Exception as exc:  # noqa: BLE001 - vLLM raises plain ValueErrors for refused prompts
            if len(items) > 1:
                half = len(items) // 2
                return self._answer(llm, vllm, items[:half]) + self._answer(llm, vllm, items[half:])
            message = f"{self.model}: {type(exc).__name__}: {exc}"
            kind = "prompt_too_long" if any(m in str(exc) for m in _TOO_LONG_MARKERS) else "engine_error"
            return [LLMResult(text=None, error_kind=kind, error=message, latency_s=time.monotonic() - start,
                              attempts=1)]
        latency = time.monotonic() - start
        if len(outputs) != len(items):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(items)} prompts")
        results = []
        for output in outputs:
            best = output.outputs[0]
            results.append(LLMResult(
                text=best.text, finish_reason=best.finish_reason,
                tokens_in=len(output.prompt_token_ids or ()), tokens_out=len(best.token_ids or ()),
                latency_s=latency, attempts=1))
        return results

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model!r}, engine_args={self.engine_args!r}, batch_size={self.batch_size})"
