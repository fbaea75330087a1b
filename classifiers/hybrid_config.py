"""What the hybrid LM scorer reads from a Nemotron-H checkpoint's ``config.json``.

The architecture is Hugging Face's ``nemotron_h``: a stack of pre-norm residual blocks, each one of a Mamba2
mixer, causal grouped-query attention without position encoding, or a relu^2 MLP. Layer kinds come from
``layers_block_type`` (``mamba``/``linear_attention``, ``attention``/``full_attention``, ``mlp``) or the older
``hybrid_override_pattern`` string (``M``, ``*``, ``-``). Settings we do not implement (mixture-of-experts
layers, other activations, sliding windows) are refused by name rather than silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from classifiers.encoder_config import CheckpointError

LAYER_KINDS = ("mamba", "attention", "mlp")
PATTERN_CHARS = {"M": "mamba", "*": "attention", "-": "mlp"}
BLOCK_TYPE_NAMES = {"mamba": "mamba", "linear_attention": "mamba", "attention": "attention",
                    "full_attention": "attention", "mlp": "mlp"}
# config.json keys of older Nemotron-H releases and the names transformers uses now.
LEGACY_KEYS = {"mamba_n_groups": "n_groups", "mamba_d_conv": "conv_kernel", "mamba_expand": "expand",
               "mamba_dt_min": "time_step_min", "mamba_conv_bias": "use_conv_bias",
               "mamba_chunk_size": "chunk_size"}


@dataclass(frozen=True)
class HybridConfig:
    """The shape and options of a Nemotron-H (hybrid Mamba2-Transformer) causal LM."""

    vocab_size: int
    hidden_size: int
    layer_kinds: tuple[str, ...]
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int = 64
    intermediate_size: int = 1024
    mamba_num_heads: int = 8
    mamba_head_dim: int = 64
    ssm_state_size: int = 128
    n_groups: int = 1
    conv_kernel: int = 4
    chunk_size: int = 128
    use_conv_bias: bool = True
    use_bias: bool = False
    mlp_bias: bool = False
    attention_bias: bool = False
    layer_norm_epsilon: float = 1e-5
    time_step_min: float = 0.001
    """transformers' NemotronH clamps dt from below at time_step_min (and not above); we do the same."""
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        bad = sorted({k for k in self.layer_kinds if k not in LAYER_KINDS})
        if bad or not self.layer_kinds:
            problems.append(f"layer kinds {bad or '(none)'} (supported: {', '.join(LAYER_KINDS)})")
        if self.num_attention_heads % max(self.num_key_value_heads, 1):
            problems.append(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                            f"num_key_value_heads {self.num_key_value_heads}")
        if self.mamba_num_heads % max(self.n_groups, 1):
            problems.append(f"mamba_num_heads {self.mamba_num_heads} is not a multiple of n_groups {self.n_groups}")
        if problems:
            raise CheckpointError("hybrid config: " + "; ".join(problems))

    @property
    def num_layers(self) -> int:
        """Number of blocks."""
        return len(self.layer_kinds)

    @property
    def mamba_intermediate(self) -> int:
        """Width of the Mamba2 value stream (heads x head dim)."""
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels through the causal conv: the value stream, then B and C for every group."""
        return self.mamba_intermediate + 2 * self.n_groups * self.ssm_state_size

    @property
    def pattern(self) -> str:
        """The layer kinds as a ``hybrid_override_pattern`` string (``M``, ``*``, ``-``)."""
        chars = {kind: char for char, kind in PATTERN_CHARS.items()}
        return "".join(chars[k] for k in self.layer_kinds)

    @classmethod
    def from_file(cls, path: str | Path) -> HybridConfig:
        """Read a checkpoint's config.json; raises CheckpointError naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: not found (a Nemotron-H checkpoint folder has a config.json)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read: {exc}") from exc
        try:
            return cls.from_dict(data)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HybridConfig:
        """A config from the dict of a ``nemotron_h`` config.json (also older key names)."""
        d = dict(data)
        for old, new in LEGACY_KEYS.items():
            if old in d and new not in d:
                d[new] = d[old]
        model_type = d.get("model_type", "nemotron_h")
        if model_type != "nemotron_h":
            raise CheckpointError(f"model_type {model_type!r} is not a Nemotron-H checkpoint (nemotron_h)")
        _refuse(d, "mlp_hidden_act", "relu2")
        _refuse(d, "mamba_hidden_act", "silu")
        if d.get("sliding_window") not in (None, 0):
            raise CheckpointError(f"sliding_window {d['sliding_window']} is not supported (full causal attention)")
        kinds = _layer_kinds(d)
        if "mamba_num_heads" not in d and "expand" in d and "mamba_head_dim" in d:
            d["mamba_num_heads"] = d["expand"] * d["hidden_size"] // d["mamba_head_dim"]
        if "head_dim" not in d or d["head_dim"] is None:
            d["head_dim"] = d["hidden_size"] // d.get("num_attention_heads", 8)
        if d.get("num_key_value_heads") is None:
            d["num_key_value_heads"] = d.get("num_attention_heads", 8)
        eos = d.get("eos_token_id")
        if isinstance(eos, list):
            d["eos_token_id"] = eos[0] if eos else None
        try:
            known = {name: d[name] for name in cls.__dataclass_fields__ if name in d and name not in ("layer_kinds",
                                                                                                        "raw")}
            return cls(vocab_size=int(d["vocab_size"]), hidden_size=int(d["hidden_size"]), layer_kinds=kinds,
                       **{k: v for k, v in known.items() if k not in ("vocab_size", "hidden_size")}, raw=data)
        except KeyError as exc:
            raise CheckpointError(f"config lacks {exc.args[0]!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """A ``nemotron_h`` config.json that transformers' NemotronHConfig (and ``from_dict``) accepts.

        Layer kinds go in ``hybrid_override_pattern`` only: transformers renamed the ``layers_block_type`` values
        (``mamba`` became ``linear_attention``) and each release refuses the other's names; the pattern reads in all.
        """
        out = {k: v for k, v in asdict(self).items() if k not in ("layer_kinds", "raw")}
        out.update({
            "model_type": "nemotron_h",
            "architectures": ["NemotronHForCausalLM"],
            "hybrid_override_pattern": self.pattern,
            "num_hidden_layers": self.num_layers,
            "mlp_hidden_act": "relu2",
            "mamba_hidden_act": "silu",
            "expand": max(1, self.mamba_intermediate // self.hidden_size),
        })
        return out


def _refuse(d: dict[str, Any], key: str, supported: str) -> None:
    value = d.get(key, supported)
    if value != supported:
        raise CheckpointError(f"{key} {value!r} is not supported (only {supported!r})")


def _layer_kinds(d: dict[str, Any]) -> tuple[str, ...]:
    blocks = d.get("layers_block_type") or d.get("layer_types")
    if blocks:
        if not isinstance(blocks, list):
            raise CheckpointError(f"layers_block_type must be a list, got {type(blocks).__name__}")
        unknown = sorted({str(b) for b in blocks if b not in BLOCK_TYPE_NAMES})
        if unknown:
            raise CheckpointError(f"layers_block_type has unsupported kinds {unknown} (supported: mamba, attention, "
                                  f"mlp; mixture-of-experts layers are not implemented)")
        return tuple(BLOCK_TYPE_NAMES[b] for b in blocks)
    pattern = d.get("hybrid_override_pattern")
    if not pattern:
        raise CheckpointError("neither layers_block_type nor hybrid_override_pattern is given")
    unknown = sorted({c for c in pattern if c not in PATTERN_CHARS})
    if unknown:
        raise CheckpointError(f"hybrid_override_pattern {pattern!r} has unsupported layer characters {unknown} "
                              f"(M mamba, * attention, - mlp; E mixture-of-experts is not implemented)")
    return tuple(PATTERN_CHARS[c] for c in pattern)
