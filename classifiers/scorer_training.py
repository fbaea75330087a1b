"""The training loop of the hybrid LM scorer: packed next-token prediction with AdamW.

Documents (token ids, each starting with the boundary token, see :mod:`classifiers.scorer_tokenizer`)
are concatenated into one stream and cut into windows of ``seq_len`` tokens that overlap by one
token, so every token after the first is a target exactly once per epoch. Training runs the model's
plain-PyTorch path (``use_kernels=False``): the Triton kernels are forward-only. The learning rate
warms up linearly, then decays (cosine or linear) to ``min_lr_ratio`` of its peak, over the step
budget, or over the time budget when only that is given (the run then depends on the machine's
speed). The held-out loss is the mean next-token loss over a fixed set of held-out windows.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

class ScorerTrainingError(ValueError):
    """Training cannot start (too little text, bad settings); the message says what is missing."""


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings of :func:`train_language_model`."""

    seq_len: int = 256
    batch_size: int = 16
    steps: int | None = 1000
    """Optimizer steps; None: as many as ``max_seconds`` allows."""
    max_seconds: float | None = None
    """Wall-clock budget of the loop (evaluations included); None: no time limit."""
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    schedule: Literal["cosine", "linear"] = "cosine"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    """Steps between held-out evaluations (one more is made at the end)."""
    eval_windows: int = 64
    """Held-out windows evaluated each time (the first ones of the held-out stream)."""
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`ScorerTrainingError` when a setting is out of range."""
        if self.steps is None and self.max_seconds is None:
            raise ScorerTrainingError("give a step budget, a time budget, or both")
        problems = [
            (self.seq_len < 2, f"seq_len {self.seq_len} < 2"),
            (self.batch_size < 1, f"batch_size {self.batch_size} < 1"),
            (self.steps is not None and self.steps < 1, f"steps {self.steps} < 1"),
            (self.max_seconds is not None and self.max_seconds <= 0, f"max_seconds {self.max_seconds} <= 0"),
            (self.learning_rate <= 0, f"learning_rate {self.learning_rate} <= 0"),
            (not 0 <= self.min_lr_ratio <= 1, f"min_lr_ratio {self.min_lr_ratio} not in [0, 1]"),
            (self.schedule not in ("cosine", "linear"), f"schedule {self.schedule!r} is not cosine or linear"),
            (self.eval_every < 1, f"eval_every {self.eval_every} < 1"),
            (self.eval_windows < 1, f"eval_windows {self.eval_windows} < 1"),
        ]
        bad = [text for failed, text in problems if failed]
        if bad:
            raise ScorerTrainingError("bad training settings: " + "; ".join(bad))


@dataclass(frozen=True)
class LossPoint:
    """One evaluation: the step, the mean training loss since the previous point, the held-out loss."""

    step: int
    train_loss: float | None
    held_out_loss: float | None
    seconds: float


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did (written to ``training.json`` by the CLI)."""

    parameters: int
    steps: int
    tokens_seen: int
    """Target tokens the model was trained on (steps x batch x (seq_len - 1))."""
    train_loss: float | None
    """Mean training loss over the last evaluation interval (nats per token)."""
    held_out_loss: float | None
    """Held-out loss at the end (nats per token); None without held-out documents."""
    initial_held_out_loss: float | None
    seconds: float
    cpu_seconds: float
    """CPU time of this process during training (all threads): on a busy machine, what an idle one would need."""
    stopped_by: Literal["steps", "time"]
    train_documents: int
    held_out_documents: int
    train_tokens: int
    held_out_tokens: int
    device: str
    history: tuple[LossPoint, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def split_documents(documents: Sequence[Sequence[int]], held_out_fraction: float,
                    seed: int) -> tuple[list[Sequence[int]], list[Sequence[int]]]:
    """A seeded random split of documents into (train, held-out); at least one held-out document when the
    fraction is above 0 and there are two documents or more."""
    if not 0 <= held_out_fraction < 1:
        raise ScorerTrainingError(f"held_out_fraction {held_out_fraction} not in [0, 1)")
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = round(len(documents) * held_out_fraction)
    if held_out_fraction > 0 and len(documents) >= 2:
        n_held = max(n_held, 1)
    held = sorted(order[:n_held])
    train = sorted(order[n_held:])
    return [documents[i] for i in train], [documents[i] for i in held]


def pack_windows(documents: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """The documents' tokens as one stream cut into windows ``[n, seq_len]`` that overlap by one token
    (a tail shorter than a window is dropped). Empty when the stream is shorter than one window."""
    stream = torch.tensor([token for doc in documents for token in doc], dtype=torch.long)
    stride = seq_len - 1
    if stream.numel() < seq_len:
        return torch.empty(0, seq_len, dtype=torch.long)
    return stream.unfold(0, seq_len, stride).contiguous()


def learning_rate_at(progress: float, step: int, settings: TrainingSettings) -> float:
    """Learning rate after ``step`` steps at ``progress`` (0..1) through the budget."""
    peak = settings.learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    if settings.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        decay = 1 - progress
    return peak * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * decay)


def next_token_loss(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of predicting tokens 1.. of each window from the ones before."""
    logits = model(windows)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1))


@torch.no_grad()
def held_out_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean next-token loss over ``windows``, every target token weighted alike."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start:start + batch_size].to(device)
        targets = batch.shape[0] * (batch.shape[1] - 1)
        total += next_token_loss(model, batch).item() * targets
        count += targets
    model.train(was_training)
    return total / count


def _batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Window indices, batch by batch, endlessly: a fresh permutation each epoch."""
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        if count < batch_size:  # fewer windows than a batch: use them all each step
            yield order


def _decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices decay; vectors (norms, biases, A_log, D, dt_bias) and conv kernels do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 and "conv1d" not in name else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_language_model(model: torch.nn.Module, train_documents: Sequence[Sequence[int]],
                         held_out_documents: Sequence[Sequence[int]], settings: TrainingSettings,
                         device: str | torch.device = "cpu") -> TrainingReport:
    """Train ``model`` (called as ``model(input_ids) -> logits``) in place on packed documents."""
    settings.check()
    device = torch.device(device)
    train_windows = pack_windows(train_documents, settings.seq_len)
    train_tokens = sum(len(d) for d in train_documents)
    if train_windows.shape[0] == 0:
        raise ScorerTrainingError(f"too little training text: {train_tokens} tokens in {len(train_documents)} "
                                  f"documents, fewer than one window of seq_len {settings.seq_len}")
    eval_windows = pack_windows(held_out_documents, settings.seq_len)[:settings.eval_windows]
    if held_out_documents and eval_windows.shape[0] == 0:
        log.warning("held-out text (%d tokens) is shorter than one window of %d: no held-out loss",
                    sum(len(d) for d in held_out_documents), settings.seq_len)
    has_eval = eval_windows.shape[0] > 0
    parameters = sum(p.numel() for p in model.parameters())
    torch.manual_seed(settings.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(_decay_groups(model, settings.weight_decay), lr=settings.learning_rate,
                                  betas=settings.betas, fused=False, foreach=device.type == "cuda")
    batches = _batches(train_windows.shape[0], settings.batch_size, torch.Generator().manual_seed(settings.seed))
    log.info("training %s parameters on %d windows of %d tokens (%d held out), device %s",
             f"{parameters:,}", train_windows.shape[0], settings.seq_len, eval_windows.shape[0], device)

    start, cpu_start = time.perf_counter(), time.process_time()
    initial = held_out_loss(model, eval_windows, settings.batch_size, device) if has_eval else None
    history = [LossPoint(0, None, initial, 0.0)]
    step, tokens, stopped_by = 0, 0, "steps"
    interval_loss, interval_steps = 0.0, 0
    last_train_loss: float | None = None
    while True:
        elapsed = time.perf_counter() - start
        if settings.steps is not None and step >= settings.steps:
            break
        if settings.max_seconds is not None and elapsed >= settings.max_seconds:
            stopped_by = "time"
            break
        progress = max(step / settings.steps if settings.steps else 0.0,
                       elapsed / settings.max_seconds if settings.max_seconds else 0.0)
        lr = learning_rate_at(progress, step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = train_windows[next(batches)].to(device, non_blocking=True)
        loss = next_token_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        step += 1
        tokens += batch.shape[0] * (batch.shape[1] - 1)
        interval_loss += loss.item()
        interval_steps += 1
        if step % settings.eval_every == 0:
            last_train_loss = interval_loss / interval_steps
            history.append(_evaluate(model, eval_windows, settings, device, step, last_train_loss, start, lr,
                                     tokens))
            interval_loss, interval_steps = 0.0, 0
    if interval_steps:
        last_train_loss = interval_loss / interval_steps
        history.append(_evaluate(model, eval_windows, settings, device, step, last_train_loss, start,
                                 optimizer.param_groups[0]["lr"], tokens))
    model.eval()
    return TrainingReport(
        parameters=parameters, steps=step, tokens_seen=tokens, train_loss=last_train_loss,
        held_out_loss=history[-1].held_out_loss, initial_held_out_loss=initial,
        seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start, stopped_by=stopped_by,
        train_documents=len(train_documents), held_out_documents=len(held_out_documents), train_tokens=train_tokens,
        held_out_tokens=sum(len(d) for d in held_out_documents), device=str(device), history=tuple(history))


def _evaluate(model: torch.nn.Module, eval_windows: torch.Tensor, settings: TrainingSettings, device: torch.device,
              step: int, train_loss: float, start: float, lr: float, tokens: int) -> LossPoint:
    held = held_out_loss(model, eval_windows, settings.batch_size, device) if eval_windows.shape[0] else None
    seconds = time.perf_counter() - start
    log.info("step %d: train loss %.3f, held-out loss %s, lr %.2e, %.0f tokens/s", step, train_loss,
             "n/a" if held is None else f"{held:.3f}", lr, tokens / max(seconds, 1e-9))
    return LossPoint(step, train_loss, held, seconds)
