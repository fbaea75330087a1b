"""A Nemotron-H causal LM (hybrid Mamba2-Transformer) for scoring documents, in one readable file.

Blocks are pre-norm residual: ``h = h + mixer(rmsnorm(h))``, the mixer one of
- Mamba2: in_proj -> [gate z | x B C | dt]; causal depthwise conv + SiLU over x B C; the chunked SSD scan with the
  D skip; ``y * silu(z)`` and a grouped RMSNorm; out_proj;
- attention: causal, grouped-query, no position encoding, scale head_dim ** -0.5;
- MLP: ``down(relu(up(x)) ** 2)``.
Parameter names are transformers' ``NemotronHForCausalLM`` ones, so checkpoints go both ways. Every layer is causal,
so right-padded batches are exact for the real tokens. The operations come from ``classifiers.hybrid_ops``: plain
PyTorch (CPU, training) or our Triton kernels (GPU scoring; forward only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from classifiers.encoder_config import CheckpointError
from classifiers.hybrid_config import HybridConfig
from classifiers.hybrid_ops import TorchHybridOps, TritonHybridOps, make_hybrid_ops
from classifiers.hybrid_weights import load_hybrid_tensors

NLL_CHUNK_TOKENS = 1024
"""Positions whose logits are materialised at once by ``token_nll`` (a 131k vocabulary is 0.5 MB a token)."""

Ops = TorchHybridOps | TritonHybridOps


class RMSNorm(nn.Module):
    """An RMSNorm's weight (the operation itself is in the ops)."""

    def __init__(self, width: int, **factory: object) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width, **factory))


class Mamba2Mixer(nn.Module):
    """Nemotron-H's Mamba2 mixer."""

    def __init__(self, config: HybridConfig, **factory: object) -> None:
        super().__init__()
        self.config = config
        heads, inner = config.mamba_num_heads, config.mamba_intermediate
        self.in_proj = nn.Linear(config.hidden_size, inner + config.conv_dim + heads, bias=config.use_bias, **factory)
        self.conv1d = nn.Conv1d(config.conv_dim, config.conv_dim, config.conv_kernel, groups=config.conv_dim,
                                padding=config.conv_kernel - 1, bias=config.use_conv_bias, **factory)
        self.dt_bias = nn.Parameter(torch.ones(heads, **factory))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)).to(**factory))
        self.D = nn.Parameter(torch.ones(heads, **factory))
        self.norm = RMSNorm(inner, **factory)
        self.out_proj = nn.Linear(inner, config.hidden_size, bias=config.use_bias, **factory)

    def run(self, ops: Ops, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, length, _ = h.shape
        inner, groups_width = c.mamba_intermediate, c.n_groups * c.ssm_state_size
        projected = ops.linear(h, self.in_proj.weight, self.in_proj.bias)
        gate = projected[..., :inner]
        xbc = ops.causal_conv1d(projected[..., inner:inner + c.conv_dim], self.conv1d.weight[:, 0, :],
                                self.conv1d.bias, silu=True)
        dt = projected[..., inner + c.conv_dim:]
        x = xbc[..., :inner].unflatten(-1, (c.mamba_num_heads, c.mamba_head_dim))
        b = xbc[..., inner:inner + groups_width].unflatten(-1, (c.n_groups, c.ssm_state_size))
        cm = xbc[..., inner + groups_width:].unflatten(-1, (c.n_groups, c.ssm_state_size))
        a = -torch.exp(self.A_log.float())
        y = ops.ssd_scan(x, dt, a, b, cm, self.D, c.chunk_size, dt_bias=self.dt_bias, dt_min=c.time_step_min)
        y = ops.gated_rmsnorm(y.reshape(batch, length, inner), gate, self.norm.weight, inner // c.n_groups,
                              c.layer_norm_epsilon)
        return ops.linear(y, self.out_proj.weight, self.out_proj.bias)


class Attention(nn.Module):
    """Causal grouped-query attention without position encoding."""

    def __init__(self, config: HybridConfig, **factory: object) -> None:
        super().__init__()
        self.config = config
        hd, bias = config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * hd, bias=bias, **factory)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * hd, bias=bias, **factory)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * hd, bias=bias, **factory)
        self.o_proj = nn.Linear(config.num_attention_heads * hd, config.hidden_size, bias=bias, **factory)

    def run(self, ops: Ops, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, length, _ = h.shape

        def heads(proj: nn.Linear, count: int) -> torch.Tensor:
            return ops.linear(h, proj.weight, proj.bias).view(batch, length, count, c.head_dim).transpose(1, 2)

        q = heads(self.q_proj, c.num_attention_heads)
        k = heads(self.k_proj, c.num_key_value_heads)
        v = heads(self.v_proj, c.num_key_value_heads)
        out = ops.attention(q, k, v, lengths, c.head_dim ** -0.5)
        out = out.transpose(1, 2).reshape(batch, length, c.num_attention_heads * c.head_dim)
        return ops.linear(out, self.o_proj.weight, self.o_proj.bias)


class MLP(nn.Module):
    """``down(relu(up(x)) ** 2)``."""

    def __init__(self, config: HybridConfig, **factory: object) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias, **factory)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias, **factory)

    def run(self, ops: Ops, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return ops.linear(ops.linear(h, self.up_proj.weight, self.up_proj.bias, "relu2"),
                          self.down_proj.weight, self.down_proj.bias)


MIXERS = {"mamba": Mamba2Mixer, "attention": Attention, "mlp": MLP}


class Block(nn.Module):
    """A pre-norm residual block around one mixer."""

    def __init__(self, config: HybridConfig, kind: str, **factory: object) -> None:
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(config.hidden_size, **factory)
        self.mixer = MIXERS[kind](config, **factory)


class Backbone(nn.Module):
    """Embeddings, the blocks and the final norm (transformers' ``NemotronHModel``)."""

    def __init__(self, config: HybridConfig, **factory: object) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, **factory)
        self.layers = nn.ModuleList(Block(config, kind, **factory) for kind in config.layer_kinds)
        self.norm_f = RMSNorm(config.hidden_size, **factory)


