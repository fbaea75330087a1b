"""Train a hybrid LM scorer end to end: BPE tokenizer, a small Nemotron-H model, a checkpoint folder.

The folder holds ``config.json`` and ``model.safetensors`` (loadable by :class:`HybridLM` and by
transformers' ``NemotronHForCausalLM``), ``tokenizer.json`` and ``training.json`` (the settings and
the :class:`~classifiers.scorer_training.TrainingReport`). The boundary token (id 0) is the model's
BOS, EOS and pad token: the ``classify.perplexity`` scorer prepends it to each document, as training
saw every document after one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from classifiers.hybrid_config import PATTERN_CHARS, HybridConfig
from classifiers.hybrid_model import HybridLM
from classifiers.scorer_tokenizer import (
    BOUNDARY_ID,
    TokenizerSettings,
    encode_documents,
    save_tokenizer,
    train_bpe_tokenizer,
)
from classifiers.scorer_training import (
    ScorerTrainingError,
    TrainingReport,
    TrainingSettings,
    split_documents,
    train_language_model,
)

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class ScorerShape:
    """The size of a scorer model; attention and Mamba head counts follow from ``hidden`` and ``head_dim``."""

    hidden: int = 256
    layers: str = "M-M*M-"
    """Layer pattern: M Mamba2, * attention, - MLP (Nemotron-H's ``hybrid_override_pattern``)."""
    vocab_size: int = 8192
    head_dim: int = 64
    """Head width of attention and of the Mamba2 mixer."""
    ssm_state_size: int = 64
    mlp_ratio: int = 4
    """MLP width as a multiple of ``hidden``."""
    expand: int = 2
    """Mamba2 value width as a multiple of ``hidden``."""
    chunk_size: int = 64
    tie_embeddings: bool = True

    def config(self, vocab_size: int) -> HybridConfig:
        """The model config for a tokenizer of ``vocab_size`` tokens; ScorerTrainingError when the shape is bad."""
        unknown = sorted({c for c in self.layers if c not in PATTERN_CHARS})
        problems = []
        if not self.layers or unknown:
            problems.append(f"layers {self.layers!r}: use M (Mamba2), * (attention), - (MLP)")
        if self.hidden % self.head_dim or self.hidden < self.head_dim:
            problems.append(f"hidden {self.hidden} is not a positive multiple of head_dim {self.head_dim}")
        if self.chunk_size < 16 or self.chunk_size & (self.chunk_size - 1):
            problems.append(f"chunk_size {self.chunk_size} is not a power of two >= 16")
        if problems:
            raise ScorerTrainingError("bad model shape: " + "; ".join(problems))
        heads = self.hidden // self.head_dim
        return HybridConfig(
            vocab_size=vocab_size, hidden_size=self.hidden, layer_kinds=tuple(PATTERN_CHARS[c] for c in self.layers),
            num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=self.head_dim,
            intermediate_size=self.mlp_ratio * self.hidden, mamba_num_heads=self.expand * heads,
            mamba_head_dim=self.head_dim, ssm_state_size=self.ssm_state_size, n_groups=1,
            chunk_size=self.chunk_size, tie_word_embeddings=self.tie_embeddings,
            pad_token_id=BOUNDARY_ID, bos_token_id=BOUNDARY_ID, eos_token_id=BOUNDARY_ID)


@dataclass(frozen=True)
class ScorerBuild:
    """The result of :func:`train_scorer`: where the checkpoint is and what training did."""

    directory: Path
    report: TrainingReport
    vocab_size: int
    tokenizer_seconds: float
    seconds: float


def train_scorer(texts: Sequence[str], directory: Path, shape: ScorerShape = ScorerShape(),
                 settings: TrainingSettings = TrainingSettings(), *, held_out_fraction: float = 0.05,
                 held_out_texts: Sequence[str] | None = None, min_frequency: int = 2, device: str = "cpu",
                 source: dict | None = None) -> ScorerBuild:
    """Train a tokenizer and a scorer model on ``texts`` and write the checkpoint folder ``directory``.

    The held-out loss is measured on ``held_out_texts`` when given, else on a seeded ``held_out_fraction`` of
    ``texts`` (not trained on). ``source`` (where the texts came from) goes into training.json."""
    start = time.perf_counter()
    if held_out_texts is None:
        train_idx, held_idx = split_documents(list(range(len(texts))), held_out_fraction, settings.seed)
        train_texts, held_texts = [texts[i] for i in train_idx], [texts[i] for i in held_idx]
    else:
        train_texts, held_texts = list(texts), list(held_out_texts)
    if not train_texts:
        raise ScorerTrainingError("no training texts")
    tokenizer = train_bpe_tokenizer(train_texts, TokenizerSettings(shape.vocab_size, min_frequency))
    vocab_size = tokenizer.get_vocab_size()
    if vocab_size < shape.vocab_size:
        log.warning("the tokenizer learned %d tokens, fewer than the %d asked for (too little text)",
                    vocab_size, shape.vocab_size)
    tokenizer_seconds = time.perf_counter() - start
    train_docs = encode_documents(tokenizer, train_texts)
    held_docs = encode_documents(tokenizer, held_texts)
    config = shape.config(vocab_size)
    torch.manual_seed(settings.seed)  # the conv kernels keep torch's default (seeded) initialisation
    model = HybridLM(config, use_kernels=False)
    model.init_weights(seed=settings.seed)
    log.info("tokenizer: %d tokens in %.1fs; model %s (%s parameters)", vocab_size, tokenizer_seconds,
             config.pattern, f"{sum(p.numel() for p in model.parameters()):,}")
    report = train_language_model(model, train_docs, held_docs, settings, device=device)
    model.to("cpu")
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    build = ScorerBuild(directory, report, vocab_size, tokenizer_seconds, time.perf_counter() - start)
    (directory / TRAINING_FILE).write_text(json.dumps({
        "shape": asdict(shape), "settings": asdict(settings),
        "held_out_fraction": held_out_fraction if held_out_texts is None else None,
        "min_frequency": min_frequency, "documents": len(texts), "vocab_size": vocab_size,
        "tokenizer_seconds": round(tokenizer_seconds, 3), "seconds": round(build.seconds, 3),
        "source": source or {}, "report": report.to_dict(),
    }, indent=2) + "\n")
    return build
