"""The ``train`` command group: train classifiers on labelled documents (``curator train ...``).

``fasttext`` trains a DCLM-style fastText quality classifier; ``encoder-head`` trains a head on a
frozen BERT/DeBERTa encoder (FineWeb-Edu's recipe) from annotated data, e.g. the output of
``classify.annotate_edu``. Also runnable on its own: ``python -m classifiers.train_cli ...``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from classifiers.fasttext_quality import (
    DEFAULT_MAX_CHARS,
    FastTextParams,
    LabelRule,
    TrainingError,
    TrainingReport,
    train_quality_classifier,
)
from classifiers.labelled_data import LabelledDataError

_DEFAULTS = FastTextParams()


@click.group()
def train() -> None:
    """Train classifiers on labelled documents (JSONL or Parquet)."""


@train.command("fasttext")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file to write (.bin); the training report goes next to it (NAME.report.json).")
@click.option("--text-column", default="text", show_default=True, help="The column holding the document text.")
@click.option("--label-column", default="label", show_default=True, help="The column holding the label.")
@click.option("--positive", required=True,
              help="The label value of high-quality documents (a string or number: hq, 1, true, ...).")
@click.option("--negative", "negatives", multiple=True,
              help="A label value of the negative class (repeatable). Default: every value but the positive "
                   "one; when given, rows with any other value are skipped and counted.")
@click.option("--valid-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Share of rows held out to report accuracy, precision, recall and ROC AUC.")
@click.option("--max-chars", type=click.IntRange(min=0), default=DEFAULT_MAX_CHARS, show_default=True,
              help="Use only the first N characters of each text (0: all); the stage's max_chars should match.")
@click.option("--dim", type=click.IntRange(min=1), default=_DEFAULTS.dim, show_default=True,
              help="Size of the word vectors.")
@click.option("--epoch", type=click.IntRange(min=1), default=_DEFAULTS.epoch, show_default=True,
              help="Passes over the training data (small data sets need more).")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=_DEFAULTS.lr, show_default=True,
              help="Learning rate.")
@click.option("--word-ngrams", type=click.IntRange(min=1), default=_DEFAULTS.word_ngrams, show_default=True,
              help="Longest word n-gram used as a feature (2: bigrams, as DCLM).")
@click.option("--min-count", type=click.IntRange(min=1), default=_DEFAULTS.min_count, show_default=True,
              help="Words seen fewer times are ignored.")
@click.option("--bucket", type=click.IntRange(min=0), default=_DEFAULTS.bucket, show_default=True,
              help="Hash buckets of the word n-grams (model size: about 4 * dim * bucket bytes).")
@click.option("--loss", type=click.Choice(["softmax", "hs", "ns", "ova"]), default=_DEFAULTS.loss,
              show_default=True, help="fastText's loss function.")
@click.option("--thread", type=click.IntRange(min=1), default=_DEFAULTS.thread, show_default=True,
              help="Training threads (more than 1 makes training non-deterministic).")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True,
              help="Seed of fastText and of the shuffle and holdout split.")
def fasttext_command(inputs: tuple[Path, ...], output: Path, text_column: str, label_column: str, positive: str,
                     negatives: tuple[str, ...], valid_fraction: float, max_chars: int, dim: int, epoch: int,
                     lr: float, word_ngrams: int, min_count: int, bucket: int, loss: str, thread: int,
                     seed: int) -> None:
    """Train a fastText quality classifier (DCLM-style: lines joined by spaces, word bigrams).

    INPUTS are JSONL files (optionally .gz), Parquet files, or folders of them. The model's labels
    are __label__hq (rows labelled POSITIVE) and __label__lq (the negative rows); score documents
    with the classify.fasttext_quality stage.
    """
    try:
        LabelRule.create(positive, negatives)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--positive/--negative") from exc
    params = FastTextParams(dim=dim, epoch=epoch, lr=lr, word_ngrams=word_ngrams, min_count=min_count,
                            bucket=bucket, loss=loss, thread=thread, seed=seed)
    try:
        report = train_quality_classifier(
            inputs, output, positive=positive, negatives=negatives, text_column=text_column,
            label_column=label_column, valid_fraction=valid_fraction, max_chars=max_chars, params=params)
    except (LabelledDataError, TrainingError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_summary(report)


@train.command("encoder-head")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--encoder", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder of the encoder (config.json, model.safetensors, tokenizer.json).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the new checkpoint (the encoder's files plus head.safetensors and head.json).")
@click.option("--text-column", default="text", show_default=True, help="The column holding the document text.")
@click.option("--label-column", default="label", show_default=True,
              help="The column holding the target (e.g. edu_score from classify.annotate_edu).")
@click.option("--problem", type=click.Choice(["regression", "classification"]), default="regression",
              show_default=True, help="A regression head (numeric targets) or a classifier (label names).")
@click.option("--max-length", type=click.IntRange(min=8), default=512, show_default=True,
              help="Tokens per document given to the encoder.")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=1e-2, show_default=True)
@click.option("--valid-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True)
@click.option("--pooling", type=click.Choice(["first_token", "mean"]), default="first_token", show_default=True,
              help="What the head reads: the first token (BERT/FineWeb-Edu) or the mean of the tokens "
                   "(sentence-transformers encoders such as all-MiniLM-L6-v2).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option("--seed", type=int, default=0, show_default=True)
def encoder_head_command(inputs: tuple[Path, ...], encoder: Path, output: Path, text_column: str, label_column: str,
                         problem: str, max_length: int, epochs: int, lr: float, valid_fraction: float, pooling: str,
                         device: str, seed: int) -> None:
    """Train a linear head on a frozen encoder's pooled features (regression or classes).

    INPUTS are JSONL files (optionally .gz), Parquet files, or folders of them. Rows without text or
    without a target (a null edu_score of an unparseable annotation, say) are skipped and counted.
    """
    from collections import Counter

    from classifiers.encoder_config import CheckpointError
    from classifiers.encoder_head import HeadTrainingSettings, train_encoder_head
    from classifiers.labelled_data import input_files, read_labelled

    texts: list[str] = []
    targets: list[object] = []
    skipped: Counter[str] = Counter()
    try:
        for path in input_files(inputs):
            for record in read_labelled(path, text_column, label_column):
                if not isinstance(record.text, str) or not record.text.strip():
                    skipped["no_text"] += 1
                elif record.label is None:
                    skipped["no_label"] += 1
                elif problem == "regression" and not _is_number(record.label):
                    raise click.ClickException(f"{record.where}: target {record.label!r} is not a number "
                                               "(use --problem classification for label names)")
                else:
                    texts.append(record.text)
                    targets.append(record.label)
    except (LabelledDataError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if len(texts) < 2:
        raise click.ClickException(f"only {len(texts)} usable rows (skipped: {dict(skipped)})")
    settings = HeadTrainingSettings(problem_type="regression" if problem == "regression"
                                    else "single_label_classification", epochs=epochs, learning_rate=lr,
                                    valid_fraction=valid_fraction, seed=seed, pooling=pooling)
    try:
        report = train_encoder_head(encoder, texts, targets, output, settings, max_length=max_length, device=device)
    except (CheckpointError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    skipped_text = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
    click.echo(f"checkpoint: {output}")
    click.echo(f"rows: {report['documents']} used (train {report['train']}, held out {report['valid']}); "
               f"skipped: {skipped_text}")
    click.echo(f"validation: {report['valid_metrics']}")


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _echo_summary(report: TrainingReport) -> None:
    counts = report.counts
    skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.skipped.items())) or "none"
    click.echo(f"model: {report.model_path}")
    click.echo(f"report: {report.report_path}")
    click.echo(f"rows: read {counts.read}, positive {counts.positive}, negative {counts.negative}, "
               f"train {counts.train}, held out {counts.valid}; skipped: {skipped}")
    metrics = report.validation
    if metrics is not None:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"
        click.echo(f"validation ({metrics.rows} rows): ROC AUC {fmt(metrics.roc_auc)}, accuracy "
                   f"{fmt(metrics.accuracy)} (majority class {fmt(metrics.majority_accuracy)}), precision "
                   f"{fmt(metrics.precision)}, recall {fmt(metrics.recall)} at p >= {metrics.threshold}")
    click.echo(f"done in {report.seconds:.1f}s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    train()
