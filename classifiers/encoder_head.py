"""Training a head on a frozen encoder (as FineWeb-Edu trained its classifier) and saving it.

The encoder runs once over the annotated texts to get each document's first-token features;
a linear head is then fitted on those features (AdamW, full batch or mini-batches; MSE for
regression, cross-entropy for classes). The result is a checkpoint folder the ``classify.encoder``
stage loads: the encoder's files (hard links when possible) plus ``head.safetensors`` and
``head.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifiers.encoder_scorer import EncoderScorer, ScoringStats
from classifiers.encoder_weights import HEAD_FILE, HEAD_FORMAT, HEAD_META

log = logging.getLogger("classifiers.encoder_head")

ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt", "spm.model")


@dataclass(frozen=True)
class HeadTrainingSettings:
    """How the head is fitted."""

    problem_type: str = "regression"       # or single_label_classification
    epochs: int = 200
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 0                    # 0: full batch
    pooling: str = "first_token"           # or "mean": the mean of the real tokens' final hidden states
    valid_fraction: float = 0.1
    seed: int = 0


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(n * fraction)) if fraction > 0 else 0
    if fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _loss(pred: torch.Tensor, targets: torch.Tensor, problem_type: str) -> torch.Tensor:
    if problem_type == "regression":
        return torch.nn.functional.mse_loss(pred[:, 0], targets.float())
    return torch.nn.functional.cross_entropy(pred, targets.long())


def fit_linear_head(features: torch.Tensor, targets: torch.Tensor, outputs: int, settings: HeadTrainingSettings,
                    valid: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``weight [outputs, hidden]`` and ``bias [outputs]`` on fp32 features (CPU).

    With ``valid`` (features, targets) the weights of the epoch with the lowest validation loss are
    kept (early stopping): a linear head on a few hundred documents overfits 384+ features quickly.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    hidden = features.shape[1]
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std  # standardised inside, folded back into the weights at the end
    xv = (valid[0] - mean) / std if valid is not None and len(valid[1]) else None
    weight = torch.zeros(outputs, hidden, requires_grad=True)
    bias = torch.zeros(outputs, requires_grad=True)
    if settings.problem_type == "regression":
        with torch.no_grad():
            bias.fill_(float(targets.float().mean()))
    opt = torch.optim.AdamW([weight, bias], lr=settings.learning_rate, weight_decay=settings.weight_decay)
    n = x.shape[0]
    size = settings.batch_size or n
    best = (float("inf"), weight.detach().clone(), bias.detach().clone())
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, size):
            rows = order[start:start + size]
            loss = _loss(x[rows] @ weight.t() + bias, targets[rows], settings.problem_type)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if xv is not None:
            with torch.no_grad():
                valid_loss = float(_loss(xv @ weight.t() + bias, valid[1], settings.problem_type))
            if valid_loss < best[0]:
                best = (valid_loss, weight.detach().clone(), bias.detach().clone())
    with torch.no_grad():
        w_std, b_std = (best[1], best[2]) if xv is not None else (weight.detach(), bias.detach())
        w = w_std / std
        b = b_std - (w * mean).sum(1)
    return w, b


def head_metrics(pred: torch.Tensor, targets: torch.Tensor, problem_type: str) -> dict[str, float]:
    """Validation figures: MSE and the F1 of ``>= 3`` for regression (FineWeb-Edu's threshold), accuracy for classes."""
    if len(targets) == 0:
        return {}
    if problem_type == "regression":
        p, t = pred[:, 0].double(), targets.double()
        out = {"mse": float(((p - t) ** 2).mean()), "mae": float((p - t).abs().mean()),
               "pearson": float(torch.corrcoef(torch.stack([p, t]))[0, 1]) if len(t) > 1 else 0.0}
        pos_p, pos_t = p >= 3, t >= 3
        tp = float((pos_p & pos_t).sum())
        prec = tp / max(float(pos_p.sum()), 1.0)
        rec = tp / max(float(pos_t.sum()), 1.0)
        out["f1_at_3"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return out
    return {"accuracy": float((pred.argmax(1) == targets.long()).double().mean())}


def _copy_encoder(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ENCODER_FILES:
        source = src / name
        if not source.is_file():
            continue
        target = dst / name
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def train_encoder_head(checkpoint: str | Path, texts: list[str], targets: list[Any], out_dir: str | Path,
                       settings: HeadTrainingSettings, labels: list[str] | None = None, max_length: int = 512,
                       device: str = "auto", dtype: str = "auto", backend: str = "auto") -> dict[str, Any]:
    """Train a linear head on the frozen encoder of ``checkpoint``; write the new checkpoint to ``out_dir``.

    Regression targets are numbers; class targets are label names (``labels`` fixes their order,
    default: sorted). Returns the training report (also written to ``out_dir/head_training.json``).
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if len(texts) != len(targets) or not texts:
        raise ValueError(f"train_encoder_head: {len(texts)} texts and {len(targets)} targets")
    scorer = EncoderScorer(checkpoint, max_length=max_length, device=device, dtype=dtype, backend=backend)
    stats = ScoringStats()
    ids, truncated = scorer.tokenize(texts)
    features = scorer.features(ids, stats, pooling=settings.pooling)
    if settings.problem_type == "regression":
        y = torch.tensor([float(t) for t in targets], dtype=torch.float32)
        outputs, label_names = 1, []
    else:
        label_names = list(labels) if labels else sorted({str(t) for t in targets})
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({str(t) for t in targets} - set(index))
        if unknown:
            raise ValueError(f"train_encoder_head: targets {unknown} are not among the labels {label_names}")
        y = torch.tensor([index[str(t)] for t in targets], dtype=torch.long)
        outputs = len(label_names)
    train_rows, valid_rows = _split(len(texts), settings.valid_fraction, settings.seed)
    weight, bias = fit_linear_head(features[train_rows], y[train_rows], outputs, settings,
                                   valid=(features[valid_rows], y[valid_rows]))
    pred = features @ weight.t() + bias
    report = {
        "checkpoint": str(checkpoint), "documents": len(texts), "train": int(len(train_rows)),
        "valid": int(len(valid_rows)), "truncated": truncated, "problem_type": settings.problem_type,
        "labels": label_names, "settings": settings.__dict__, "encoder_seconds": round(stats.seconds, 3),
        "device": scorer.device, "backend": scorer.backend,
        "train_metrics": head_metrics(pred[train_rows], y[train_rows], settings.problem_type),
        "valid_metrics": head_metrics(pred[valid_rows], y[valid_rows], settings.problem_type),
    }
    from safetensors.torch import save_file

    _copy_encoder(checkpoint, out_dir)
    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(out_dir / HEAD_FILE))
    meta = {"format": HEAD_FORMAT, "version": 1, "kind": "first_token", "pooling": settings.pooling,
            "problem_type": settings.problem_type, "labels": label_names, "trained_from": str(checkpoint)}
    (out_dir / HEAD_META).write_text(json.dumps(meta, indent=1) + "\n")
    (out_dir / "head_training.json").write_text(json.dumps(report, indent=1) + "\n")
    log.info("head trained on %d documents: %s", len(train_rows), report["valid_metrics"])
    return report
