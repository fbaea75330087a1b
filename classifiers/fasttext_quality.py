"""The fastText quality classifier (DCLM's form): preprocessing, training, and the loaded model.

DCLM scores documents with a binary fastText classifier over word unigrams and bigrams
(``wordNgrams=2``); a document is one line: its lines stripped, blank ones dropped, the rest joined
by single spaces. :func:`prepare_text` does exactly that for training and inference alike, so the
two always see the same tokens.

A trained model has two labels, ``__label__hq`` (the user's positive label value) and
``__label__lq`` (every negative value), whatever the source labels were called; the training
report (JSON next to the model) records the mapping. :class:`FastTextQualityModel` reads the
positive label's probability through the C++ ``multilinePredict``: the Python wrapper's list path
is broken under numpy 2 in the ``fasttext-numpy2-wheel`` build we use.

Training runs ``fasttext.train_supervised`` in a child process (``fasttext_train_worker.py``):
fastText leaves most of its input matrix uninitialised, see :func:`_train_fasttext`.

``fasttext`` is imported inside functions, not here, so that listing stages stays fast.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from classifiers.fasttext_train_worker import EXIT_NAN
from classifiers.labelled_data import input_files, read_labelled

log = logging.getLogger("classifiers.fasttext_quality")

LABEL_PREFIX = "__label__"
POSITIVE_NAME = "hq"
NEGATIVE_NAME = "lq"
POSITIVE_LABEL = LABEL_PREFIX + POSITIVE_NAME
NEGATIVE_LABEL = LABEL_PREFIX + NEGATIVE_NAME
# fastText reads any token starting with the label prefix as a label, in training and in prediction;
# in document text it is rewritten so that a page mentioning "__label__x" cannot add a class.
ESCAPED_LABEL_PREFIX = "_label_"
DEFAULT_MAX_CHARS = 100_000
TRAIN_COMMAND = "curator train fasttext"
PREDICT_CHUNK_ROWS = 10_000
SHUFFLE_BUCKETS = 64
MAX_REPORTED_LABEL_VALUES = 50
WORKER = Path(__file__).with_name("fasttext_train_worker.py")
MMAP_THRESHOLD_BYTES = 4096  # see _train_fasttext

# Why a labelled row was not used for training (counted in the report).
SKIP_MISSING_TEXT = "missing_text"
SKIP_TEXT_NOT_STRING = "text_not_string"
SKIP_EMPTY_TEXT = "empty_text"
SKIP_MISSING_LABEL = "missing_label"
SKIP_INVALID_LABEL = "invalid_label"
SKIP_OTHER_LABEL = "other_label"


class TrainingError(RuntimeError):
    """Training could not produce a usable model (one class only, diverged to NaN, ...)."""


def prepare_text(text: str | None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The single line fastText sees for a document, as DCLM builds it: the first ``max_chars``
    characters (0: all), split into lines, each stripped, blank ones dropped, joined by single
    spaces; ``""`` for ``None``, empty or blank text. The label prefix is escaped (see module)."""
    if not text:
        return ""
    if max_chars:
        text = text[:max_chars]
    line = " ".join(part for part in (raw.strip() for raw in text.splitlines()) if part)
    if LABEL_PREFIX in line:
        line = line.replace(LABEL_PREFIX, ESCAPED_LABEL_PREFIX)
    return line


def normalise_label(label: str) -> str:
    """A fastText label with its prefix: ``hq`` and ``__label__hq`` both give ``__label__hq``."""
    label = label.strip()
    return label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label


def label_key(value: Any) -> str | None:
    """The string a source label value is matched by, or ``None`` if it cannot be a label.

    Booleans (and the strings true/false in any case) are ``true``/``false``; integral numbers are
    written without a decimal point (``1``, ``1.0`` -> ``1``); other strings are kept as they are.
    Lists, objects and NaN give ``None``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.lower() if value.lower() in ("true", "false") else value
    return None


@dataclass(frozen=True)
class LabelRule:
    """Which source label values are the positive (high-quality) class and which the negative one."""

    positive: str
    """The positive value's :func:`label_key`."""
    negatives: tuple[str, ...] = ()
    """Keys of the negative values; empty: every value but the positive one is negative."""

    @classmethod
    def create(cls, positive: Any, negatives: Iterable[Any] = ()) -> LabelRule:
        """Build a rule from raw values (strings from the command line, ints, bools, ...)."""
        pos_key = label_key(positive)
        if pos_key is None or pos_key == "":
            raise ValueError(f"not a usable positive label: {positive!r}")
        neg_keys: list[str] = []
        for value in negatives:
            key = label_key(value)
            if key is None or key == "":
                raise ValueError(f"not a usable negative label: {value!r}")
            if key == pos_key:
                raise ValueError(f"label {value!r} is given as both positive and negative")
            if key not in neg_keys:
                neg_keys.append(key)
        return cls(pos_key, tuple(neg_keys))

    def model_label(self, key: str) -> str | None:
        """``__label__hq``, ``__label__lq``, or ``None`` for a value of neither class."""
        if key == self.positive:
            return POSITIVE_LABEL
        if not self.negatives or key in self.negatives:
            return NEGATIVE_LABEL
        return None


