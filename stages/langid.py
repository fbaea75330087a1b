"""Language identification with fastText's ``lid.176.ftz`` (the Nemotron-CC language filter).

The model file does not ship with the repository: ``python scripts/fetch_lid_model.py`` writes it
to ``models/lid.176.ftz``. ``fasttext`` is imported in ``setup()``, not here, so listing stages
stays fast.

Batches go through the C++ ``multilinePredict`` directly: the Python wrapper's list path is
broken under numpy 2 in the ``fasttext-numpy2-wheel`` build we use. fastText reads one line per
prediction, so newlines are replaced by spaces first (it would stop at the first one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from curator.columns import put_column
from curator.stage import DROP_REASON, MapStage, PathParam

LABEL_PREFIX = "__label__"
FETCH_COMMAND = "python scripts/fetch_lid_model.py"
REASON_NOT_ALLOWED = "lang_not_allowed"
REASON_LOW_SCORE = "lang_low_score"


def prepare_text(text: str | None, max_chars: int) -> str:
    """The single line fastText sees for ``text``: at most ``max_chars`` characters (0: all),
    newlines replaced by spaces, surrounding whitespace stripped ("" for None)."""
    if not text:
        return ""
    if max_chars:
        text = text[:max_chars]
    return text.replace("\n", " ").strip()


class LanguageId(MapStage):
    """Identify each document's language with fastText lid.176; keep allowed, confident ones."""

    name = "text.langid"
    requires = ("text",)
    adds = ("lang", "lang_score")

    model_path: PathParam = Field("models/lid.176.ftz", description=(
        "The fastText lid.176.ftz file; in a pipeline file a relative path is relative to the file "
        f"(the default: to the working directory). Get it with `{FETCH_COMMAND}`."))
    allowed: list[str] = Field(["en"], description=(
        "ISO codes to keep, as fastText labels them (en, de, zh, ...); other languages are "
        "dropped (reason lang_not_allowed). Empty: keep every language."))
    min_score: float = Field(0.3, ge=0.0, le=1.0, description=(
        "Drop documents whose top language scores below this (reason lang_low_score)."))
    column: str = Field("text", description="The column holding the text to identify.")
    max_chars: int = Field(10_000, ge=0, description=(
        "Only the first max_chars characters are given to fastText (0: the whole text). "
        "Prediction time grows linearly with length: 10,000 characters of web text take "
        "about 3 ms on one core."))

    # The loaded model: rebuilt by setup() in each process, never pickled (see __getstate__).
    _model: Any = PrivateAttr(default=None)
    unpicklable: ClassVar[tuple[str, ...]] = ("_model",)  # a fastText model cannot be pickled

    def resolved_model_path(self) -> Path:
        """The model file's absolute path (a relative ``model_path`` is taken from the CWD)."""
        return Path(self.model_path).expanduser().resolve()

    def setup(self) -> None:
        """Load the fastText model (once; later calls do nothing)."""
        if self._model is not None:
            return
        path = self.resolved_model_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"stage {self.name}: fastText language-ID model not found at {path} "
                f"(model_path={self.model_path!r}). Get it by running `{FETCH_COMMAND}` from "
                f"the repository root (it writes models/lid.176.ftz), or "
                f"`{FETCH_COMMAND} --out {path}`."
            )
        import fasttext  # deferred: importing it costs time every `curator stages` would pay

        try:
            self._model = fasttext.load_model(str(path))
        except ValueError as exc:  # fastText's message for a file that is not a model
            raise ValueError(f"stage {self.name}: cannot load fastText model {path}: {exc}") from exc

    def predict(self, texts: list[str | None]) -> tuple[list[str], list[float]]:
        """Top language (ISO code, no ``__label__``) and its score for each text, in one call.

        Empty or blank texts get ``("", 0.0)`` without asking the model.
        """
        self.setup()
        lines = [prepare_text(t, self.max_chars) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        langs = [""] * len(lines)
        scores = [0.0] * len(lines)
        if todo:
            labels, probs = self._model.f.multilinePredict(
                [lines[i] + "\n" for i in todo], 1, 0.0, "strict")
            for i, label, prob in zip(todo, labels, probs, strict=True):
                langs[i] = label[0].removeprefix(LABEL_PREFIX)
                # lid.176's softmax is approximate: a sure prediction can score 1.00004.
                scores[i] = min(float(prob[0]), 1.0)
        return langs, scores

    def process(self, batch: pa.Table) -> pa.Table:
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        texts = batch.column(self.column).to_pylist()
        langs, scores = self.predict(texts)
        allowed = frozenset(self.allowed)
        reasons: list[str | None] = []
        for lang, score in zip(langs, scores):
            # A low score comes first: below it, the predicted language itself is not reliable.
            if not lang or score < self.min_score:
                reasons.append(REASON_LOW_SCORE)
            elif allowed and lang not in allowed:
                reasons.append(REASON_NOT_ALLOWED)
            else:
                reasons.append(None)
        out = put_column(batch, "lang", pa.array(langs, pa.string()))
        out = put_column(out, "lang_score", pa.array(scores, pa.float32()))
        return put_column(out, DROP_REASON, pa.array(reasons, pa.string()))
