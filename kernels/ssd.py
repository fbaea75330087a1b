"""The Mamba2 SSD scan (state space duality), chunked: y = SSM(x) with per-head scalar decay, plus the D skip.

Per batch row and head (head i reads B and C of group i // (h // g)), with dt = clamp(softplus(dt + dt_bias)):

    state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t^T        (state: [p, n], x_t: [p], B_t, C_t: [n])
    y_t     = state_t C_t + D x_t

The chunked form splits the sequence into chunks of Q steps. With cs the within-chunk cumulative sum of
dt A, the chunk's output is a masked "attention" inside the chunk plus the carried-in state:

    y[m] = sum_{s <= m} (C_m . B_s) exp(cs_m - cs_s) dt_s x_s  +  exp(cs_m) S_in C_m  +  D x_m
    S_in(next chunk) = exp(cs_last) S_in + sum_s exp(cs_last - cs_s) dt_s x_s B_s^T

Three Triton kernels (the design of mamba_ssm's ssd_combined, written afresh):
1. ``_dt_cumsum_kernel``: dt bias, softplus and clamp fused; dt and cs per chunk, [b, h, chunks, Q] fp32
   (zero dt past the end of the sequence, so a ragged last chunk needs no other mask in the state math).
   cs is summed in fp64 and stored as two fp32 parts, hi + lo. The decays need differences cs_m - cs_s of
   nearby steps; with plain fp32 sums those lose ulp(|cs|) (a chunk whose dt A sums to -1000 would get weights
   wrong by 1e-4 relative), while (hi_m - hi_s) + (lo_m - lo_s) is as exact as the difference itself, for three
   fp32 adds (fp64 in the scan kernel would cost a slow fp64 -> fp32 conversion per weight).
2. ``_chunk_state_passing_kernel``: chunk states and state passing fused. One program per (b, h, tile of
   [p, n]) walks the chunks in order: it stores the carried-in state of each chunk, then adds that chunk's own
   state (x^T (dt exp(cs_last - cs)) B, one tl.dot per BLOCK_K steps) to the decayed running state. Fusing
   keeps each chunk's own state in registers (separate kernels write b * chunks * h * p * n fp32 states that
   the state passing reads back); only the carried-in states are stored, in x's dtype. The work stays
   parallel over b * h * tiles: 1024 programs at Nemotron-H-8B's shapes with batch 4.
3. ``_chunk_scan_kernel``: one program per (tile of Q positions, tile of p, b, chunk, h): C S_in^T scaled by
   exp(cs), then the within-chunk part with the C B^T product fused (computed per tile, never stored),
   masked by the causal decay exp(cs_m - cs_s) and weighted by dt, times x; then D x. fp32 accumulation,
   y in x's dtype.

Supported: any l >= 0, chunk_size a power of two >= 16, head_dim p >= 1 (tiled and masked), state size n in
1..256 (a chunk-scan program holds C's whole rows), h % g == 0. ``ssd_scan_reference`` is the chunked algorithm
in differentiable PyTorch (fp32), ``ssd_recurrence_reference`` the step-by-step recurrence above.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import check_devices, dot_precision, is_interpreted, next_power_of_two

MAX_STATE_SIZE = 256
MAX_GRID_Y = 65535  # CUDA's limit on the second grid axis (batch x chunks in the chunk scan)


@triton.jit
def _dt_cumsum_kernel(
    dt_ptr, dt_bias_ptr, a_ptr, dt_out_ptr, cs_out_ptr, cs_lo_out_ptr,
    L, H, NCHUNKS, dt_min, dt_max,
    stride_dt_b, stride_dt_l,
    HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, CHUNK: tl.constexpr, BLOCK_H: tl.constexpr,
):
    pid_bc = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = (pid_bc // NCHUNKS).to(tl.int64)
    c = pid_bc % NCHUNKS
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_q = tl.arange(0, CHUNK)
    t = c * CHUNK + offs_q
    h_valid = offs_h < H
    valid = h_valid[:, None] & (t < L)[None, :]
    dt = tl.load(dt_ptr + b * stride_dt_b + t[None, :].to(tl.int64) * stride_dt_l + offs_h[:, None], mask=valid,
                 other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + offs_h, mask=h_valid, other=0.0).to(tl.float32)[:, None]
    if DT_SOFTPLUS:
        dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(dt)))  # F.softplus: identity above 20
    dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    dt = tl.where(valid, dt, 0.0)  # steps past the end neither decay nor add anything
    a = tl.load(a_ptr + offs_h, mask=h_valid, other=0.0).to(tl.float32)
    cs = tl.cumsum((dt * a[:, None]).to(tl.float64), axis=1)
    cs_hi = cs.to(tl.float32)
    cs_lo = (cs - cs_hi.to(tl.float64)).to(tl.float32)
    out_offs = ((b * H + offs_h[:, None]) * NCHUNKS + c) * CHUNK + offs_q[None, :]
    tl.store(dt_out_ptr + out_offs, dt, mask=h_valid[:, None])
    tl.store(cs_out_ptr + out_offs, cs_hi, mask=h_valid[:, None])
    tl.store(cs_lo_out_ptr + out_offs, cs_lo, mask=h_valid[:, None])


@triton.jit
def _chunk_state_passing_kernel(
    x_ptr, b_ptr, dt_ptr, cs_ptr, cs_lo_ptr, states_ptr,
    L, H, NCHUNKS, HEADS_PER_GROUP, P, N,
    stride_x_b, stride_x_l, stride_x_h,
    stride_b_b, stride_b_l, stride_b_g,
    stride_s_b, stride_s_c, stride_s_h, stride_s_p,
    DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_pn = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    g = h // HEADS_PER_GROUP
    n_tiles = tl.cdiv(N, BLOCK_N)
    offs_p = (pid_pn // n_tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = (pid_pn % n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    p_valid = offs_p < P
    n_valid = offs_n < N

    x_base = x_ptr + b * stride_x_b + h * stride_x_h
    b_base = b_ptr + b * stride_b_b + g * stride_b_g
    s_ptrs = states_ptr + b * stride_s_b + h * stride_s_h + offs_p[:, None] * stride_s_p + offs_n[None, :]
    s_mask = p_valid[:, None] & n_valid[None, :]
    head_chunks = (b * H + h) * NCHUNKS

    running = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    tl.store(s_ptrs, running.to(states_ptr.dtype.element_ty), mask=s_mask)  # nothing carried into chunk 0
    for c in range(1, NCHUNKS):
        # The state chunk c - 1 adds: sum_s exp(cs_last - cs_s) dt_s x_s B_s^T.
        prev = c - 1
        cs_base = cs_ptr + (head_chunks + prev) * CHUNK
        cs_lo_base = cs_lo_ptr + (head_chunks + prev) * CHUNK
        dt_base = dt_ptr + (head_chunks + prev) * CHUNK
        cs_last = tl.load(cs_base + CHUNK - 1)
        cs_lo_last = tl.load(cs_lo_base + CHUNK - 1)
        local = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
        for k in range(0, CHUNK, BLOCK_K):
            t = (prev * CHUNK + k + offs_k).to(tl.int64)
            t_valid = t < L
            x_t = tl.load(x_base + t[None, :] * stride_x_l + offs_p[:, None],
                          mask=p_valid[:, None] & t_valid[None, :], other=0.0)  # [BLOCK_P, BLOCK_K]
            b_t = tl.load(b_base + t[:, None] * stride_b_l + offs_n[None, :],
                          mask=t_valid[:, None] & n_valid[None, :], other=0.0)  # [BLOCK_K, BLOCK_N]
            to_end = (cs_last - tl.load(cs_base + k + offs_k)) + (cs_lo_last - tl.load(cs_lo_base + k + offs_k))
            weight = tl.exp(to_end) * tl.load(dt_base + k + offs_k)
            x_w = (x_t.to(tl.float32) * weight[None, :]).to(b_t.dtype)
            local = tl.dot(x_w, b_t, local, input_precision=DOT_PRECISION)
        running = running * tl.exp(cs_last) + local
        s_ptrs += stride_s_c  # a pointer step per chunk: c * stride_s_c could overflow int32
        tl.store(s_ptrs, running.to(states_ptr.dtype.element_ty), mask=s_mask)


@triton.jit
def _chunk_scan_kernel(
    x_ptr, b_ptr, c_ptr, d_ptr, dt_ptr, cs_ptr, cs_lo_ptr, states_ptr, y_ptr,
    L, H, NCHUNKS, HEADS_PER_GROUP, P, N,
    stride_x_b, stride_x_l, stride_x_h,
    stride_b_b, stride_b_l, stride_b_g,
    stride_c_b, stride_c_l, stride_c_g,
    stride_s_b, stride_s_c, stride_s_h, stride_s_p,
    stride_y_b, stride_y_l, stride_y_h,
    HAS_D: tl.constexpr, DOT_PRECISION: tl.constexpr, CHUNK: tl.constexpr, BLOCK_DSTATE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid_mp = tl.program_id(0)
    pid_bc = tl.program_id(1)
    h = tl.program_id(2)
    b = (pid_bc // NCHUNKS).to(tl.int64)
    c = pid_bc % NCHUNKS
    g = h // HEADS_PER_GROUP
    p_tiles = tl.cdiv(P, BLOCK_P)
    pid_m = pid_mp // p_tiles
    chunk_start = c * CHUNK
    chunk_len = tl.minimum(CHUNK, L - chunk_start)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # positions within the chunk
    offs_p = (pid_mp % p_tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_DSTATE)
    m_valid = offs_m < chunk_len
    p_valid = offs_p < P
    n_valid = offs_n < N

    cs_base = cs_ptr + ((b * H + h) * NCHUNKS + c) * CHUNK
    cs_lo_base = cs_lo_ptr + ((b * H + h) * NCHUNKS + c) * CHUNK
    dt_base = dt_ptr + ((b * H + h) * NCHUNKS + c) * CHUNK
    x_base = x_ptr + b * stride_x_b + h * stride_x_h + chunk_start.to(tl.int64) * stride_x_l
    b_base = b_ptr + b * stride_b_b + g * stride_b_g + chunk_start.to(tl.int64) * stride_b_l
    c_base = c_ptr + b * stride_c_b + g * stride_c_g + chunk_start.to(tl.int64) * stride_c_l
    cs_m = tl.load(cs_base + offs_m)
    cs_lo_m = tl.load(cs_lo_base + offs_m)
    c_m = tl.load(c_base + offs_m[:, None] * stride_c_l + offs_n[None, :], mask=m_valid[:, None] & n_valid[None, :],
                  other=0.0)  # [BLOCK_M, BLOCK_DSTATE]

    # The carried-in state: exp(cs_m) C_m . S_in (S_in stored [p, n]; read here as [n, p]).
    s_base = states_ptr + b * stride_s_b + c.to(tl.int64) * stride_s_c + h * stride_s_h
    s_in = tl.load(s_base + offs_p[None, :] * stride_s_p + offs_n[:, None], mask=n_valid[:, None] & p_valid[None, :],
                   other=0.0)
    acc = tl.dot(c_m, s_in.to(c_m.dtype), input_precision=DOT_PRECISION) * tl.exp(cs_m)[:, None]

    # Within the chunk, sources s <= m only: blocks past this tile's last row are not visited.
    k_end = tl.minimum((pid_m + 1) * BLOCK_M, chunk_len)
    for k in range(0, k_end, BLOCK_K):
        offs_k = k + tl.arange(0, BLOCK_K)
        k_valid = offs_k < chunk_len
        b_k = tl.load(b_base + offs_k[None, :] * stride_b_l + offs_n[:, None],
                      mask=n_valid[:, None] & k_valid[None, :], other=0.0)  # [BLOCK_DSTATE, BLOCK_K]
        cb = tl.dot(c_m, b_k, input_precision=DOT_PRECISION)  # [BLOCK_M, BLOCK_K]
        causal = offs_m[:, None] >= offs_k[None, :]
        segment = ((cs_m[:, None] - tl.load(cs_base + offs_k)[None, :])
                   + (cs_lo_m[:, None] - tl.load(cs_lo_base + offs_k)[None, :]))
        decay = tl.exp(tl.where(causal, segment, float("-inf")))
        weight = cb * decay * tl.load(dt_base + offs_k)[None, :]
        x_k = tl.load(x_base + offs_k[:, None] * stride_x_l + offs_p[None, :],
                      mask=k_valid[:, None] & p_valid[None, :], other=0.0)  # [BLOCK_K, BLOCK_P]
        acc = tl.dot(weight.to(x_k.dtype), x_k, acc, input_precision=DOT_PRECISION)

    out_mask = m_valid[:, None] & p_valid[None, :]
    if HAS_D:
        x_m = tl.load(x_base + offs_m[:, None] * stride_x_l + offs_p[None, :], mask=out_mask, other=0.0)
        acc += tl.load(d_ptr + h).to(tl.float32) * x_m.to(tl.float32)
    y_ptrs = (y_ptr + b * stride_y_b + h * stride_y_h + (chunk_start + offs_m[:, None]).to(tl.int64) * stride_y_l
              + offs_p[None, :])
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_mask)


_INTERPRETED = is_interpreted(_chunk_scan_kernel)
# The cumsum kernel is a sliver of the work: one fixed shape everywhere (BLOCK_H heads x the whole chunk).
_CUMSUM_META = {"BLOCK_H": 8}
# The interpreter runs one config per kernel (autotuning several fails there); every tl.dot side is >= 16, and
# the blocks are small so the tests walk several tiles and k steps. Block sizes above the chunk are cut to it.
_INTERPRETER_META = {"BLOCK_M": 16, "BLOCK_K": 16, "BLOCK_P": 16}
_INTERPRETER_STATE_META = {"BLOCK_P": 16, "BLOCK_N": 16, "BLOCK_K": 16}
# Exact fp32 dots run on CUDA cores: small tiles keep them from spilling (fp32 on the GPU is for checks).
_FP32_GPU_META = {"BLOCK_M": 32, "BLOCK_K": 32, "BLOCK_P": 32, "num_warps": 4, "num_stages": 2}
_FP32_GPU_STATE_META = {"BLOCK_P": 32, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}
# Chunk-scan tiles for sm_90 bf16/fp16 (Nemotron-H: p = 64, n = 128, chunk 128 or 256); not yet tuned on an H100.
GPU_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 64, "BLOCK_P": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 32, "BLOCK_P": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_K": 64, "BLOCK_P": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_K": 32, "BLOCK_P": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_K": 64, "BLOCK_P": 32}, num_warps=4, num_stages=3),
]
# Chunk-state + state-passing tiles of the [p, n] state for sm_90.
GPU_STATE_CONFIGS = [
    triton.Config({"BLOCK_P": 64, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_P": 64, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_P": 32, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_P": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
]


def _fit_meta(meta: dict, chunk: int) -> dict:
    """``meta`` with the position blocks (BLOCK_M, BLOCK_K) cut to the chunk, which they must tile exactly."""
    return {key: min(value, chunk) if key in ("BLOCK_M", "BLOCK_K") else value for key, value in meta.items()}


def fit_configs_to_chunk(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Autotuner prune hook: each config with its position blocks cut to CHUNK (duplicates dropped), so that
    chunk sizes below a config's blocks (16, 32) still find valid tiles."""
    chunk = int(kwargs["CHUNK"])  # type: ignore[arg-type]
    fitted: dict[tuple, triton.Config] = {}
    for config in configs:
        meta = _fit_meta(config.kwargs, chunk)
        key = (tuple(sorted(meta.items())), config.num_warps, config.num_stages)
        fitted.setdefault(key, triton.Config(meta, num_warps=config.num_warps, num_stages=config.num_stages))
    return list(fitted.values())


