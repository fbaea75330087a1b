"""Reading a Nemotron-H checkpoint's tensors: one ``model.safetensors`` or shards listed in
``model.safetensors.index.json``, with the backbone under ``backbone.`` (NVIDIA's releases) or ``model.``
(transformers' own ``save_pretrained``). Tensors come back under transformers' names (``model.*``, ``lm_head.*``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from classifiers.encoder_config import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
BACKBONE_PREFIXES = ("backbone.", "model.")


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: the shards of its index, or its single file."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index (a 'weight_map' object): {exc}") from exc
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index}: lists shards that are not there: {', '.join(missing)}")
        return files
    single = folder / SINGLE_FILE
    if single.is_file():
        return [single]
    hint = " (pytorch_model.bin is not read: convert it to safetensors)" if (folder / "pytorch_model.bin").exists() \
        else ""
    raise CheckpointError(f"{folder}: neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")


def _read(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise CheckpointError(f"{path}: cannot read safetensors: {type(exc).__name__}: {exc}") from exc


def load_hybrid_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint under transformers' names: ``model.embeddings.weight``,
    ``model.layers.{i}...``, ``model.norm_f.weight`` and ``lm_head.weight`` (absent for tied embeddings).

    Tensors outside the backbone and the LM head (multi-token-prediction layers, for one) are left out.
    """
    folder = Path(folder)
    out: dict[str, torch.Tensor] = {}
    for path in checkpoint_files(folder):
        for name, tensor in _read(path).items():
            if name.startswith("lm_head."):
                out[name] = tensor
                continue
            prefix = next((p for p in BACKBONE_PREFIXES if name.startswith(p)), None)
            if prefix is not None:
                out["model." + name[len(prefix):]] = tensor
    if "model.embeddings.weight" not in out:
        raise CheckpointError(f"{folder}: no embeddings.weight tensor under backbone. or model.")
    return out
