"""Scoring texts with a hybrid LM checkpoint: tokenise, cut into windows, batch by length, sum the NLL.

``HybridScorer`` is what the ``classify.perplexity`` stage and the benchmarks use; it imports neither the stage
machinery nor Dask, so it also runs on a bare GPU machine. Every layer is causal, so right-padded batches of
windows sorted by length give exactly the NLL of each window on its own.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from classifiers.encoder_batches import length_batches
from classifiers.encoder_config import CheckpointError
from classifiers.encoder_scorer import resolve_backend, resolve_device, resolve_dtype
from classifiers.hybrid_model import HybridLM

log = logging.getLogger("classifiers.hybrid")


@dataclass
class PerplexityStats:
    """Counts of one scoring call: documents, scored and padded tokens, windows, batches, seconds."""

    documents: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    windows: int = 0
    batches: int = 0
    seconds: float = 0.0
    truncated: int = 0

    def add(self, other: PerplexityStats) -> None:
        """Accumulate another call's counts."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class DocumentScore:
    """One document's scored token count and summed NLL (nats); mean NLL and perplexity follow."""

    tokens: int
    nll_sum: float

    @property
    def mean_nll(self) -> float:
        """Mean negative log-likelihood per scored token (NaN for no tokens)."""
        return self.nll_sum / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        """exp(mean NLL) (NaN for no tokens)."""
        return math.exp(min(self.mean_nll, 700.0)) if self.tokens else math.nan


@dataclass(frozen=True)
class Window:
    """Token ids of one forward sequence: ``context`` leading tokens are conditioned on but not scored."""

    document: int
    ids: list[int]
    context: int


@dataclass
class WindowPlan:
    """How documents' tokens were cut into windows."""

    windows: list[Window] = field(default_factory=list)
    truncated: int = 0


def plan_windows(token_ids: list[list[int]], *, bos_id: int | None, max_tokens: int | None, window_tokens: int,
                 context_tokens: int) -> WindowPlan:
    """Cut each document (its first ``max_tokens`` tokens, or all when None) into windows of at most
    ``window_tokens`` sequence positions. The first window starts with ``bos_id`` (when given) so that the first
    token is predicted too; each later window starts with the ``context_tokens`` tokens before it (not scored), or
    with ``bos_id`` again when ``context_tokens`` is 0."""
    if context_tokens >= window_tokens:
        raise ValueError(f"context_tokens {context_tokens} must be below window_tokens {window_tokens}")
    plan = WindowPlan()
    for doc, ids in enumerate(token_ids):
        if max_tokens is not None and len(ids) > max_tokens:
            ids = ids[:max_tokens]
            plan.truncated += 1
        if not ids:
            continue
        lead = [bos_id] if bos_id is not None else []
        first = window_tokens - len(lead)
        plan.windows.append(Window(doc, lead + ids[:first], len(lead)))
        start = first
        step = window_tokens - (context_tokens or len(lead))
        while start < len(ids):
            ctx = ids[max(0, start - context_tokens):start] if context_tokens else lead
            plan.windows.append(Window(doc, ctx + ids[start:start + step], len(ctx)))
            start += step
    return plan


class HybridScorer:
    """A hybrid LM checkpoint ready to score texts: tokenizer, model on its device, windowing."""

    def __init__(self, folder: str | Path, *, max_tokens: int | None = 2048, window_tokens: int = 2048,
                 context_tokens: int = 0, device: str = "auto", dtype: str = "auto", backend: str = "auto",
                 batch_tokens: int = 16384, max_batch_docs: int = 64, prepend_bos: bool = True) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.dtype = resolve_dtype(dtype, self.device)
        if self.backend == "triton" and not self.device.startswith("cuda"):
            import os

            if os.environ.get("TRITON_INTERPRET") != "1":
                raise ValueError(f"{self.folder}: backend triton needs a CUDA device (or TRITON_INTERPRET=1), "
                                 f"got {self.device}")
        self.model = HybridLM.from_pretrained(self.folder, device=self.device, dtype=self.dtype,
                                              use_kernels=self.backend == "triton")
        path = self.folder / "tokenizer.json"
        if not path.is_file():
            raise CheckpointError(f"{path}: not found (the scorer needs the checkpoint's tokenizer.json)")
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
            raise CheckpointError(f"{path}: cannot load: {exc}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        config = self.model.config
        self.bos_id = config.bos_token_id if prepend_bos and config.bos_token_id is not None else None
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be positive or None, got {max_tokens}")
        self.max_tokens = max_tokens
        self.window_tokens = window_tokens
        self.context_tokens = context_tokens
        self.batch_tokens = batch_tokens
        self.max_batch_docs = max_batch_docs

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens (the scorer adds BOS itself)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    @torch.inference_mode()
    def score_ids(self, token_ids: list[list[int]], stats: PerplexityStats | None = None) -> list[DocumentScore]:
        """Scored token count and summed NLL of each document, in the input order."""
        start = time.perf_counter()
        plan = plan_windows(token_ids, bos_id=self.bos_id, max_tokens=self.max_tokens,
                            window_tokens=self.window_tokens, context_tokens=self.context_tokens)
        tokens = np.zeros(len(token_ids), dtype=np.int64)
        nll = np.zeros(len(token_ids), dtype=np.float64)
        sequences = [w.ids for w in plan.windows]
        batches = 0
        padded = 0
        for batch in length_batches(sequences, self.batch_tokens, self.max_batch_docs, self.pad_id):
            ids = batch.ids.to(self.device)
            lengths = batch.lengths.to(device=self.device, dtype=torch.long)
            per_token = self.model.token_nll(ids, lengths).cpu()
            for r, row in enumerate(batch.rows.tolist()):
                window = plan.windows[row]
                first = max(window.context, 1)   # position 0 is never predicted
                scored = per_token[r, first:len(window.ids)]
                tokens[window.document] += scored.numel()
                nll[window.document] += float(scored.double().sum())
            batches += 1
            padded += batch.ids.numel()
        if stats is not None:
            stats.documents += len(token_ids)
            stats.tokens += int(tokens.sum())
            stats.padded_tokens += padded
            stats.windows += len(plan.windows)
            stats.batches += batches
            stats.truncated += plan.truncated
            stats.seconds += time.perf_counter() - start
        return [DocumentScore(int(t), float(s)) for t, s in zip(tokens, nll)]

    def score_texts(self, texts: list[str], stats: PerplexityStats | None = None) -> list[DocumentScore]:
        """Scores for texts (tokenised here)."""
        return self.score_ids(self.tokenize(texts), stats)
