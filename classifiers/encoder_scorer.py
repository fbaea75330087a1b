"""Scoring texts with an encoder checkpoint: tokenise, batch by length, run, restore the order.

``EncoderScorer`` is what the ``classify.encoder`` stage and the benchmark use; it imports
neither the stage machinery nor Dask, so it also runs on a bare GPU machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifiers.encoder_batches import length_batches, load_tokenizer, pad_token_id
from classifiers.encoder_model import EncoderModel
from classifiers.encoder_ops import make_ops

log = logging.getLogger("classifiers.encoder")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def resolve_backend(backend: str, device: str) -> str:
    """``auto`` runs our Triton kernels on a GPU and the PyTorch operations on the CPU."""
    if backend == "auto":
        return "triton" if device.startswith("cuda") else "torch"
    return backend


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU, float32 on the CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DTYPES[dtype]


@dataclass
class ScoringStats:
    """Counts of one scoring call: documents, real and padded tokens, batches, seconds."""

    documents: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    seconds: float = 0.0
    truncated: int = 0


class EncoderScorer:
    """An encoder checkpoint ready to score texts: tokenizer, model on its device, operations."""

    def __init__(self, folder: str | Path, *, max_length: int = 512, device: str = "auto", dtype: str = "auto",
                 backend: str = "auto", batch_tokens: int = 16384, max_batch_docs: int = 256) -> None:
        self.folder = Path(folder)
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = EncoderModel.from_folder(self.folder).to(self.device, self.dtype)
        limit = self.model.config.max_position_embeddings if self.model.config.family == "bert" else max_length
        self.max_length = min(max_length, limit)
        self.tokenizer = load_tokenizer(self.folder, self.max_length)
        self.pad_id = pad_token_id(self.folder, self.model.config.pad_token_id)
        self.ops = make_ops(self.backend)
        self.batch_tokens = batch_tokens
        self.max_batch_docs = max_batch_docs

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Token ids of each text (truncated to ``max_length``) and how many were truncated."""
        encodings = self.tokenizer.encode_batch(texts)
        return [e.ids for e in encodings], sum(1 for e in encodings if e.overflowing)

    def features(self, token_ids: list[list[int]], stats: ScoringStats | None = None,
                 pooling: str | None = None) -> torch.Tensor:
        """Pooled features ``[N, hidden]`` (fp32, on the CPU) in the input order (``pooling``: see
        :meth:`EncoderModel.pooled_features`)."""
        return self._run(token_ids, stats, heads=False, pooling=pooling)

    def outputs(self, token_ids: list[list[int]], stats: ScoringStats | None = None) -> torch.Tensor:
        """Head outputs ``[N, outputs]`` (fp32, on the CPU) in the input order."""
        return self._run(token_ids, stats, heads=True)

    @torch.inference_mode()
    def _run(self, token_ids: list[list[int]], stats: ScoringStats | None, heads: bool,
             pooling: str | None = None) -> torch.Tensor:
        start = time.perf_counter()
        n = len(token_ids)
        width = self.model.head.outputs if heads and self.model.head else self.model.config.hidden_size
        out = torch.empty((n, width), dtype=torch.float32)
        for batch in length_batches(token_ids, self.batch_tokens, self.max_batch_docs, self.pad_id):
            ids = batch.ids.to(self.device, non_blocking=True)
            feats = self.model.pooled_features(ids, batch.lengths, self.ops, pooling)
            result = self.model.head_outputs(feats) if heads else feats
            out[torch.as_tensor(batch.rows)] = result.float().cpu()
            if stats is not None:
                stats.batches += 1
                stats.padded_tokens += batch.ids.numel()
        if stats is not None:
            stats.documents += n
            stats.tokens += int(sum(len(t) for t in token_ids))
            stats.seconds += time.perf_counter() - start
        return out

    def score_texts(self, texts: list[str], stats: ScoringStats | None = None) -> torch.Tensor:
        """Head outputs for texts (tokenised here)."""
        ids, truncated = self.tokenize(texts)
        if stats is not None:
            stats.truncated += truncated
        return self.outputs(ids, stats)


def regression_or_probabilities(outputs: torch.Tensor, problem_type: str) -> np.ndarray:
    """Regression values as they are; classifier logits as softmax probabilities."""
    if problem_type == "regression":
        return outputs.numpy()
    return torch.softmax(outputs, dim=-1).numpy()
