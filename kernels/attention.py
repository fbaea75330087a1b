"""Attention over right-padded batches (key-padding mask): encoder form with DeBERTa's disentangled relative
terms, and decoder form (causal, grouped-query heads).

score(i, j) = scale * (q_i . k_j + c2p[i, c2p_index[i - j + L - 1]] + p2c[j, p2c_index[i - j + L - 1]])
for keys j < lengths[b] (and j <= i when causal); softmax over j; out_i = sum_j p_ij v_j; rows i >= lengths[b]
are zeros. With grouped-query attention k and v have Hkv heads, H % Hkv == 0, and query head h reads
key/value head h // (H // Hkv).

The kernel is flash style: one program per (block of queries, batch row, head), online softmax over key
blocks in fp32, never materialising the L x L scores. Key blocks wholly past a sequence's length are not
visited, and query blocks wholly past it only write zeros, so padded batches cost what their real tokens cost.
Causal: key blocks wholly above the diagonal are not visited either (about half the work), those wholly below
it run without masks, and the query blocks are launched heaviest first.
``attention_reference`` computes the same thing with dense fp32 scores in PyTorch.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, dot_precision, is_interpreted, next_power_of_two

HEAD_DIMS = (16, 32, 64, 128)
LOG2_E = math.log2(math.e)


@triton.jit
def _attend_key_block(
    acc, l_i, m_i, q, start_n, offs_m, offs_n, offs_d, row_valid, length, k_base, v_base,
    c2p_ptr, p2c_ptr, c2p_index_rev_ptr, p2c_index_ptr, scale_log2e, b, h, L,
    stride_kl, stride_vl, stride_cb, stride_ch, stride_cl, stride_pb, stride_ph, stride_pl,
    HAS_C2P: tl.constexpr, HAS_P2C: tl.constexpr, DOT_PRECISION: tl.constexpr,
    MASK_KEYS: tl.constexpr, MASK_CAUSAL: tl.constexpr,
):
    """One step of the online softmax: fold key block [start_n, start_n + BLOCK_N) into (acc, l_i, m_i).

    MASK_KEYS masks keys past the length (off only for blocks known to hold real keys alone); MASK_CAUSAL
    masks keys after each query (diagonal blocks).
    """
    cols = start_n + offs_n
    col_valid = cols < length
    if MASK_KEYS:
        k = tl.load(k_base + cols[:, None] * stride_kl + offs_d[None, :], mask=col_valid[:, None], other=0.0)
    else:
        k = tl.load(k_base + cols[:, None] * stride_kl + offs_d[None, :])
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
    # The relative terms are gathers. Each is laid out so that its addresses ascend along the tile's last
    # axis (the axis a warp's lanes walk): c2p row i is read along j with the table reversed (entry
    # j - i + L - 1), and p2c row j is read along i as a [keys, queries] tile, transposed after.
    if HAS_C2P:
        pair_valid = row_valid[:, None] & col_valid[None, :]
        c2p_pos = tl.load(c2p_index_rev_ptr + (cols[None, :] - offs_m[:, None] + (L - 1)), mask=pair_valid,
                          other=0)
        c2p_rows = c2p_ptr + b * stride_cb + h * stride_ch + offs_m[:, None] * stride_cl
        s += tl.load(c2p_rows + c2p_pos, mask=pair_valid, other=0.0).to(tl.float32)
    if HAS_P2C:
        pair_valid_t = col_valid[:, None] & row_valid[None, :]
        p2c_pos = tl.load(p2c_index_ptr + (offs_m[None, :] - cols[:, None] + (L - 1)), mask=pair_valid_t,
                          other=0)
        p2c_rows = p2c_ptr + b * stride_pb + h * stride_ph + cols[:, None] * stride_pl
        s += tl.trans(tl.load(p2c_rows + p2c_pos, mask=pair_valid_t, other=0.0)).to(tl.float32)
    if MASK_CAUSAL:
        # Keys after the query only: a real query's keys are all real. A padded query may keep padded keys
        # (their k and v load as zeros); its row is written as zeros anyway.
        s = tl.where(cols[None, :] <= offs_m[:, None], s * scale_log2e, float("-inf"))
    elif MASK_KEYS:
        s = tl.where(col_valid[None, :], s * scale_log2e, float("-inf"))
    else:
        s = s * scale_log2e

    # Every row meets a visible key in the first block it visits (key 0, or, causal, the block holding the
    # query block's first row, a real key), so m_new is finite in every row.
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    if MASK_KEYS:
        v = tl.load(v_base + cols[:, None] * stride_vl + offs_d[None, :], mask=col_valid[:, None], other=0.0)
    else:
        v = tl.load(v_base + cols[:, None] * stride_vl + offs_d[None, :])
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, lengths_ptr,
    c2p_ptr, p2c_ptr, c2p_index_rev_ptr, p2c_index_ptr,
    scale_log2e, H, L, L_KEY,
    stride_qb, stride_qh, stride_ql,
    stride_kb, stride_kh, stride_kl,
    stride_vb, stride_vh, stride_vl,
    stride_ob, stride_oh, stride_ol,
    stride_cb, stride_ch, stride_cl,
    stride_pb, stride_ph, stride_pl,
    HEAD_DIM: tl.constexpr, HAS_C2P: tl.constexpr, HAS_P2C: tl.constexpr, DOT_PRECISION: tl.constexpr,
    CAUSAL: tl.constexpr, KV_GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # L_KEY only keys the autotuner (a power of two at or above L); the kernel does not read it.
    # KV_GROUP = H // Hkv query heads share one key/value head (1 without grouped-query attention).
    if CAUSAL:
        # Heaviest query blocks (last rows, most keys) first, so the lightest make the tail of the launch.
        pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    else:
        pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    length = tl.minimum(tl.maximum(tl.load(lengths_ptr + b), 0), L)

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_valid = offs_m < length

    q_base = q_ptr + b * stride_qb + h * stride_qh
    k_base = k_ptr + b * stride_kb + (h // KV_GROUP) * stride_kh
    v_base = v_ptr + b * stride_vb + (h // KV_GROUP) * stride_vh
    q = tl.load(q_base + offs_m[:, None] * stride_ql + offs_d[None, :], mask=row_valid[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # A query block wholly past the length visits no key block; the others stop at the last real key.
    kv_end = tl.where(start_m < length, length, 0)
    if CAUSAL:
        # Key blocks wholly before the query block's first row: every key real and visible, no masks.
        below_end = tl.minimum((start_m // BLOCK_N) * BLOCK_N, kv_end)
        for start_n in range(0, below_end, BLOCK_N):
            acc, l_i, m_i = _attend_key_block(
                acc, l_i, m_i, q, start_n, offs_m, offs_n, offs_d, row_valid, length, k_base, v_base,
                c2p_ptr, p2c_ptr, c2p_index_rev_ptr, p2c_index_ptr, scale_log2e, b, h, L,
                stride_kl, stride_vl, stride_cb, stride_ch, stride_cl, stride_pb, stride_ph, stride_pl,
                HAS_C2P, HAS_P2C, DOT_PRECISION, False, False)
        # The diagonal: up to the block's last row; blocks wholly after it are never visited.
        for start_n in range(below_end, tl.minimum(start_m + BLOCK_M, kv_end), BLOCK_N):
            acc, l_i, m_i = _attend_key_block(
                acc, l_i, m_i, q, start_n, offs_m, offs_n, offs_d, row_valid, length, k_base, v_base,
                c2p_ptr, p2c_ptr, c2p_index_rev_ptr, p2c_index_ptr, scale_log2e, b, h, L,
                stride_kl, stride_vl, stride_cb, stride_ch, stride_cl, stride_pb, stride_ph, stride_pl,
                HAS_C2P, HAS_P2C, DOT_PRECISION, True, True)
    else:
        for start_n in range(0, kv_end, BLOCK_N):
            acc, l_i, m_i = _attend_key_block(
                acc, l_i, m_i, q, start_n, offs_m, offs_n, offs_d, row_valid, length, k_base, v_base,
                c2p_ptr, p2c_ptr, c2p_index_rev_ptr, p2c_index_ptr, scale_log2e, b, h, L,
                stride_kl, stride_vl, stride_cb, stride_ch, stride_cl, stride_pb, stride_ph, stride_pl,
                HAS_C2P, HAS_P2C, DOT_PRECISION, True, False)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = tl.where(row_valid[:, None], acc / l_safe[:, None], 0.0)
    out_base = out_ptr + b * stride_ob + h * stride_oh
    tl.store(out_base + offs_m[:, None] * stride_ol + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(offs_m < L)[:, None])


_INTERPRETED = is_interpreted(_attention_kernel)
# The interpreter runs one config (autotuning several fails there); small blocks keep its grids cheap.
_INTERPRETER_META = {"BLOCK_M": 32, "BLOCK_N": 16}
# Exact fp32 dots run on CUDA cores, not tensor cores: small tiles keep them from spilling (no tuning; fp32 on
# the GPU is for checks, not speed).
_FP32_GPU_META = {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
# Tiles for sm_90, first the one that compiled without spills for D = 64 with and without relative terms.
GPU_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=4),
]


def prune_gpu_configs(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """With relative terms, keep tiles of <= 32 scores per thread: the gathers' registers made larger ones
    spill (sm_90 builds: 128x128 with 8 warps spilled 760 bytes, 128x64 with 4 warps 16 bytes)."""
    if not (kwargs.get("HAS_C2P") or kwargs.get("HAS_P2C")):
        return configs
    return [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 32 * 32 * c.num_warps]


# The compiled kernel behind the autotuner (None under the interpreter); tests may narrow its configs.
autotuner = None if _INTERPRETED else triton.autotune(
    configs=GPU_CONFIGS, key=["L_KEY", "HEAD_DIM", "HAS_C2P", "HAS_P2C", "CAUSAL"],
    prune_configs_by={"early_config_prune": prune_gpu_configs})(_attention_kernel)


def _check_relative(name: str, rel: torch.Tensor | None, index: torch.Tensor | None,
                    batch_heads_length: tuple[int, int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Validate one relative term (both tensor and table, or neither); returns them ready for the kernel."""
    if (rel is None) != (index is None):
        raise ValueError(f"attention: {name} and {name}_index must be given together")
    if rel is None or index is None:
        return None, None
    batch, heads, length = batch_heads_length
    if rel.dim() != 4 or tuple(rel.shape[:3]) != (batch, heads, length):
        raise ValueError(f"attention: {name} must be [B, H, L, P] = [{batch}, {heads}, {length}, P], "
                         f"got {tuple(rel.shape)}")
    if tuple(index.shape) != (2 * length - 1,):
        raise ValueError(f"attention: {name}_index must have 2L - 1 = {2 * length - 1} entries, "
                         f"got {tuple(index.shape)}")
    if rel.stride(-1) != 1:
        rel = rel.contiguous()
    return rel, index.to(torch.int32).contiguous()


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q [B, H, L, D]; k and v one [B, Hkv, L, D] shape with H % Hkv == 0; one dtype."""
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape or k.shape[0] != q.shape[0] \
            or tuple(k.shape[2:]) != tuple(q.shape[2:]):
        raise ValueError(f"attention: q must be [B, H, L, D] and k, v one [B, Hkv, L, D] shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    heads, kv_heads = q.shape[1], k.shape[1]
    if kv_heads == 0 or heads % kv_heads != 0:
        raise ValueError(f"attention: query heads ({heads}) must be a multiple of key/value heads ({kv_heads})")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"attention: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float,
              c2p: torch.Tensor | None = None, p2c: torch.Tensor | None = None,
              c2p_index: torch.Tensor | None = None, p2c_index: torch.Tensor | None = None, *,
              out: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
    """Softmax attention of right-padded sequences, optionally causal, with grouped-query heads, or with
    DeBERTa's c2p/p2c terms (Triton).

    q: [B, H, L, D]; k, v: [B, Hkv, L, D] with H % Hkv == 0 (query head h reads key/value head
    h // (H // Hkv); Hkv == H is plain multi-head attention); last dims contiguous, D in (16, 32, 64, 128);
    lengths: [B] real tokens per row. causal: query i sees keys j <= i only.
    c2p, p2c: [B, H, L, P] (``q @ pos_key^T`` and ``k @ pos_query^T``) with int32 tables of 2L - 1 entries
    (see ``kernels.relative_position.relative_index_tables``); table entries must lie in [0, P).
    Returns [B, H, L, D] in q's dtype, zeros at padded query rows. Unless ``out`` is given, the result is a
    view of a [B, L, H, D] buffer, so ``result.transpose(1, 2).reshape(B, L, H * D)`` costs no copy.
    """
    _check_qkv(q, k, v)
    batch, heads, length, head_dim = q.shape
    kv_heads = k.shape[1]
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"attention: head dim {head_dim} not supported (one of {HEAD_DIMS})")
    if lengths.shape != (batch,):
        raise ValueError(f"attention: lengths must be [B] = [{batch}], got {tuple(lengths.shape)}")
    c2p, c2p_index = _check_relative("c2p", c2p, c2p_index, (batch, heads, length))
    p2c, p2c_index = _check_relative("p2c", p2c, p2c_index, (batch, heads, length))
    check_devices("attention", _INTERPRETED, {"q": q, "k": k, "v": v, "lengths": lengths, "c2p": c2p,
                                              "p2c": p2c, "c2p_index": c2p_index, "p2c_index": p2c_index})
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if out is None:
        out = torch.empty((batch, length, heads, head_dim), dtype=q.dtype, device=q.device).transpose(1, 2)
    elif out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1:
        raise ValueError(f"attention: out must be {tuple(q.shape)} {q.dtype} with a contiguous last dim")
    if out.numel() == 0:
        return out
    lengths = lengths.to(torch.int32)
    # Absent terms: any tensor stands in for the pointer; HAS_* = False keeps the kernel from reading it.
    c2p_arg, p2c_arg = (c2p if c2p is not None else q), (p2c if p2c is not None else q)
    c2p_index_arg = c2p_index.flip(0) if c2p_index is not None else lengths  # see the kernel's gathers
    p2c_index_arg = p2c_index if p2c_index is not None else lengths

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(length, meta["BLOCK_M"]), batch * heads

    args = (q, k, v, out, lengths, c2p_arg, p2c_arg, c2p_index_arg, p2c_index_arg,
            float(scale) * LOG2_E, heads, length, next_power_of_two(length),
            *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
            *c2p_arg.stride()[:3], *p2c_arg.stride()[:3])
    flags = {"HEAD_DIM": head_dim, "HAS_C2P": c2p is not None, "HAS_P2C": p2c is not None,
             "DOT_PRECISION": dot_precision(q.dtype), "CAUSAL": bool(causal), "KV_GROUP": heads // kv_heads}
    if autotuner is None:
        _attention_kernel[grid](*args, **flags, **_INTERPRETER_META)
    elif q.dtype == torch.float32:
        _attention_kernel[grid](*args, **flags, **_FP32_GPU_META)
    else:
        autotuner[grid](*args, **flags)
    return out


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float,
                        c2p: torch.Tensor | None = None, p2c: torch.Tensor | None = None,
                        c2p_index: torch.Tensor | None = None, p2c_index: torch.Tensor | None = None, *,
                        causal: bool = False) -> torch.Tensor:
    """``attention`` in plain PyTorch: dense fp32 scores [B, H, L, L], masked softmax; output in q's dtype.

    Differentiable, and its gradients stay finite (a row with no visible key, length 0, gets zeros), so it
    serves as the training path. Grouped k and v are broadcast over their query heads, not copied.
    """
    _check_qkv(q, k, v)
    batch, heads, length, head_dim = q.shape
    group = heads // k.shape[1]
    # [B, Hkv, G, L, D] @ [B, Hkv, 1, D, L]: query head h = kv head * G + g, as h // G in the kernel.
    grouped_q = q.float().reshape(batch, k.shape[1], group, length, head_dim)
    scores = torch.matmul(grouped_q, k.float().transpose(-1, -2)[:, :, None]).reshape(batch, heads, length, length)
    positions = torch.arange(length, device=q.device)
    distance = positions[:, None] - positions[None, :] + length - 1  # [i, j] -> i - j + L - 1
    full = (batch, heads, length, length)
    if c2p is not None and c2p_index is not None:
        c2p_pos = c2p_index.long()[distance]  # [i, j]
        scores = scores + torch.gather(c2p.float(), -1, c2p_pos.expand(full))
    if p2c is not None and p2c_index is not None:
        p2c_pos = p2c_index.long()[distance]  # [i, j]; the term is p2c[j, p2c_pos[i, j]]
        scores = scores + torch.gather(p2c.float(), -1, p2c_pos.T.expand(full)).transpose(-1, -2)
    lengths = lengths.to(q.device).long().clamp(0, length)
    valid = positions[None, :] < lengths[:, None]  # [B, L]
    visible = valid[:, None, None, :]  # [B, 1, 1 or L, L]
    if causal:
        visible = visible & (positions[None, :] <= positions[:, None])
    # The most negative finite float, not -inf: a row with no visible key then softmaxes to finite (uniform)
    # values instead of NaN, whose gradients would poison the training path; the row is zeroed below.
    scores = (scores * scale).masked_fill(~visible, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1).reshape(batch, k.shape[1], group, length, length)
    out = torch.matmul(probs, v.float()[:, :, None]).reshape(batch, heads, length, head_dim)
    return out.masked_fill(~valid[:, None, :, None], 0.0).to(q.dtype)
