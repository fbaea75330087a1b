"""``classify.perplexity``: per-document perplexity under a hybrid Mamba2-Transformer LM (Nemotron-H).

The checkpoint is a local folder (config.json, safetensors, tokenizer.json): a Nemotron-H base model, or one
trained by ``curator train-scorer``. On a GPU the model runs on our Triton kernels in bf16; on the CPU on PyTorch in
fp32. Documents are scored over their first ``max_tokens`` tokens (or whole, ``max_tokens: null``) in windows of
``window_tokens``.

Columns added (``output`` names them): ``<output>`` (float32 perplexity, exp of the mean NLL),
``<output>_nll`` (float32 mean negative log-likelihood per token, nats) and ``<output>_tokens`` (int32 tokens
scored). A null or empty text gets null scores and 0 tokens (never a made-up score); such rows are counted in the
log. Lower is more like the scorer's training data: a filter such as ``perplexity <= 300`` or a
``classify.ensemble`` entry (with ``invert: true``) reads these columns.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from classifiers.model_stage import ModelScoringStage
from curator.columns import put_column
from curator.stage import PathParam

log = logging.getLogger("classifiers.hybrid")


class PerplexityScore(ModelScoringStage):
    """Per-document perplexity under a local Nemotron-H (hybrid Mamba2-Transformer) checkpoint."""

    name = "classify.perplexity"
    requires = ("text",)

    model_path: PathParam = Field(..., description=(
        "Checkpoint folder: config.json, model.safetensors (or a sharded index) and tokenizer.json; relative to "
        "the pipeline file. `curator train-scorer` writes one."))
    column: str = Field("text", description="The column holding the text to score.")
    output: str = Field("perplexity", description="Name of the perplexity column (and prefix of the others).")
    max_tokens: int | None = Field(2048, ge=1, description=(
        "Score the first N tokens of each document; null scores the whole document."))
    window_tokens: int = Field(2048, ge=16, description=(
        "Longest sequence one forward pass sees; longer documents are scored in consecutive windows."))
    context_tokens: int = Field(0, ge=0, description=(
        "Tokens of the previous window each later window is conditioned on (not scored again)."))

    @model_validator(mode="after")
    def _check(self) -> PerplexityScore:
        if self.context_tokens >= self.window_tokens:
            raise ValueError(f"context_tokens {self.context_tokens} must be below window_tokens {self.window_tokens}")
        return self

    def required_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        extra = [self.output, f"{self.output}_nll", f"{self.output}_tokens"]
        return [*input_columns, *(c for c in extra if c not in input_columns)]

    def setup(self) -> None:
        """Load the checkpoint onto the device (once per worker process)."""
        if self._scorer is not None:
            return
        from classifiers.hybrid_scorer import HybridScorer

        try:
            scorer = HybridScorer(self.model_path, max_tokens=self.max_tokens, window_tokens=self.window_tokens,
                                  context_tokens=self.context_tokens, device=self.device, dtype=self.dtype,
                                  backend=self.backend, batch_tokens=self.batch_tokens)
        except (OSError, ValueError, RuntimeError) as exc:
            raise type(exc)(f"stage {self.name}: {exc}") from exc
        log.info("stage %s: %s on %s (%s, %s)", self.name, self.model_path, scorer.device, scorer.backend,
                 str(scorer.dtype).removeprefix("torch."))
        self._scorer = scorer

    def process(self, batch: pa.Table) -> pa.Table:
        self.setup()
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        texts = batch.column(self.column).to_pylist()
        present = [i for i, t in enumerate(texts) if t]
        if len(present) < len(texts):
            log.info("stage %s: %d of %d documents have no text and get no perplexity", self.name,
                     len(texts) - len(present), len(texts))
        n = batch.num_rows
        ppl = np.full(n, np.nan, dtype=np.float32)
        nll = np.full(n, np.nan, dtype=np.float32)
        tokens = np.zeros(n, dtype=np.int32)
        if present:
            for row, score in zip(present, self._scorer.score_texts([texts[i] for i in present])):
                tokens[row] = score.tokens
                if score.tokens:
                    ppl[row], nll[row] = score.perplexity, score.mean_nll
        valid = tokens > 0
        out = put_column(batch, self.output, pa.array(ppl, pa.float32(), mask=~valid))
        out = put_column(out, f"{self.output}_nll", pa.array(nll, pa.float32(), mask=~valid))
        return put_column(out, f"{self.output}_tokens", pa.array(tokens, pa.int32()))
