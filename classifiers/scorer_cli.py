"""``curator train-scorer``: train a small hybrid LM scorer (Nemotron-H architecture) and its BPE tokenizer.

Also runnable on its own: ``python -m classifiers.scorer_cli --data DATA --out DIR ...``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from classifiers import scorer_builder
from classifiers.scorer_builder import TRAINING_FILE, ScorerShape
from classifiers.scorer_data import ScorerDataError, read_training_texts
from classifiers.scorer_tokenizer import TokenizerError
from classifiers.scorer_training import ScorerTrainingError, TrainingSettings

_SHAPE = ScorerShape()
_SETTINGS = TrainingSettings()


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(f"{device}: no CUDA device here", param_hint="--device")
    return device


@click.command("train-scorer")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="JSONL (optionally .gz) or Parquet file, a folder of them, or a run's dataset folder (its "
                   "Parquet shards). Repeatable.")
@click.option("--text-column", default="text", show_default=True, help="The column holding the document text.")
@click.option("--where", default=None,
              help="Train only on rows matching this condition, e.g. \"quality_label == 'high'\" (a run's High "
                   "bucket): columns, literals, comparisons, in, and, or, not.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the new checkpoint: config.json, model.safetensors, tokenizer.json, training.json.")
@click.option("--hidden", type=click.IntRange(min=16), default=_SHAPE.hidden, show_default=True,
              help="Model width (a multiple of --head-dim).")
@click.option("--layers", default=_SHAPE.layers, show_default=True,
              help="Layer pattern: M Mamba2, * attention, - MLP (Nemotron-H's hybrid_override_pattern).")
@click.option("--head-dim", type=click.IntRange(min=8), default=_SHAPE.head_dim, show_default=True,
              help="Head width of attention and Mamba2.")
@click.option("--state-size", type=click.IntRange(min=1), default=_SHAPE.ssm_state_size, show_default=True,
              help="Mamba2 state size.")
@click.option("--vocab-size", type=click.IntRange(min=257), default=_SHAPE.vocab_size, show_default=True,
              help="BPE vocabulary size (bytes and the boundary token included).")
@click.option("--untied", is_flag=True, help="Give the LM head its own weights (default: tied to the embeddings).")
@click.option("--seq-len", type=click.IntRange(min=2), default=_SETTINGS.seq_len, show_default=True,
              help="Tokens per training sequence (documents are packed, separated by the boundary token).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_SETTINGS.batch_size, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Optimizer steps (default {_SETTINGS.steps} when --max-minutes is not given).")
@click.option("--max-minutes", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Wall-clock budget of training; the learning-rate schedule follows the time used.")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=_SETTINGS.learning_rate,
              show_default=True, help="Peak learning rate (AdamW).")
@click.option("--schedule", type=click.Choice(["cosine", "linear"]), default=_SETTINGS.schedule, show_default=True,
              help="Decay after the warm-up.")
@click.option("--held-out", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.05, show_default=True,
              help="Share of documents held out to measure the loss.")
@click.option("--eval-every", type=click.IntRange(min=1), default=_SETTINGS.eval_every, show_default=True,
              help="Steps between held-out evaluations (logged).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the weights and the batches.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, cuda:N or auto. Training always runs the model's plain-PyTorch path (CUDA torch on a "
                   "GPU): the Triton kernels are forward-only and used for scoring, not training.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of torch (default: torch's).")
def train_scorer_command(data: tuple[Path, ...], text_column: str, where: str | None, out: Path, hidden: int,
                         layers: str, head_dim: int, state_size: int, vocab_size: int, untied: bool, seq_len: int,
                         batch_size: int, steps: int | None, max_minutes: float | None, lr: float, schedule: str,
                         held_out: float, eval_every: int, seed: int, device: str, threads: int | None) -> None:
    """Train a hybrid LM scorer (a small Nemotron-H: Mamba2, attention and MLP layers) and its byte-level BPE
    tokenizer on a reference corpus, e.g. the High bucket of a run, so that perplexity means "unlike the run's
    best data". Score documents with the classify.perplexity stage pointed at --out.

    Training uses the model's plain-PyTorch path on CPU or CUDA; our Triton kernels are forward-only (scoring).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    if (out / "model.safetensors").exists() or (out / TRAINING_FILE).exists():
        raise click.ClickException(f"{out}: already holds a checkpoint; choose another --out or remove it")
    shape = ScorerShape(hidden=hidden, layers=layers, vocab_size=vocab_size, head_dim=head_dim,
                        ssm_state_size=state_size, tie_embeddings=not untied)
    settings = TrainingSettings(
        seq_len=seq_len, batch_size=batch_size, steps=steps if steps or max_minutes else _SETTINGS.steps,
        max_seconds=max_minutes * 60 if max_minutes else None, learning_rate=lr,
        schedule=schedule, eval_every=eval_every, seed=seed)  # type: ignore[arg-type]
    try:
        settings.check()
        shape.config(vocab_size)
        selection = read_training_texts(data, text_column, where)
        click.echo(selection.summary(), err=True)
        if not selection.texts:
            raise click.ClickException(f"no usable text in {', '.join(map(str, data))} ({selection.summary()})")
        build = scorer_builder.train_scorer(selection.texts, out, shape, settings, held_out_fraction=held_out,
                             device=_resolve_device(device),
                             source={"data": [str(p) for p in data], "text_column": text_column, "where": where,
                                     "rows_read": selection.rows_read, "rows_used": len(selection.texts),
                                     "not_matched": selection.not_matched, "skipped": dict(selection.skipped)})
    except (ScorerDataError, ScorerTrainingError, TokenizerError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    report = build.report

    def loss(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    click.echo(f"checkpoint: {out}")
    click.echo(f"model: {report.parameters:,} parameters, {layers}, hidden {hidden}, vocab {build.vocab_size}")
    click.echo(f"training: {report.steps} steps ({report.stopped_by} budget), {report.tokens_seen:,} tokens, "
               f"{report.seconds:.1f}s on {report.device}")
    click.echo(f"loss: train {loss(report.train_loss)}, held out {loss(report.initial_held_out_loss)} -> "
               f"{loss(report.held_out_loss)} ({report.held_out_documents} documents)")


train_scorer = train_scorer_command
"""The entry point name the ``curator.commands`` group registers."""


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    train_scorer_command()