# The compiled kernels behind their autotuners (None under the interpreter); tests may narrow their configs.
autotuner = None if _INTERPRETED else triton.autotune(
    configs=GPU_CONFIGS, key=["CHUNK", "P", "BLOCK_DSTATE", "HAS_D"],
    prune_configs_by={"early_config_prune": fit_configs_to_chunk})(_chunk_scan_kernel)
state_autotuner = None if _INTERPRETED else triton.autotune(
    configs=GPU_STATE_CONFIGS, key=["CHUNK", "P", "N"],
    prune_configs_by={"early_config_prune": fit_configs_to_chunk})(_chunk_state_passing_kernel)


def _check_inputs(name: str, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                  D: torch.Tensor | None, chunk_size: int, dt_bias: torch.Tensor | None) -> None:
    """Shapes and sizes the contract allows; a ValueError naming ``name`` otherwise."""
    if x.dim() != 4:
        raise ValueError(f"{name}: x must be [b, l, h, p], got {tuple(x.shape)}")
    batch, length, heads, _ = x.shape
    if tuple(dt.shape) != (batch, length, heads):
        raise ValueError(f"{name}: dt must be [b, l, h] = {(batch, length, heads)}, got {tuple(dt.shape)}")
    if tuple(A.shape) != (heads,):
        raise ValueError(f"{name}: A must be [h] = [{heads}], got {tuple(A.shape)}")
    if B.dim() != 4 or tuple(B.shape[:2]) != (batch, length) or B.shape != C.shape:
        raise ValueError(f"{name}: B and C must share one [b, l, g, n] shape with b, l = {(batch, length)}, got "
                         f"{tuple(B.shape)}, {tuple(C.shape)}")
    groups, state = B.shape[2], B.shape[3]
    if groups < 1 or heads % groups != 0:
        raise ValueError(f"{name}: heads {heads} not a multiple of groups {groups}")
    if not 1 <= state <= MAX_STATE_SIZE:
        raise ValueError(f"{name}: state size {state} not supported (1..{MAX_STATE_SIZE})")
    if D is not None and tuple(D.shape) != (heads,):
        raise ValueError(f"{name}: D must be [h] = [{heads}], got {tuple(D.shape)}")
    if dt_bias is not None and tuple(dt_bias.shape) != (heads,):
        raise ValueError(f"{name}: dt_bias must be [h] = [{heads}], got {tuple(dt_bias.shape)}")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"{name}: chunk_size must be a power of two >= 16, got {chunk_size}")


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def ssd_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             D: torch.Tensor | None, chunk_size: int, *, dt_bias: torch.Tensor | None = None,
             dt_softplus: bool = True, dt_min: float = 0.0, dt_max: float = float("inf")) -> torch.Tensor:
    """The Mamba2 SSD scan (Triton, no autograd): y [b, l, h, p] in x's dtype.

    x [b, l, h, p]; dt [b, l, h] raw (dt = clamp(softplus(dt + dt_bias), dt_min, dt_max), softplus only when
    ``dt_softplus``); A [h] (negative); B, C [b, l, g, n] with h % g == 0 (head i uses group i // (h // g));
    D [h] or None (y += D x). x, dt, B, C may be strided views; their last dim is made contiguous if it is not.
    chunk_size: a power of two >= 16. fp32 accumulation and state; the states carried between chunks are
    stored in x's dtype.
    """
    _check_inputs("ssd_scan", x, dt, A, B, C, D, chunk_size, dt_bias)
    check_devices("ssd_scan", _INTERPRETED, {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "dt_bias": dt_bias})
    if B.dtype != x.dtype or C.dtype != x.dtype:
        raise ValueError(f"ssd_scan: B, C dtypes {B.dtype}, {C.dtype} differ from x's {x.dtype}")
    batch, length, heads, head_dim = x.shape
    groups, state = B.shape[2], B.shape[3]
    y = torch.empty((batch, length, heads, head_dim), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    chunks = triton.cdiv(length, chunk_size)
    if batch * chunks > MAX_GRID_Y:
        raise ValueError(f"ssd_scan: batch x chunks = {batch * chunks} exceeds the grid's {MAX_GRID_Y}; "
                         f"split the batch or use a larger chunk_size")
    x, dt, B, C = (_last_dim_contiguous(t) for t in (x, dt, B, C))
    A = A.float().contiguous()
    device = x.device

    dt_chunks = torch.empty((batch, heads, chunks, chunk_size), dtype=torch.float32, device=device)
    cs_chunks, cs_lo_chunks = torch.empty_like(dt_chunks), torch.empty_like(dt_chunks)
    block_h = min(_CUMSUM_META["BLOCK_H"], next_power_of_two(heads))
    _dt_cumsum_kernel[(batch * chunks, triton.cdiv(heads, block_h))](
        dt, dt_bias if dt_bias is not None else A, A, dt_chunks, cs_chunks, cs_lo_chunks,
        length, heads, chunks, float(dt_min), float(dt_max), dt.stride(0), dt.stride(1),
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=bool(dt_softplus), CHUNK=chunk_size, BLOCK_H=block_h)

    states = torch.empty((batch, chunks, heads, head_dim, state), dtype=x.dtype, device=device)
    common = (length, heads, chunks, heads // groups, head_dim, state)
    precision = dot_precision(x.dtype)

    def state_grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(head_dim, meta["BLOCK_P"]) * triton.cdiv(state, meta["BLOCK_N"]), batch * heads

    state_args = (x, B, dt_chunks, cs_chunks, cs_lo_chunks, states, *common, *x.stride()[:3], *B.stride()[:3],
                  *states.stride()[:4])
    if state_autotuner is None or x.dtype == torch.float32:
        meta = _INTERPRETER_STATE_META if state_autotuner is None else _FP32_GPU_STATE_META
        _chunk_state_passing_kernel[state_grid](*state_args, DOT_PRECISION=precision, CHUNK=chunk_size,
                                                **_fit_meta(meta, chunk_size))
    else:
        _launch_tuned(state_autotuner, state_grid, state_args, {"DOT_PRECISION": precision, "CHUNK": chunk_size})

    def scan_grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(chunk_size, meta["BLOCK_M"]) * triton.cdiv(head_dim, meta["BLOCK_P"]),
                batch * chunks, heads)

    scan_args = (x, B, C, D if D is not None else A, dt_chunks, cs_chunks, cs_lo_chunks, states, y, *common,
                 *x.stride()[:3], *B.stride()[:3], *C.stride()[:3], *states.stride()[:4], *y.stride()[:3])
    flags = {"HAS_D": D is not None, "DOT_PRECISION": precision, "CHUNK": chunk_size,
             "BLOCK_DSTATE": max(16, next_power_of_two(state))}
    if autotuner is None or x.dtype == torch.float32:
        meta = _INTERPRETER_META if autotuner is None else _FP32_GPU_META
        _chunk_scan_kernel[scan_grid](*scan_args, **flags, **_fit_meta(meta, chunk_size))
    else:
        _launch_tuned(autotuner, scan_grid, scan_args, flags)
    return y


def _launch_tuned(tuner: triton.runtime.Autotuner, grid: object, args: tuple, flags: dict) -> None:
    """Launch through the autotuner; with a single config (tests narrow them) launch it directly with its
    position blocks cut to the chunk, since Triton's autotuner skips the prune hook when there is one config."""
    if len(tuner.configs) > 1:
        tuner[grid](*args, **flags)
        return
    config = tuner.configs[0]
    tuner.fn[grid](*args, **flags, **_fit_meta(config.kwargs, int(flags["CHUNK"])), num_warps=config.num_warps,
                   num_stages=config.num_stages)


def _discretized_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool, dt_min: float,
                    dt_max: float) -> torch.Tensor:
    """clamp(softplus(dt + dt_bias), dt_min, dt_max) in fp32."""
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = torch.nn.functional.softplus(dt)
    return dt.clamp(min=dt_min, max=dt_max)


