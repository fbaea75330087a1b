"""The encoder classifier's forward pass: BERT or DeBERTa-v2, then its head, in one readable file.

Inference only. Weights live in a plain dict of tensors (no nn.Module, no autograd); the four
heavy operations go through an ``ops`` object (:mod:`classifiers.encoder_ops`): our Triton
kernels on GPU, PyTorch on CPU. Sequences are right-padded; ``lengths`` says how many tokens of
each are real. Q, K and V come from one fused matmul.
"""

from __future__ import annotations

from pathlib import Path

import torch

from classifiers.encoder_config import CheckpointError, EncoderConfig
from classifiers.encoder_ops import TorchOps, TritonOps, make_ops, softmax_scale
from classifiers.encoder_weights import HeadWeights, load_checkpoint_tensors


class EncoderModel:
    """A BERT or DeBERTa-v2 encoder with an optional head, ready to run on one device and dtype."""

    def __init__(self, config: EncoderConfig, encoder: dict[str, torch.Tensor], head: HeadWeights | None,
                 source: str = "") -> None:
        self.config = config
        self.head = head
        self.source = source
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._w = self._arrange(encoder)
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_folder(cls, folder: str | Path) -> EncoderModel:
        """Load ``config.json`` and ``model.safetensors`` (and our ``head.safetensors``) of a folder."""
        config = EncoderConfig.from_folder(folder)
        tensors = load_checkpoint_tensors(folder, config.family, config.labels, config.problem_type)
        return cls(config, tensors.encoder, tensors.head, str(folder))

    # -- weights ------------------------------------------------------------------------------------

    def _take(self, encoder: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        try:
            return encoder[name]
        except KeyError:
            raise CheckpointError(f"{self.source or 'checkpoint'}: tensor {name!r} is missing") from None

    def _arrange(self, enc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Canonical names to the tensors the forward pass uses (Q, K, V fused)."""
        c = self.config
        w: dict[str, torch.Tensor] = {}
        e = "embeddings."
        w["word"] = self._take(enc, e + "word_embeddings.weight")
        if c.family == "bert" or c.position_biased_input:
            w["position"] = self._take(enc, e + "position_embeddings.weight")
        if c.type_vocab_size > 0:
            w["token_type"] = self._take(enc, e + "token_type_embeddings.weight")
        if c.family == "deberta-v2" and c.embedding_size != c.hidden_size:
            w["embed_proj"] = self._take(enc, e + "embed_proj.weight")
        w["emb_ln.w"] = self._take(enc, e + "LayerNorm.weight")
        w["emb_ln.b"] = self._take(enc, e + "LayerNorm.bias")
        if c.relative_attention:
            w["rel"] = self._take(enc, "encoder.rel_embeddings.weight")
            if "layer_norm" in c.norm_rel_ebd:
                w["rel_ln.w"] = self._take(enc, "encoder.LayerNorm.weight")
                w["rel_ln.b"] = self._take(enc, "encoder.LayerNorm.bias")
        names = ("query", "key", "value") if c.family == "bert" else ("query_proj", "key_proj", "value_proj")
        for i in range(c.num_layers):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            w[f"{i}.qkv.w"] = torch.cat([self._take(enc, a + n + ".weight") for n in names])
            w[f"{i}.qkv.b"] = torch.cat([self._take(enc, a + n + ".bias") for n in names])
            if c.relative_attention and not c.share_att_key:
                w[f"{i}.pos_key.w"] = self._take(enc, a + "pos_key_proj.weight")
                w[f"{i}.pos_key.b"] = self._take(enc, a + "pos_key_proj.bias")
                w[f"{i}.pos_query.w"] = self._take(enc, a + "pos_query_proj.weight")
                w[f"{i}.pos_query.b"] = self._take(enc, a + "pos_query_proj.bias")
            for ours, theirs in (("attn_out", "attention.output.dense"), ("inter", "intermediate.dense"),
                                 ("out", "output.dense")):
                w[f"{i}.{ours}.w"] = self._take(enc, p + theirs + ".weight")
                w[f"{i}.{ours}.b"] = self._take(enc, p + theirs + ".bias")
            for ours, theirs in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
                w[f"{i}.{ours}.w"] = self._take(enc, p + theirs + ".weight")
                w[f"{i}.{ours}.b"] = self._take(enc, p + theirs + ".bias")
        return w

    def to(self, device: str | torch.device, dtype: torch.dtype) -> EncoderModel:
        """Move the encoder's weights to ``device`` in ``dtype``; the small head stays in fp32."""
        self.device, self.dtype = torch.device(device), dtype
        self._w = {k: v.to(self.device, dtype) for k, v in self._w.items()}
        if self.head is not None:
            h = self.head
            for attr in ("weight", "bias", "pooler_weight", "pooler_bias"):
                t = getattr(h, attr)
                if t is not None:
                    setattr(h, attr, t.to(self.device, torch.float32))
        self._tables.clear()
        return self

    # -- forward ------------------------------------------------------------------------------------

    def _index_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if length not in self._tables:
            from kernels.relative_position import relative_index_tables

            c = self.config
            c2p, p2c = relative_index_tables(length, c.position_buckets, c.max_relative, c.attention_span)
            self._tables[length] = (c2p.to(self.device), p2c.to(self.device))
        return self._tables[length]

    def _embed(self, ops: TorchOps | TritonOps, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c, w = self.config, self._w
        batch, length = ids.shape
        x = w["word"][ids]
        extra = None
        if "position" in w:
            extra = w["position"][:length].unsqueeze(0).expand(batch, length, -1)
        if "token_type" in w:
            tt = w["token_type"][0].expand(batch, length, -1)
            extra = tt if extra is None else extra + tt
        if "embed_proj" in w:  # DeBERTa with a narrower embedding: project before the LayerNorm
            x = x if extra is None else x + extra
            x, extra = ops.linear(x.reshape(batch * length, -1), w["embed_proj"], None).view(batch, length, -1), None
        if extra is not None:
            extra = extra.contiguous()
        x = ops.add_layernorm(x.contiguous(), extra, w["emb_ln.w"], w["emb_ln.b"], c.layer_norm_eps)
        if c.family == "deberta-v2":  # DeBERTa zeroes the padding positions' embeddings
            valid = torch.arange(length, device=ids.device)[None, :] < lengths[:, None]
            x = x * valid[..., None].to(x.dtype)
        return x

    def hidden_states(self, ids: torch.Tensor, lengths: torch.Tensor,
                      ops: TorchOps | TritonOps | None = None) -> torch.Tensor:
        """The last layer's hidden states ``[B, L, hidden]`` for right-padded ``ids`` ``[B, L]``."""
        c, w = self.config, self._w
        ops = ops or make_ops("torch")
        ids = ids.to(self.device)
        lengths = lengths.to(self.device, torch.int32)
        batch, length = ids.shape
        heads, dim = c.num_heads, c.head_dim
        x = self._embed(ops, ids, lengths)
        rel = None
        if c.relative_attention:
            rel = w["rel"][: 2 * c.attention_span]
            if "rel_ln.w" in w:
                rel = ops.add_layernorm(rel.contiguous(), None, w["rel_ln.w"], w["rel_ln.b"], c.layer_norm_eps)
            c2p_index, p2c_index = self._index_tables(length)
            scale = softmax_scale(dim, 3)
        else:
            scale = softmax_scale(dim)
        flat = x.reshape(batch * length, c.hidden_size)
        for i in range(c.num_layers):
            qkv = ops.linear(flat, w[f"{i}.qkv.w"], w[f"{i}.qkv.b"]).view(batch, length, 3, heads, dim)
            q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))     # [B, H, L, D] views
            if rel is None:
                attn = ops.attention(q, k, v, lengths, scale)
            else:
                if c.share_att_key:
                    hd = c.hidden_size
                    pos_q = ops.linear(rel, w[f"{i}.qkv.w"][:hd], w[f"{i}.qkv.b"][:hd])
                    pos_k = ops.linear(rel, w[f"{i}.qkv.w"][hd:2 * hd], w[f"{i}.qkv.b"][hd:2 * hd])
                else:
                    pos_q = ops.linear(rel, w[f"{i}.pos_query.w"], w[f"{i}.pos_query.b"])
                    pos_k = ops.linear(rel, w[f"{i}.pos_key.w"], w[f"{i}.pos_key.b"])
                span2 = rel.shape[0]
                pos_q = pos_q.view(span2, heads, dim).transpose(0, 1)         # [H, 2S, D]
                pos_k = pos_k.view(span2, heads, dim).transpose(0, 1)
                c2p = torch.matmul(q, pos_k.transpose(-1, -2).unsqueeze(0))  # [B, H, L, 2S]
                p2c = torch.matmul(k, pos_q.transpose(-1, -2).unsqueeze(0))
                attn = ops.attention(q, k, v, lengths, scale, c2p, p2c, c2p_index, p2c_index)
            attn = attn.transpose(1, 2).reshape(batch * length, c.hidden_size)
            h = ops.linear(attn, w[f"{i}.attn_out.w"], w[f"{i}.attn_out.b"])
            flat = ops.add_layernorm(h, flat, w[f"{i}.ln1.w"], w[f"{i}.ln1.b"], c.layer_norm_eps)
            h = ops.linear(flat, w[f"{i}.inter.w"], w[f"{i}.inter.b"], c.activation)
            h = ops.linear(h, w[f"{i}.out.w"], w[f"{i}.out.b"])
            flat = ops.add_layernorm(h, flat, w[f"{i}.ln2.w"], w[f"{i}.ln2.b"], c.layer_norm_eps)
        return flat.view(batch, length, c.hidden_size)

    def pooled_features(self, ids: torch.Tensor, lengths: torch.Tensor, ops: TorchOps | TritonOps | None = None,
                        pooling: str | None = None) -> torch.Tensor:
        """What the head reads ``[B, hidden]`` in fp32: the first token's final hidden state, or with
        ``pooling="mean"`` the mean over the real tokens (sentence-transformers checkpoints are trained
        that way). ``pooling`` defaults to the head's own."""
        pooling = pooling or (self.head.pooling if self.head is not None else "first_token")
        hidden = self.hidden_states(ids, lengths, ops)
        if pooling == "first_token":
            return hidden[:, 0].float()
        lengths = lengths.to(hidden.device)
        valid = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).float()
        return (hidden.float() * valid[..., None]).sum(1) / lengths.clamp_min(1)[:, None].float()

    def head_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """The head's raw outputs (logits, or the regression value) ``[B, outputs]`` from pooled features."""
        h = self.head
        if h is None:
            raise CheckpointError(f"{self.source or 'checkpoint'}: no classification or regression head "
                                  "(train one with `curator train encoder-head`)")
        x = features.float()
        if h.kind == "pooler_tanh":
            x = torch.tanh(torch.nn.functional.linear(x, h.pooler_weight, h.pooler_bias))
        elif h.kind == "context_pooler":
            x = torch.nn.functional.linear(x, h.pooler_weight, h.pooler_bias)
            x = _head_activation(x, self.config.pooler_activation or "gelu")
        return torch.nn.functional.linear(x, h.weight, h.bias)

    @torch.inference_mode()
    def classify(self, ids: torch.Tensor, lengths: torch.Tensor,
                 ops: TorchOps | TritonOps | None = None) -> torch.Tensor:
        """Head outputs ``[B, outputs]`` (fp32): regression values, or logits of a classifier."""
        return self.head_outputs(self.pooled_features(ids, lengths, ops))


def _head_activation(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "gelu":
        return torch.nn.functional.gelu(x)
    if activation == "gelu_tanh":
        return torch.nn.functional.gelu(x, approximate="tanh")
    return torch.tanh(x)
