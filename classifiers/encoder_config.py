"""What the encoder classifier reads from a checkpoint folder's ``config.json``.

Two families: BERT (``model_type: bert``, absolute positions; the FineWeb-Edu and FineMath
classifiers' form) and DeBERTa-v2/v3 (``model_type: deberta-v2``, disentangled relative-position
attention; NVIDIA's quality classifier's form). Settings we do not implement are refused by name
rather than silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
               "tanh": "tanh"}
"""Hugging Face ``hidden_act`` names and the epilogue our linear kernel applies for each."""


class CheckpointError(ValueError):
    """A checkpoint folder we cannot load: names the file and what is wrong with it."""


@dataclass(frozen=True)
class EncoderConfig:
    """The shape and options of a BERT or DeBERTa-v2 encoder (and its label names, if any)."""

    family: str                       # "bert" | "deberta-v2"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    activation: str                   # an ACTIVATIONS value
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int = 0
    # DeBERTa-v2 only
    embedding_size: int | None = None
    position_biased_input: bool = True
    relative_attention: bool = False
    position_buckets: int = -1
    max_relative_positions: int = -1
    share_att_key: bool = False
    pos_att_type: tuple[str, ...] = ()
    norm_rel_ebd: tuple[str, ...] = ()
    pooler_hidden_size: int | None = None
    pooler_activation: str | None = None
    # the head, when the config describes one
    labels: tuple[str, ...] = ()
    problem_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def attention_span(self) -> int:
        """DeBERTa's ``att_span``: half the rows of the relative-position embedding used."""
        if self.position_buckets > 0:
            return self.position_buckets
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    @property
    def max_relative(self) -> int:
        """DeBERTa's ``max_relative_positions`` with its default filled in."""
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], source: str = "config.json") -> EncoderConfig:
        """Parse a Hugging Face config dict; refuse what we do not implement, naming ``source``."""
        model_type = cfg.get("model_type")
        if model_type not in ("bert", "deberta-v2"):
            raise CheckpointError(f"{source}: model_type {model_type!r} is not supported "
                                  "(supported: bert, deberta-v2)")
        act_name = cfg.get("hidden_act", "gelu")
        if act_name not in ACTIVATIONS:
            raise CheckpointError(f"{source}: hidden_act {act_name!r} is not supported ({', '.join(ACTIVATIONS)})")
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        if hidden % heads:
            raise CheckpointError(f"{source}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        if cfg.get("attention_head_size") not in (None, hidden // heads):
            raise CheckpointError(f"{source}: attention_head_size other than hidden_size / heads is not supported")
        id2label = cfg.get("id2label") or {}
        labels = tuple(str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))) if id2label else ()
        common: dict[str, Any] = dict(
            family=model_type, vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
            num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
            intermediate_size=int(cfg["intermediate_size"]), activation=ACTIVATIONS[act_name],
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2 if model_type == "bert" else 0)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12 if model_type == "bert" else 1e-7)),
            pad_token_id=int(cfg.get("pad_token_id") or 0), labels=labels,
            problem_type=cfg.get("problem_type"), raw=dict(cfg),
        )
        if model_type == "bert":
            if cfg.get("position_embedding_type", "absolute") != "absolute":
                raise CheckpointError(f"{source}: position_embedding_type {cfg['position_embedding_type']!r} "
                                      "is not supported (only absolute)")
            return cls(**common)
        if int(cfg.get("conv_kernel_size", 0) or 0) > 0:
            raise CheckpointError(f"{source}: DeBERTa-v2's convolution layer (conv_kernel_size) is not supported")
        pos_att = cfg.get("pos_att_type") or []
        if isinstance(pos_att, str):
            pos_att = [p.strip() for p in pos_att.lower().split("|") if p.strip()]
        relative = bool(cfg.get("relative_attention", False))
        if relative and sorted(pos_att) != ["c2p", "p2c"]:
            raise CheckpointError(f"{source}: pos_att_type {pos_att!r} is not supported (only c2p and p2c together)")
        pooler_act = cfg.get("pooler_hidden_act", "gelu")
        if pooler_act not in ACTIVATIONS:
            raise CheckpointError(f"{source}: pooler_hidden_act {pooler_act!r} is not supported")
        return cls(
            **common, embedding_size=int(cfg.get("embedding_size") or hidden),
            position_biased_input=bool(cfg.get("position_biased_input", True)), relative_attention=relative,
            position_buckets=int(cfg.get("position_buckets", -1)),
            max_relative_positions=int(cfg.get("max_relative_positions", -1)),
            share_att_key=bool(cfg.get("share_att_key", False)), pos_att_type=tuple(pos_att),
            norm_rel_ebd=tuple(x.strip() for x in str(cfg.get("norm_rel_ebd", "none")).lower().split("|")),
            pooler_hidden_size=int(cfg.get("pooler_hidden_size") or hidden), pooler_activation=ACTIVATIONS[pooler_act],
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> EncoderConfig:
        """Read ``folder/config.json``."""
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise CheckpointError(f"{path}: not found (a checkpoint folder holds config.json, model.safetensors "
                                  "and tokenizer.json)")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(cfg, str(path))
        except KeyError as exc:
            raise CheckpointError(f"{path}: missing {exc.args[0]!r}") from None