def _segment_sum(values: torch.Tensor) -> torch.Tensor:
    """[..., Q] -> [..., Q, Q]: entry (m, s) = sum of values[s+1 .. m] for s <= m, -inf above the diagonal.

    Summed from masked copies rather than as a difference of cumulative sums, which keeps the near-diagonal
    entries exact when the cumulative sums grow large (transformers' segment_sum does the same).
    """
    q = values.shape[-1]
    below = torch.tril(torch.ones(q, q, dtype=torch.bool, device=values.device), diagonal=-1)
    sums = torch.cumsum(values[..., :, None].expand(*values.shape, q).masked_fill(~below, 0.0), dim=-2)
    on_or_below = torch.tril(torch.ones(q, q, dtype=torch.bool, device=values.device))
    return sums.masked_fill(~on_or_below, float("-inf"))


def ssd_scan_reference(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None, chunk_size: int, *, dt_bias: torch.Tensor | None = None,
                       dt_softplus: bool = True, dt_min: float = 0.0, dt_max: float = float("inf")) -> torch.Tensor:
    """``ssd_scan`` in differentiable PyTorch: the chunked algorithm in fp32 (as transformers' torch path, with
    B and C kept per group instead of repeated per head); a Python loop over chunks for the state passing only.
    Returns y [b, l, h, p] in x's dtype."""
    _check_inputs("ssd_scan_reference", x, dt, A, B, C, D, chunk_size, dt_bias)
    batch, length, heads, head_dim = x.shape
    groups, state = B.shape[2], B.shape[3]
    per_group = heads // groups
    chunks = max(1, -(-length // chunk_size))
    pad = chunks * chunk_size - length
    q = chunk_size

    dt = _discretized_dt(dt, dt_bias, dt_softplus, dt_min, dt_max)
    pad_steps = (0, 0, 0, 0, 0, pad)  # padded steps have dt = 0: no decay, no input
    x32 = torch.nn.functional.pad(x.float(), pad_steps).view(batch, chunks, q, groups, per_group, head_dim)
    bc = torch.nn.functional.pad(B.float(), pad_steps).view(batch, chunks, q, groups, state)
    cc = torch.nn.functional.pad(C.float(), pad_steps).view(batch, chunks, q, groups, state)
    dt = torch.nn.functional.pad(dt, (0, 0, 0, pad)).view(batch, chunks, q, groups, per_group)
    da = (dt * A.float().view(groups, per_group)).permute(0, 1, 3, 4, 2)  # [b, c, g, r, q]
    cs = torch.cumsum(da, dim=-1)
    xdt = x32 * dt[..., None]

    # Within each chunk: (C_m . B_s) exp(cs_m - cs_s) for s <= m, applied to dt_s x_s.
    cb = torch.einsum("bclgn,bcsgn->bcgls", cc, bc)
    weights = cb[:, :, :, None] * torch.exp(_segment_sum(da))  # [b, c, g, r, l, s]
    y = torch.einsum("bcgrls,bcsgrp->bclgrp", weights, xdt)

    # Each chunk's own final state, then the states carried into each chunk (sequential over chunks).
    to_end = torch.exp(cs[..., -1:] - cs)  # [b, c, g, r, q]
    chunk_states = torch.einsum("bcsgn,bcsgrp->bcgrpn", bc, xdt * to_end.permute(0, 1, 4, 2, 3)[..., None])
    chunk_decay = torch.exp(cs[..., -1])  # [b, c, g, r]
    carried = [torch.zeros_like(chunk_states[:, 0])]
    for c in range(chunks - 1):
        carried.append(carried[-1] * chunk_decay[:, c, :, :, None, None] + chunk_states[:, c])
    states_in = torch.stack(carried, dim=1)  # [b, c, g, r, p, n]
    y = y + torch.einsum("bclgn,bcgrpn->bclgrp", cc, states_in) * torch.exp(cs).permute(0, 1, 4, 2, 3)[..., None]

    if D is not None:
        y = y + x32 * D.float().view(groups, per_group, 1)
    y = y.reshape(batch, chunks * q, heads, head_dim)[:, :length]
    return y.to(x.dtype)


def ssd_recurrence_reference(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                             D: torch.Tensor | None, chunk_size: int, *, dt_bias: torch.Tensor | None = None,
                             dt_softplus: bool = True, dt_min: float = 0.0,
                             dt_max: float = float("inf")) -> torch.Tensor:
    """The SSM step by step in fp32 (``chunk_size`` is checked, then unused): state = exp(dt A) state +
    dt x B^T, y = state C + D x. Slow (a Python loop over time steps); the ground truth for the tests."""
    _check_inputs("ssd_recurrence_reference", x, dt, A, B, C, D, chunk_size, dt_bias)
    batch, length, heads, head_dim = x.shape
    per_group = heads // B.shape[2]
    dt = _discretized_dt(dt, dt_bias, dt_softplus, dt_min, dt_max)
    b_heads = B.float().repeat_interleave(per_group, dim=2)  # [b, l, h, n]
    c_heads = C.float().repeat_interleave(per_group, dim=2)
    x32 = x.float()
    state = torch.zeros(batch, heads, head_dim, B.shape[3], dtype=torch.float32, device=x.device)
    outputs = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A.float())  # [b, h]
        state = state * decay[:, :, None, None] + (dt[:, t, :, None] * x32[:, t])[..., None] * b_heads[:, t, :, None]
        y_t = torch.einsum("bhpn,bhn->bhp", state, c_heads[:, t])
        if D is not None:
            y_t = y_t + D.float()[:, None] * x32[:, t]
        outputs.append(y_t)
    y = torch.stack(outputs, dim=1) if outputs else x32.new_zeros(batch, 0, heads, head_dim)
    return y.to(x.dtype)