class HybridLM(nn.Module):
    """A Nemotron-H causal LM: ``forward`` gives logits, ``token_nll`` per-token negative log-likelihoods."""

    def __init__(self, config: HybridConfig, use_kernels: bool = False, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self.config = config
        self.model = Backbone(config, **factory)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, **factory)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embeddings.weight
        self.ops: Ops = make_hybrid_ops(use_kernels)

    @property
    def use_kernels(self) -> bool:
        """Whether the forward runs our Triton kernels."""
        return isinstance(self.ops, TritonHybridOps)

    def set_kernels(self, use_kernels: bool) -> None:
        """Switch between the Triton kernels and plain PyTorch."""
        self.ops = make_hybrid_ops(use_kernels)

    def hidden_states(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The final-normed hidden states [B, L, hidden]."""
        if input_ids.dim() != 2:
            raise ValueError(f"hybrid LM: input_ids must be [batch, length], got {tuple(input_ids.shape)}")
        if lengths is None:
            lengths = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long)
        lengths = lengths.to(input_ids.device)
        ops, eps = self.ops, self.config.layer_norm_epsilon
        residual = F.embedding(input_ids, self.model.embeddings.weight)
        out: torch.Tensor | None = None
        for block in self.model.layers:
            if out is None:
                normed = ops.rmsnorm(residual, block.norm.weight, eps)
            else:
                normed, residual = ops.add_rmsnorm(out, residual, block.norm.weight, eps)
            out = block.mixer.run(ops, normed, lengths)
        if out is None:
            return ops.rmsnorm(residual, self.model.norm_f.weight, eps)
        return ops.add_rmsnorm(out, residual, self.model.norm_f.weight, eps)[0]

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, L, vocab] (in the weights' dtype)."""
        return self.ops.linear(self.hidden_states(input_ids, lengths), self.lm_head.weight, None)

    def token_nll(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] float32: entry t is -log p(input_ids[t] | input_ids[<t]) for 1 <= t < lengths[b], else 0.

        Logits are made ``NLL_CHUNK_TOKENS`` positions at a time, never for the whole batch at once.
        """
        batch, length = input_ids.shape
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.long)
        lengths = lengths.to(input_ids.device)
        hidden = self.hidden_states(input_ids, lengths)
        nll = torch.zeros(batch, length, dtype=torch.float32, device=input_ids.device)
        for start in range(0, length - 1, NLL_CHUNK_TOKENS):
            end = min(start + NLL_CHUNK_TOKENS, length - 1)
            logits = self.ops.linear(hidden[:, start:end], self.lm_head.weight, None).float()
            targets = input_ids[:, start + 1:end + 1]
            picked = logits.gather(-1, targets[..., None])[..., 0]
            nll[:, start + 1:end + 1] = torch.logsumexp(logits, dim=-1) - picked
        positions = torch.arange(length, device=input_ids.device)
        return nll.masked_fill(positions[None, :] >= lengths[:, None], 0.0)

    def init_weights(self, seed: int = 0, std: float = 0.02) -> None:
        """Fresh weights for training: normal(0, std) matrices and embeddings, Mamba2's dt bias (inverse softplus
        of dt log-uniform in [0.001, 0.1]), A = -(1..heads), D = 1, unit norms; residual outputs scaled by
        1 / sqrt(layers) as GPT-2 does."""
        gen = torch.Generator().manual_seed(seed)

        def normal_(t: torch.Tensor, scale: float = std) -> None:
            t.copy_(torch.randn(t.shape, generator=gen) * scale)

        with torch.no_grad():
            normal_(self.model.embeddings.weight)
            out_scale = std / math.sqrt(2 * max(self.config.num_layers, 1))
            for name, param in self.named_parameters():
                if name.endswith("norm.weight") or name.endswith("norm_f.weight") or name.endswith(".D"):
                    param.fill_(1.0)
                elif name.endswith(".bias") and "conv1d" not in name:
                    param.zero_()
                elif name.endswith(("out_proj.weight", "o_proj.weight", "down_proj.weight")):
                    normal_(param, out_scale)
                elif name.endswith(("proj.weight",)) or name == "lm_head.weight":
                    if not self.config.tie_word_embeddings or name != "lm_head.weight":
                        normal_(param)
            for block in self.model.layers:
                if block.kind == "mamba":
                    mixer = block.mixer
                    heads = mixer.dt_bias.shape[0]
                    u = torch.rand(heads, generator=gen)
                    dt = torch.exp(u * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp_min(1e-4)
                    mixer.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                    mixer.A_log.copy_(torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))

    # -- checkpoints -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32, use_kernels: bool = False) -> HybridLM:
        """Load a checkpoint folder (config.json, safetensors) onto ``device`` in ``dtype``."""
        directory = Path(directory)
        config = HybridConfig.from_file(directory / "config.json")
        tensors = load_hybrid_tensors(directory)
        model = cls(config, use_kernels, device="meta")
        # transformers' NemotronH never ties: a checkpoint's own lm_head.weight wins over tie_word_embeddings.
        has_head = "lm_head.weight" in tensors
        if not has_head and not config.tie_word_embeddings:
            raise CheckpointError(f"{directory}: no lm_head.weight (and tie_word_embeddings is false)")
        expected = set(model.state_dict()) - (set() if has_head else {"lm_head.weight"})
        missing = sorted(expected - set(tensors))
        if missing:
            raise CheckpointError(f"{directory}: tensors missing for config.json's layers: {', '.join(missing[:8])}"
                                  f"{' ...' if len(missing) > 8 else ''}")
        shapes = model.state_dict()
        for name in sorted(expected):
            if tuple(tensors[name].shape) != tuple(shapes[name].shape):
                raise CheckpointError(f"{directory}: {name} has shape {tuple(tensors[name].shape)}, config.json "
                                      f"implies {tuple(shapes[name].shape)}")
        state = {name: tensors[name].to(device=device, dtype=dtype) for name in expected}
        model.load_state_dict(state, strict=False, assign=True)
        if not has_head:
            model.lm_head.weight = model.model.embeddings.weight
        return model.eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors under transformers' names. A tied LM head is written as its own
        copy too: transformers' NemotronH never ties, it reads ``lm_head.weight``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: t.detach().cpu().clone().contiguous() for name, t in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
