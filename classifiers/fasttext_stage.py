"""The ``classify.fasttext_quality`` stage: a fastText quality classifier's score for each document.

The score is the probability of the model's positive label (``__label__hq`` for models trained by
``curator train fasttext``), a float32 in [0, 1]. A document with no text (null, empty, or only
whitespace) gets a null score, meaning "not scored": nothing is dropped here, and the ensemble
leaves null scores out. The text is prepared exactly as in training (DCLM: lines stripped and
joined by spaces, at most ``max_chars`` characters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field, PrivateAttr, field_validator

from classifiers.fasttext_quality import (
    DEFAULT_MAX_CHARS,
    POSITIVE_LABEL,
    TRAIN_COMMAND,
    FastTextQualityModel,
    prepare_text,
)
from curator.stage import DROP_REASON, MapStage, PathParam


class FastTextQualityScore(MapStage):
    """Score each document with a fastText quality classifier: the probability of its positive label."""

    name = "classify.fasttext_quality"
    requires = ("text",)
    adds = ("fasttext_quality",)

    model_path: PathParam = Field(description=(
        "The fastText classifier (.bin); in a pipeline file a relative path is relative to the file. "
        f"Train one with `{TRAIN_COMMAND} LABELLED.jsonl --positive LABEL --output MODEL.bin`."))
    column: str = Field("text", description="The column holding the text to score.")
    output_column: str = Field("fasttext_quality", description=(
        "The column the score goes to (float32; null for documents with no text)."))
    positive_label: str = Field(POSITIVE_LABEL, description=(
        "The model's high-quality label, with or without the __label__ prefix "
        "(models from `curator train fasttext` call it __label__hq)."))
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=0, description=(
        "Only the first max_chars characters are scored (0: the whole text); use the value the model "
        "was trained with (its training report's preprocessing.max_chars). Time grows linearly with length."))

    # The loaded model: rebuilt by setup() in each process, never pickled (see __getstate__).
    _model: FastTextQualityModel | None = PrivateAttr(default=None)

    @field_validator("positive_label", "column", "output_column")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip() or value.strip() == "__label__":
            raise ValueError("must not be empty")
        return value

    @field_validator("output_column")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == DROP_REASON:
            raise ValueError(f"{DROP_REASON!r} is reserved for dropped rows")
        return value

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_model"] = None  # a fastText model cannot be pickled; workers call setup()
        state["__pydantic_private__"] = private
        return state

    def required_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return [c for c in input_columns if c != self.output_column] + [self.output_column]

    def resolved_model_path(self) -> Path:
        """The model file's absolute path (a relative ``model_path`` is taken from the CWD)."""
        return Path(self.model_path).expanduser().resolve()

    def setup(self) -> None:
        """Load the model and check it has the positive label (once; later calls do nothing)."""
        if self._model is None:
            self._model = FastTextQualityModel.load(self.resolved_model_path(), self.positive_label,
                                                    who=f"stage {self.name}: ")

    @property
    def model(self) -> FastTextQualityModel:
        """The loaded model (loading it if needed)."""
        self.setup()
        assert self._model is not None
        return self._model

    def score(self, texts: list[str | None]) -> list[float | None]:
        """The positive label's probability for each text, in one batch; ``None`` for no text."""
        lines = [prepare_text(t, self.max_chars) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        scores: list[float | None] = [None] * len(lines)
        if todo:
            probs = self.model.probabilities([lines[i] for i in todo])
            for i, prob in zip(todo, probs.tolist(), strict=True):
                scores[i] = prob
        return scores

    def process(self, batch: pa.Table) -> pa.Table:
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        column = pa.array(self.score(batch.column(self.column).to_pylist()), pa.float32())
        if self.output_column in batch.column_names:  # a second pass replaces the earlier score
            return batch.set_column(batch.column_names.index(self.output_column), self.output_column, column)
        return batch.append_column(self.output_column, column)