@dataclass(frozen=True)
class FastTextParams:
    """fastText's training parameters. The defaults are DCLM's: fastText's own (dim 100, 2M hash
    buckets, softmax) with word bigrams and lr 0.1; one thread and a fixed seed make training
    deterministic. Small training sets (a few thousand documents) need more epochs and a higher lr."""

    dim: int = 100
    epoch: int = 5
    lr: float = 0.1
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 2_000_000
    loss: str = "softmax"
    thread: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "epoch", "word_ngrams", "min_count", "thread"):
            if getattr(self, name) < 1:
                raise ValueError(f"fastText parameter {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"fastText parameter lr must be > 0, got {self.lr}")
        if self.bucket < 0:
            raise ValueError(f"fastText parameter bucket must be >= 0, got {self.bucket}")
        if self.loss not in ("softmax", "hs", "ns", "ova"):
            raise ValueError(f"fastText parameter loss must be softmax, hs, ns or ova, got {self.loss!r}")

    def fasttext_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``fasttext.train_supervised``."""
        return {"dim": self.dim, "epoch": self.epoch, "lr": self.lr, "wordNgrams": self.word_ngrams,
                "minCount": self.min_count, "bucket": self.bucket, "loss": self.loss,
                "thread": self.thread, "seed": self.seed}


@dataclass
class RowCounts:
    """What happened to the labelled input rows."""

    read: int = 0
    positive: int = 0
    negative: int = 0
    train: int = 0
    valid: int = 0
    valid_positive: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Rows not used, by reason (``missing_text``, ``empty_text``, ``missing_label``, ...)."""
    label_values: Counter[str] = field(default_factory=Counter)
    """Rows per source label value (by :func:`label_key`), whether used or not."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; at most the 50 most common label values are listed."""
        values = dict(self.label_values.most_common(MAX_REPORTED_LABEL_VALUES))
        return {"read": self.read, "used": self.positive + self.negative, "positive": self.positive,
                "negative": self.negative, "train": self.train, "valid": self.valid,
                "valid_positive": self.valid_positive,
                "skipped": dict(sorted(self.skipped.items())), "skipped_total": sum(self.skipped.values()),
                "label_values": values, "distinct_label_values": len(self.label_values)}


@dataclass(frozen=True)
class ValidationMetrics:
    """Quality of the model on the held-out rows; a row is predicted positive when the positive
    label's probability is >= ``threshold``. ``None`` where a metric is undefined (no positive
    predictions for precision, one class only for recall and ROC AUC)."""

    rows: int
    positive: int
    negative: int
    threshold: float
    accuracy: float
    majority_accuracy: float
    """Accuracy of always predicting the more common class: the figure to beat."""
    precision: float | None
    recall: float | None
    roc_auc: float | None


@dataclass
class TrainingReport:
    """Everything about one training run; written as JSON next to the model."""

    model_path: str
    report_path: str
    inputs: list[str]
    text_column: str
    label_column: str
    label_rule: LabelRule
    max_chars: int
    valid_fraction: float
    params: FastTextParams
    counts: RowCounts
    validation: ValidationMetrics | None
    seconds: float
    model_labels: dict[str, str] = field(default_factory=lambda: {
        "positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL})

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "model_path": self.model_path,
            "inputs": self.inputs,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "source_labels": {"positive": self.label_rule.positive,
                              "negative": list(self.label_rule.negatives) or "every other value"},
            "model_labels": self.model_labels,
            "preprocessing": {"lines": "stripped, blank lines dropped, joined by single spaces (DCLM)",
                              "max_chars": self.max_chars},
            "params": asdict(self.params),
            "valid_fraction": self.valid_fraction,
            "counts": self.counts.to_json(),
            "validation": asdict(self.validation) if self.validation else None,
            "seconds": round(self.seconds, 3),
        }


def report_path_for(model_path: Path) -> Path:
    """Where the training report of a model goes: ``quality.bin`` -> ``quality.report.json``."""
    return model_path.with_suffix(".report.json")


def roc_auc(scores: Sequence[float] | np.ndarray, is_positive: Sequence[bool] | np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the positive rows (Mann-Whitney U, ties counted
    half); ``None`` when there are no positive or no negative rows."""
    values = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ends = np.concatenate((starts[1:], [len(ordered)]))
    mean_ranks = (starts + 1 + ends) / 2.0  # 1-based ranks start+1..end share their mean
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_ranks, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def validation_metrics(scores: np.ndarray, is_positive: np.ndarray, threshold: float = 0.5) -> ValidationMetrics:
    """:class:`ValidationMetrics` of positive-label probabilities against the true classes."""
    positive = np.asarray(is_positive, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    rows = len(positive)
    n_pos = int(positive.sum())
    true_pos = int((predicted & positive).sum())
    return ValidationMetrics(
        rows=rows, positive=n_pos, negative=rows - n_pos, threshold=threshold,
        accuracy=float((predicted == positive).mean()) if rows else 0.0,
        majority_accuracy=max(n_pos, rows - n_pos) / rows if rows else 0.0,
        precision=true_pos / int(predicted.sum()) if predicted.any() else None,
        recall=true_pos / n_pos if n_pos else None,
        roc_auc=roc_auc(scores, positive),
    )


class FastTextQualityModel:
    """A loaded fastText quality classifier: the probability of its positive label per document."""

    def __init__(self, model: Any, path: Path, positive_label: str = POSITIVE_LABEL, *, who: str = "") -> None:
        self.model = model
        self.path = path
        self.positive_label = normalise_label(positive_label)
        self.labels: list[str] = list(model.get_labels())
        if self.positive_label not in self.labels:
            raise ValueError(f"{who}fastText model {path} has no label {self.positive_label!r} "
                             f"(its labels: {', '.join(self.labels) or 'none'}); set positive_label to one of them")

    @classmethod
    def load(cls, path: str | Path, positive_label: str = POSITIVE_LABEL, *, who: str = "") -> FastTextQualityModel:
        """Load a model file; ``who`` prefixes error messages (e.g. the stage's name).

        A missing file raises ``FileNotFoundError`` saying how to train one.
        """
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_file():
            raise FileNotFoundError(
                f"{who}fastText quality model not found at {resolved}. Train one with "
                f"`{TRAIN_COMMAND} LABELLED.jsonl --positive LABEL --output {resolved}` "
                f"(JSONL or Parquet with text and label columns).")
        import fasttext  # deferred: see the module docstring

        try:
            model = fasttext.load_model(str(resolved))
        except ValueError as exc:  # fastText's message for a file that is not a model
            raise ValueError(f"{who}cannot load fastText model {resolved}: {exc}") from exc
        return cls(model, resolved, positive_label, who=who)

    def probabilities(self, lines: Sequence[str]) -> np.ndarray:
        """The positive label's probability (float32, at most 1) for each line in one C++ call.

        ``lines`` are :func:`prepare_text` outputs (one line each, no newline). fastText reports
        p + 1e-5 per label; values are clipped to 1.0 and otherwise kept as fastText gives them.
        """
        out = np.empty(len(lines), dtype=np.float32)
        if not lines:
            return out
        # k=-1: every label, so the positive one is always there, whatever its rank.
        labels, probs = self.model.f.multilinePredict([line + "\n" for line in lines], -1, 0.0, "strict")
        positive = self.positive_label
        for i, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
            out[i] = row_probs[row_labels.index(positive)]
        return np.minimum(out, np.float32(1.0))

    def probability_one(self, line: str) -> float:
        """The positive label's probability for one line through fastText's own single-line
        ``predict`` (the reference the batch path is tested against)."""
        labels, probs = self.model.predict(line, k=-1)
        return min(float(np.float32(probs[list(labels).index(self.positive_label)])), 1.0)


class _ShuffledWriter:
    """Writes lines to a file in random order with bounded memory: every line goes to one of
    several bucket files chosen at random; each bucket is then shuffled in memory and appended.
    fastText reads its training file in order, so a file sorted by label would train badly."""

    def __init__(self, directory: Path, rng: random.Random, buckets: int = SHUFFLE_BUCKETS) -> None:
        self.rng = rng
        self.paths = [directory / f"bucket-{i:03d}.txt" for i in range(buckets)]
        self.files: list[IO[str]] = [open(p, "w", encoding="utf-8", errors="replace", newline="\n")
                                     for p in self.paths]

    def __enter__(self) -> _ShuffledWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def write(self, line: str) -> None:
        """Add one line (ending in a newline)."""
        self.files[self.rng.randrange(len(self.files))].write(line)

    def close(self) -> None:
        """Close the bucket files (idempotent)."""
        for f in self.files:
            f.close()

    def finish(self, out_path: Path) -> None:
        """Write every line, shuffled, to ``out_path``."""
        self.close()
        with open(out_path, "w", encoding="utf-8", newline="\n") as out:
            for path in self.paths:
                with open(path, encoding="utf-8", newline="\n") as bucket:
                    lines = bucket.readlines()
                self.rng.shuffle(lines)
                out.writelines(lines)
                path.unlink()


def _training_line(label: str, line: str) -> str:
    return f"{label} {line}\n"


def _split_training_line(raw: str) -> tuple[str, str]:
    label, _, line = raw.rstrip("\n").partition(" ")
    return label, line


def _write_training_files(files: list[Path], text_column: str, label_column: str, rule: LabelRule,
                          max_chars: int, valid_fraction: float, seed: int, train_path: Path,
                          valid_path: Path) -> RowCounts:
    """Read, label, prepare and split every input row; write the shuffled training file and the
    validation file (fastText's format: ``__label__X text``). Rows not used are counted."""
    counts = RowCounts()
    rng = random.Random(seed)
    with _ShuffledWriter(train_path.parent, rng) as train_out, \
            open(valid_path, "w", encoding="utf-8", errors="replace", newline="\n") as valid_out:
        for path in files:
            for record in read_labelled(path, text_column, label_column):
                counts.read += 1
                label_value = record.label
                key = label_key(label_value)
                if key is not None:
                    counts.label_values[key] += 1
                text = record.text
                if label_value is None:
                    counts.skipped[SKIP_MISSING_LABEL] += 1
                    continue
                if key is None or key == "":
                    counts.skipped[SKIP_INVALID_LABEL] += 1
                    continue
                model_label = rule.model_label(key)
                if model_label is None:
                    counts.skipped[SKIP_OTHER_LABEL] += 1
                    continue
                if text is None:
                    counts.skipped[SKIP_MISSING_TEXT] += 1
                    continue
                if not isinstance(text, str):
                    counts.skipped[SKIP_TEXT_NOT_STRING] += 1
                    continue
                line = prepare_text(text, max_chars)
                if not line:
                    counts.skipped[SKIP_EMPTY_TEXT] += 1
                    continue
                if model_label == POSITIVE_LABEL:
                    counts.positive += 1
                else:
                    counts.negative += 1
                if valid_fraction and rng.random() < valid_fraction:
                    counts.valid += 1
                    counts.valid_positive += model_label == POSITIVE_LABEL
                    valid_out.write(_training_line(model_label, line))
                else:
                    counts.train += 1
                    train_out.write(_training_line(model_label, line))
        train_out.finish(train_path)
    return counts


def _check_classes(counts: RowCounts, files: list[Path], rule: LabelRule) -> None:
    """Both classes must be in the training rows, or fastText would train a one-label model."""
    train_pos = counts.positive - counts.valid_positive
    train_neg = counts.train - train_pos
    if train_pos and train_neg:
        return
    missing = "positive" if not train_pos else "negative"
    seen = ", ".join(f"{k!r}: {n}" for k, n in counts.label_values.most_common(10)) or "none"
    raise TrainingError(
        f"no {missing} training rows in {', '.join(map(str, files))} (positive label {rule.positive!r}, "
        f"negative {list(rule.negatives) or 'every other value'}; label values seen: {seen}; "
        f"rows read {counts.read}, skipped {dict(counts.skipped)})")


def _train_fasttext(train_path: Path, model_path: Path, params: FastTextParams) -> Any:
    """Train in a child process, save the model to ``model_path`` and return it loaded.

    Why a child process: fastText initialises only the first thread/10 of its input matrix
    (https://github.com/facebookresearch/fastText/issues/1061) and, in the fasttext-numpy2-wheel
    build, the rest is whatever the memory held. A fresh process gets large blocks as new, zeroed
    pages; a process that has freed large blocks before (a second training, a test session) may get
    them back, garbage included, and training then diverges to huge weights or NaN whatever the lr.
    ``MALLOC_MMAP_THRESHOLD_`` also stops glibc from raising its threshold, so every block of
    4 KB or more is mapped fresh. The uninitialised rows then start at zero (like fastText's output
    matrix), and training is deterministic.
    """
    import fasttext  # deferred: see the module docstring

    job = {"input": str(train_path), "output": str(model_path), "kwargs": params.fasttext_kwargs()}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD_BYTES))
    done = subprocess.run([sys.executable, str(WORKER), json.dumps(job)], env=env, capture_output=True,
                          text=True, check=False)
    message = done.stderr.strip()[-2000:]
    if done.returncode == EXIT_NAN:
        raise TrainingError(f"fastText training diverged (NaN) with lr={params.lr}, dim={params.dim}, "
                            f"epoch={params.epoch}: try a lower lr")
    if done.returncode != 0 or not model_path.is_file():
        raise TrainingError(f"fastText training failed (exit status {done.returncode}): {message or 'no message'}")
    return fasttext.load_model(str(model_path))


def _read_lines(path: Path) -> tuple[list[str], np.ndarray]:
    """The texts and classes (True: positive) of a file in fastText's training format."""
    lines: list[str] = []
    positive: list[bool] = []
    with open(path, encoding="utf-8", newline="\n") as f:
        for raw in f:
            label, line = _split_training_line(raw)
            lines.append(line)
            positive.append(label == POSITIVE_LABEL)
    return lines, np.asarray(positive, dtype=bool)


def _predict_file(model: FastTextQualityModel, path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positive-label probabilities and true classes of (the first ``limit``) rows of a training-format file."""
    lines, positive = _read_lines(path)
    if limit is not None:
        lines, positive = lines[:limit], positive[:limit]
    scores = np.concatenate([model.probabilities(lines[i:i + PREDICT_CHUNK_ROWS])
                             for i in range(0, len(lines), PREDICT_CHUNK_ROWS)] or [np.empty(0, np.float32)])
    return scores, positive


def _check_finite(model: Any, scores: np.ndarray) -> None:
    """A model whose weights or outputs are not finite is useless (the `fasttext` 0.9.3 source build trains to NaN)."""
    if not np.isfinite(model.get_output_matrix()).all() or not np.isfinite(scores).all():
        raise TrainingError("fastText trained a model whose outputs are not finite (NaN/inf); "
                            "try a lower lr or check the fastText build")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def train_quality_classifier(
    inputs: Iterable[str | Path],
    output: str | Path,
    *,
    positive: Any,
    negatives: Iterable[Any] = (),
    text_column: str = "text",
    label_column: str = "label",
    valid_fraction: float = 0.0,
    max_chars: int = DEFAULT_MAX_CHARS,
    params: FastTextParams = FastTextParams(),
) -> TrainingReport:
    """Train a fastText quality classifier on labelled JSONL/Parquet files and save it to ``output``.

    Rows whose label key equals ``positive`` are the positive class (``__label__hq``); rows with
    one of ``negatives`` (default: any other label) the negative one (``__label__lq``). Rows with a
    missing or empty text, a missing label, or a label of neither class are skipped and counted.
    With ``valid_fraction`` > 0, that share of the rows (drawn with ``params.seed``) is held out
    and the model's accuracy, precision, recall and ROC AUC on it are reported. The report is
    written as JSON next to the model (:func:`report_path_for`) and returned.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    start = time.perf_counter()
    rule = LabelRule.create(positive, negatives)
    files = input_files(inputs)
    output_path = Path(output).expanduser().resolve()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fasttext-train-") as tmp:
        train_path = Path(tmp) / "train.txt"
        valid_path = Path(tmp) / "valid.txt"
        counts = _write_training_files(files, text_column, label_column, rule, max_chars, valid_fraction,
                                       params.seed, train_path, valid_path)
        _check_classes(counts, files, rule)
        log.info("training fastText on %d rows (%d held out; skipped %s)", counts.train, counts.valid,
                 dict(counts.skipped))
        tmp_model = output_path.with_name(f".{output_path.name}.tmp")
        try:
            model = FastTextQualityModel(_train_fasttext(train_path, tmp_model, params), output_path)
            train_scores, _ = _predict_file(model, train_path, limit=1_000)
            valid_scores, valid_positive = _predict_file(model, valid_path)
            _check_finite(model.model, np.concatenate([train_scores, valid_scores]))
        except BaseException:
            tmp_model.unlink(missing_ok=True)
            raise
    os.replace(tmp_model, output_path)
    validation = validation_metrics(valid_scores, valid_positive) if counts.valid else None
    report = TrainingReport(
        model_path=str(output_path), report_path=str(report_path_for(output_path)),
        inputs=[str(p) for p in files], text_column=text_column, label_column=label_column, label_rule=rule,
        max_chars=max_chars, valid_fraction=valid_fraction, params=params, counts=counts,
        validation=validation, seconds=time.perf_counter() - start)
    _write_json_atomic(report_path_for(output_path), report.to_json())
    return report
