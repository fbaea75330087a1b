"""The hybrid LM (Nemotron-H) against transformers' NemotronHForCausalLM on tiny random checkpoints.

Checkpoints are built offline by transformers itself (random weights, then norms, D and dt biases perturbed so that no
parameter sits at an identity value), saved, and loaded by our loader. Our forward runs twice: on the Triton kernels
(the interpreter on CPU, fp32; compiled on a GPU) and on plain PyTorch. Logits must match within 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.kernel_checks import DEVICE, ON_GPU  # first: sets TRITON_INTERPRET without a GPU

from classifiers.encoder_config import CheckpointError  # noqa: E402
from classifiers.hybrid_config import HybridConfig  # noqa: E402
from classifiers.hybrid_model import HybridLM  # noqa: E402

import transformers  # noqa: E402  (a dev dependency: setup and CI install it)

TINY = dict(vocab_size=96, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=96, mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=16, n_groups=2,
            conv_kernel=4, chunk_size=16, layer_norm_epsilon=1e-5)
PATTERNS = ["M*-M", "M-M*", "*M", "MM-"]


def tiny_checkpoint(folder: Path, pattern: str, seed: int = 0, **overrides: object) -> torch.nn.Module:
    """A random transformers NemotronH checkpoint saved in ``folder``; returns the transformers model."""
    torch.manual_seed(seed)
    config = transformers.NemotronHConfig(**{**TINY, **overrides}, hybrid_override_pattern=pattern)
    model = transformers.NemotronHForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("dt_bias", ".D")) or "norm" in name:
                param.add_(torch.randn_like(param) * 0.3)
            elif name.endswith("conv1d.bias"):
                param.normal_(0, 0.2)
    model.save_pretrained(folder)
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_logits_match_transformers(tmp_path: Path, pattern: str) -> None:
    reference = tiny_checkpoint(tmp_path, pattern)
    ids = torch.randint(0, TINY["vocab_size"], (2, 37))  # 37: not a multiple of the chunk size 16
    with torch.no_grad():
        expected = reference(ids, use_cache=False).logits
    torch_path = HybridLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert max_diff(torch_path(ids), expected) <= 1e-4
    kernels = HybridLM.from_pretrained(tmp_path, device=DEVICE, use_kernels=True)
    with torch.no_grad():
        got = kernels(ids.to(DEVICE))
    assert max_diff(got, expected) <= 1e-4, f"{pattern}: Triton path differs from transformers"


def test_right_padded_batch_scores_each_document_exactly(tmp_path: Path) -> None:
    reference = tiny_checkpoint(tmp_path, "M*-M", seed=1)
    lengths = torch.tensor([40, 17, 5])
    ids = torch.randint(0, TINY["vocab_size"], (3, 40))
    ids[1, 17:] = 0
    ids[2, 5:] = 0
    model = HybridLM.from_pretrained(tmp_path, device=DEVICE, use_kernels=True)
    with torch.no_grad():
        got = model(ids.to(DEVICE), lengths.to(DEVICE)).cpu()
        nll = model.token_nll(ids.to(DEVICE), lengths.to(DEVICE)).cpu()
        for row, length in enumerate(lengths.tolist()):
            alone = reference(ids[row:row + 1, :length], use_cache=False).logits[0]
            assert max_diff(got[row, :length], alone) <= 1e-4, f"row {row} (length {length})"
            logp = torch.log_softmax(alone.double(), -1)
            want = -logp[:-1].gather(-1, ids[row, 1:length, None])[:, 0]
            assert max_diff(nll[row, 1:length], want) <= 1e-4
            assert nll[row, 0] == 0 and (nll[row, length:] == 0).all()


def test_longer_sequence_many_chunks(tmp_path: Path) -> None:
    reference = tiny_checkpoint(tmp_path, "M-M*", seed=2, chunk_size=32)
    ids = torch.randint(0, TINY["vocab_size"], (1, 150 if not ON_GPU else 1000))
    with torch.no_grad():
        expected = reference(ids, use_cache=False).logits
        got = HybridLM.from_pretrained(tmp_path, device=DEVICE, use_kernels=True)(ids.to(DEVICE))
    assert max_diff(got, expected) <= 1e-4


def test_backbone_prefix_sharded_index_and_layer_names(tmp_path: Path) -> None:
    """NVIDIA's releases: tensors under ``backbone.``, split over shards with an index, and the older
    ``hybrid_override_pattern`` / ``mamba_*`` config keys."""
    from safetensors.torch import load_file, save_file

    src = tmp_path / "src"
    reference = tiny_checkpoint(src, "M*-", seed=3)
    state = load_file(str(src / "model.safetensors"))
    renamed = {("backbone." + k[len("model."):] if k.startswith("model.") else k): v for k, v in state.items()}
    names = sorted(renamed)
    dst = tmp_path / "nvidia"
    dst.mkdir()
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in halves.items():
        save_file({k: renamed[k] for k in keys}, str(dst / file))
    (dst / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in halves.items() for k in keys}}))
    config = json.loads((src / "config.json").read_text())
    config.pop("layers_block_type", None)
    config["hybrid_override_pattern"] = "M*-"
    config["mamba_n_groups"] = config.pop("n_groups")
    config["mamba_d_conv"] = config.pop("conv_kernel")
    (dst / "config.json").write_text(json.dumps(config))
    ids = torch.randint(0, TINY["vocab_size"], (1, 21))
    with torch.no_grad():
        assert max_diff(HybridLM.from_pretrained(dst)(ids), reference(ids, use_cache=False).logits) <= 1e-4


def test_save_pretrained_round_trips_through_transformers(tmp_path: Path) -> None:
    config = HybridConfig.from_dict({**TINY, "model_type": "nemotron_h", "hybrid_override_pattern": "M*-",
                                     "tie_word_embeddings": True})
    ours = HybridLM(config)
    ours.init_weights(seed=4)
    ours.save_pretrained(tmp_path)
    theirs = transformers.NemotronHForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 19))
    with torch.no_grad():
        assert max_diff(ours(ids), theirs(ids, use_cache=False).logits) <= 1e-4
        assert max_diff(HybridLM.from_pretrained(tmp_path)(ids), ours(ids)) == 0.0


def test_unsupported_checkpoints_are_refused_by_name(tmp_path: Path) -> None:
    base = {**TINY, "model_type": "nemotron_h"}
    with pytest.raises(CheckpointError, match="mixture-of-experts"):
        HybridConfig.from_dict({**base, "hybrid_override_pattern": "ME"})
    with pytest.raises(CheckpointError, match="mlp_hidden_act"):
        HybridConfig.from_dict({**base, "hybrid_override_pattern": "M-", "mlp_hidden_act": "gelu"})
    with pytest.raises(CheckpointError, match="not a Nemotron-H"):
        HybridConfig.from_dict({**base, "model_type": "llama", "hybrid_override_pattern": "M"})
    with pytest.raises(CheckpointError, match="config.json: not found"):
        HybridLM.from_pretrained(tmp_path)
    tiny_checkpoint(tmp_path, "M-")
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_size"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="has shape"):
        HybridLM.from_pretrained(tmp_path)
