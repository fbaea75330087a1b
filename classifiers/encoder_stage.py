"""``classify.encoder``: score documents with a BERT or DeBERTa-v2 classifier checkpoint.

The checkpoint is a local Hugging Face folder (config.json, model.safetensors, tokenizer.json)
with a head: ``*ForSequenceClassification`` (regression or classes), NVIDIA's quality-classifier
form (``fc`` on the first token), or one trained by ``curator train encoder-head``. On a GPU the
encoder runs on our Triton kernels in bf16; on the CPU on PyTorch in fp32.

Columns added (``output`` names them):
- regression heads: ``<output>`` (float32), and with ``integer_range`` ``<output>_int`` (int8,
  the value rounded and clipped to the range, as FineWeb-Edu's ``int_score``);
- classifier heads: ``<output>`` (float32, the expected ``label_values`` under the softmax; by
  default the class index) and ``<output>_label`` (the most probable label's name).
A null text gets null columns (never a made-up score); such rows are counted in the log.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from classifiers.model_stage import ModelScoringStage
from curator.columns import put_column
from curator.stage import PathParam

log = logging.getLogger("classifiers.encoder")


class EncoderClassifier(ModelScoringStage):
    """Score documents with a local BERT/DeBERTa-v2 classifier checkpoint (Triton kernels on GPU)."""

    name = "classify.encoder"
    requires = ("text",)

    model_path: PathParam = Field(..., description=(
        "Checkpoint folder: config.json, model.safetensors (with a head) and tokenizer.json; relative to the "
        "pipeline file."))
    column: str = Field("text", description="The column holding the text to score.")
    output: str = Field("encoder_score", description="Name of the score column (and prefix of the others).")
    max_length: int = Field(512, ge=8, description="Tokens per document; longer documents are truncated.")
    integer_range: tuple[int, int] | None = Field(None, description=(
        "Regression heads: also write <output>_int, the score rounded and clipped to [lo, hi] (e.g. [0, 5])."))
    label_values: dict[str, float] | None = Field(None, description=(
        "Classifier heads: the value of each label for <output> (expected value under the softmax); "
        "default: the class index."))

    @model_validator(mode="after")
    def _check(self) -> EncoderClassifier:
        if self.integer_range is not None and self.integer_range[0] > self.integer_range[1]:
            raise ValueError(f"integer_range {list(self.integer_range)}: lower bound above upper bound")
        return self

    def required_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        extra = [self.output]
        if self.integer_range is not None:
            extra.append(f"{self.output}_int")
        extra.append(f"{self.output}_label")
        return [*input_columns, *(c for c in extra if c not in input_columns)]

    def setup(self) -> None:
        """Load the checkpoint onto the device (once per worker process)."""
        if self._scorer is not None:
            return
        from classifiers.encoder_scorer import EncoderScorer

        try:
            scorer = EncoderScorer(self.model_path, max_length=self.max_length, device=self.device, dtype=self.dtype,
                                   backend=self.backend, batch_tokens=self.batch_tokens)
        except (OSError, ValueError) as exc:
            raise type(exc)(f"stage {self.name}: {exc}") from exc
        head = scorer.model.head
        if head is None:
            raise ValueError(f"stage {self.name}: {self.model_path} has no classification or regression head "
                             "(train one with `curator train encoder-head`)")
        if self.label_values is not None and head.problem_type != "regression":
            labels = self._labels(head)
            unknown = sorted(set(self.label_values) - set(labels))
            missing = [lab for lab in labels if lab not in self.label_values]
            if unknown or missing:
                raise ValueError(f"stage {self.name}: label_values must give every label of {self.model_path} "
                                 f"({', '.join(labels)}); unknown: {unknown}, missing: {missing}")
        log.info("stage %s: %s on %s (%s, %s)", self.name, self.model_path, scorer.device, scorer.backend,
                 str(scorer.dtype).removeprefix("torch."))
        self._scorer = scorer

    @staticmethod
    def _labels(head: Any) -> list[str]:
        return list(head.labels) if head.labels else [str(i) for i in range(head.outputs)]

    def process(self, batch: pa.Table) -> pa.Table:
        from classifiers.encoder_scorer import regression_or_probabilities

        self.setup()
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        texts = batch.column(self.column).to_pylist()
        present = [i for i, t in enumerate(texts) if t is not None]
        if len(present) < len(texts):
            log.info("stage %s: %d of %d documents have no text and get no score", self.name,
                     len(texts) - len(present), len(texts))
        head = self._scorer.model.head
        n = batch.num_rows
        score = np.full(n, np.nan, dtype=np.float32)
        label: list[str | None] = [None] * n
        if present:
            values = regression_or_probabilities(self._scorer.score_texts([texts[i] for i in present]),
                                                 head.problem_type)
            idx = np.asarray(present)
            if head.problem_type == "regression":
                score[idx] = values[:, 0]
            else:
                labels = self._labels(head)
                worth = np.array([self.label_values[lab] if self.label_values else k for k, lab in enumerate(labels)],
                                 dtype=np.float64)
                score[idx] = values @ worth
                for row, best in zip(present, values.argmax(axis=1).tolist()):
                    label[row] = labels[best]
        valid = np.zeros(n, bool)
        valid[present] = True
        out = put_column(batch, self.output, pa.array(score, pa.float32(), mask=~valid))
        if self.integer_range is not None:
            lo, hi = self.integer_range
            ints = np.clip(np.rint(np.nan_to_num(score)), lo, hi).astype(np.int8)
            out = put_column(out, f"{self.output}_int", pa.array(ints, pa.int8(), mask=~valid))
        return put_column(out, f"{self.output}_label", pa.array(label, pa.string()))
