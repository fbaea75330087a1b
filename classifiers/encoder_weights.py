"""Reading a checkpoint's tensors (safetensors) and sorting them into encoder and head.

Accepted layouts, by the name of the word-embedding tensor: ``bert.``/``deberta.`` prefixes (the
``*ForSequenceClassification`` classes), no prefix (a bare ``BertModel``), and ``model.`` (NVIDIA's
quality classifier: ``model.*`` encoder and an ``fc`` head on the first token). Heads:

- ``pooler_tanh``: BERT's pooler (dense + tanh on the first token) then ``classifier``;
- ``context_pooler``: DeBERTa's ContextPooler (dense + ``pooler_hidden_act``) then ``classifier``;
- ``first_token``: one linear layer on the first token (``fc``, or ours: ``head.safetensors`` +
  ``head.json``, written by ``curator train encoder-head``; ours may read the mean over the real
  tokens instead, ``"pooling": "mean"``, the way sentence-transformers encoders are trained).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from classifiers.encoder_config import CheckpointError

HEAD_FILE = "head.safetensors"
HEAD_META = "head.json"
HEAD_FORMAT = "curator.encoder_head"
PROBLEM_TYPES = ("regression", "single_label_classification")
POOLINGS = ("first_token", "mean")


@dataclass
class HeadWeights:
    """A classification or regression head: its form, tensors, label names and problem type."""

    kind: str                                   # pooler_tanh | context_pooler | first_token
    weight: torch.Tensor                        # [outputs, width]
    bias: torch.Tensor | None
    pooler_weight: torch.Tensor | None = None   # [hidden, hidden] for the pooler forms
    pooler_bias: torch.Tensor | None = None
    labels: tuple[str, ...] = ()
    problem_type: str = "regression"
    pooling: str = "first_token"                # or "mean" (heads of ours on sentence-transformers encoders)

    @property
    def outputs(self) -> int:
        """Number of outputs (1 for a regression head)."""
        return int(self.weight.shape[0])


@dataclass
class CheckpointTensors:
    """The encoder's tensors under canonical names (``embeddings.*``, ``encoder.*``) and the head."""

    encoder: dict[str, torch.Tensor]
    head: HeadWeights | None
    files: list[str] = field(default_factory=list)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise CheckpointError(f"{path}: cannot read safetensors: {type(exc).__name__}: {exc}") from exc


def _legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta."""
    out = {}
    for name, tensor in state.items():
        if name.endswith(".gamma"):
            name = name[: -len(".gamma")] + ".weight"
        elif name.endswith(".beta"):
            name = name[: -len(".beta")] + ".bias"
        out[name] = tensor
    return out


def _problem_type(problem_type: str | None, outputs: int, source: str) -> str:
    if problem_type is None:
        return "regression" if outputs == 1 else "single_label_classification"
    if problem_type not in PROBLEM_TYPES:
        raise CheckpointError(f"{source}: problem_type {problem_type!r} is not supported ({', '.join(PROBLEM_TYPES)})")
    return problem_type


def _own_head(folder: Path) -> HeadWeights:
    meta_path = folder / HEAD_META
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: cannot read the head description: {exc}") from exc
    if meta.get("format") != HEAD_FORMAT or meta.get("version") != 1:
        raise CheckpointError(f"{meta_path}: not a {HEAD_FORMAT} version 1 file "
                              f"(format={meta.get('format')!r}, version={meta.get('version')!r})")
    tensors = _read_safetensors(folder / HEAD_FILE)
    if "weight" not in tensors:
        raise CheckpointError(f"{folder / HEAD_FILE}: no 'weight' tensor")
    weight = tensors["weight"]
    labels = tuple(str(x) for x in meta.get("labels", []))
    pooling = meta.get("pooling", "first_token")
    if pooling not in POOLINGS:
        raise CheckpointError(f"{meta_path}: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    return HeadWeights("first_token", weight, tensors.get("bias"), labels=labels,
                       problem_type=_problem_type(meta.get("problem_type"), int(weight.shape[0]), str(meta_path)),
                       pooling=pooling)


def load_checkpoint_tensors(folder: str | Path, family: str, labels: tuple[str, ...] = (),
                            problem_type: str | None = None) -> CheckpointTensors:
    """Read ``model.safetensors`` (and ``head.safetensors`` if present) of a checkpoint folder."""
    folder = Path(folder)
    path = folder / "model.safetensors"
    if not path.is_file():
        has_bin = (folder / "pytorch_model.bin").exists()
        hint = " (pytorch_model.bin is not read: convert it to safetensors)" if has_bin else ""
        raise CheckpointError(f"{path}: not found{hint}")
    state = _legacy_names(_read_safetensors(path))
    prefix = next((p for p in ("bert.", "deberta.", "model.", "") if f"{p}embeddings.word_embeddings.weight" in state),
                  None)
    if prefix is None:
        raise CheckpointError(f"{path}: no embeddings.word_embeddings.weight tensor under any known prefix "
                              "(bert., deberta., model., none)")
    encoder = {name[len(prefix):]: t for name, t in state.items()
               if name.startswith(prefix) and name[len(prefix):].startswith(("embeddings.", "encoder."))}
    files = [str(path)]
    head: HeadWeights | None = None
    pooler_w = state.get(f"{prefix}pooler.dense.weight", state.get("pooler.dense.weight"))
    pooler_b = state.get(f"{prefix}pooler.dense.bias", state.get("pooler.dense.bias"))
    if (folder / HEAD_FILE).is_file():
        head = _own_head(folder)
        files.append(str(folder / HEAD_FILE))
    elif "classifier.weight" in state:
        if pooler_w is None:
            raise CheckpointError(f"{path}: a classifier head without the pooler it sits on")
        weight = state["classifier.weight"]
        head = HeadWeights("pooler_tanh" if family == "bert" else "context_pooler", weight,
                           state.get("classifier.bias"), pooler_w, pooler_b, labels,
                           _problem_type(problem_type, int(weight.shape[0]), str(folder / "config.json")))
    elif "fc.weight" in state:
        weight = state["fc.weight"]
        head = HeadWeights("first_token", weight, state.get("fc.bias"), labels=labels,
                           problem_type=_problem_type(problem_type, int(weight.shape[0]), str(folder / "config.json")))
    if head is not None and head.labels and len(head.labels) != head.outputs:
        raise CheckpointError(f"{folder}: the head has {head.outputs} outputs but {len(head.labels)} label names")
    return CheckpointTensors(encoder, head, files)
