"""Build every GPU config of the kernels for sm_90 (H100) on this machine, no GPU needed, and report each build.

For each config: registers per thread, stack bytes and local-memory instructions (spills), shared memory,
and the matrix instructions in the SASS (HGMMA is Hopper's warpgroup MMA; HMMA or none means a slower path).
Builds with the Triton installed here (the GPU machine may run another version, whose builds can differ).
This is how the configs in kernels/attention.py and kernels/linear.py were chosen and pruned.

    python benchmarks/kernels_sm90_build.py [--dtype bf16|fp16|fp32] [--head-dim 64]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This script lives beside benchmarks/kernels.py: take its folder off the import path so that `kernels` is the
# package. And build compiled kernels, not the interpreter's (triton.jit reads this when kernels is imported).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import kernels.attention  # noqa: E402
import kernels.layernorm  # noqa: E402
import kernels.linear  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def build(fn: object, types: dict[str, str], constexprs: dict[str, object], aligned: list[str],
          num_warps: int, num_stages: int) -> dict[str, object]:
    """Compile ``fn`` for sm_90 and read its resource use and matrix instructions off the cubin."""
    names = fn.arg_names
    signature = {name: "constexpr" if name in constexprs else types[name] for name in names}
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name in aligned}  # as a real launch specialises
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                              target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([str(CUOBJDUMP), "-res-usage", str(cubin)], capture_output=True, text=True).stdout
        sass = subprocess.run([str(CUOBJDUMP), "-sass", str(cubin)], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    return {"build s": round(seconds, 1), "regs": int(found.group(1)) if found else None,
            "stack B": int(found.group(2)) if found else None,
            "LDL/STL": len(re.findall(r"\b(?:LDL|STL)\b", sass)), "smem B": compiled.metadata.shared,
            "HGMMA": len(re.findall(r"\bHGMMA\b", sass)), "HMMA": len(re.findall(r"\bHMMA\b", sass))}


def report(label: str, config: triton.Config, result: dict[str, object]) -> None:
    """One line per build."""
    tiles = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    print(f"{label:28s} {tiles:50s} warps={config.num_warps} stages={config.num_stages}  "
          + "  ".join(f"{k} {v}" for k, v in result.items()), flush=True)


def build_attention(dtype: str, head_dim: int) -> None:
    """Every attention config, without and with the relative terms (after the autotuner's pruning)."""
    fn = kernels.attention._attention_kernel
    types = {name: "i32" for name in fn.arg_names}
    types.update({name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "v_ptr", "out_ptr", "c2p_ptr", "p2c_ptr")})
    types.update({"lengths_ptr": "*i32", "c2p_index_rev_ptr": "*i32", "p2c_index_ptr": "*i32", "scale_log2e": "fp32"})
    aligned = [n for n in fn.arg_names if n.endswith("_ptr") or n.startswith("stride_")]
    for relative in (False, True):
        flags = {"HEAD_DIM": head_dim, "CAUSAL": False, "KV_GROUP": 1, "HAS_C2P": relative, "HAS_P2C": relative,
                 "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32"}
        for config in kernels.attention.prune_gpu_configs(kernels.attention.GPU_CONFIGS, {}, **flags):
            result = build(fn, types, {**flags, **config.kwargs}, aligned, config.num_warps, config.num_stages)
            report(f"attention D={head_dim}{' +c2p+p2c' if relative else ''}", config, result)


def build_linear(dtype: str) -> None:
    """Every linear config, with and without the GELU epilogue (after the autotuner's pruning)."""
    fn = kernels.linear._linear_kernel
    types = {name: "i32" for name in fn.arg_names}
    types.update({name: f"*{dtype}" for name in ("x_ptr", "w_ptr", "bias_ptr", "out_ptr")})
    aligned = ["x_ptr", "w_ptr", "bias_ptr", "out_ptr", "N", "K", "stride_xm", "stride_wn", "stride_om"]
    for activation in ("none", "gelu"):
        flags = {"HAS_BIAS": True, "ACTIVATION": activation, "EVEN_K": True,
                 "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32"}
        for config in kernels.linear.prune_gpu_configs(kernels.linear.GPU_CONFIGS, {}, **flags):
            result = build(fn, types, {**flags, **config.kwargs}, aligned, config.num_warps, config.num_stages)
            report(f"linear {activation}", config, result)


def build_layernorm(dtype: str) -> None:
    """The LayerNorm kernel at BERT's width (768 -> a 1024 block, 4 warps)."""
    fn = kernels.layernorm._add_layernorm_kernel
    types = {name: f"*{dtype}" for name in fn.arg_names if name.endswith("_ptr")}
    types.update({"C": "i32", "stride_x": "i32", "stride_r": "i32", "stride_o": "i32", "eps": "fp32"})
    flags = {"HAS_RESIDUAL": True, "HAS_WEIGHT": True, "HAS_BIAS": True, "BLOCK_C": 1024}
    aligned = [n for n in fn.arg_names if n.endswith("_ptr") or n.startswith("stride_") or n == "C"]
    report("add_layernorm C=768", triton.Config({"BLOCK_C": 1024}, num_warps=4, num_stages=1),
           build(fn, types, flags, aligned, 4, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--head-dim", type=int, choices=list(kernels.attention.HEAD_DIMS), default=64)
    args = parser.parse_args()
    print(f"triton {triton.__version__}, target sm_90, {args.dtype}")
    build_attention(args.dtype, args.head_dim)
    build_linear(args.dtype)
    build_layernorm(args.dtype)


if __name__ == "__main__":
    main()
