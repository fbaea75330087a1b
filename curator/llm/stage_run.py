"""What every LLM stage does the same way: find its tokenizer, and run its shards with caches and stats.

Each shard task gets its own response cache ``<stage>/_work/llm_cache/part-NNNNN.sqlite`` (one writer
per file) and writes its counts to ``<stage>/_work/llm_stats/part-NNNNN.json``; after the shards
(also after a failed one: the work done so far is worth reporting) the counts are merged into
``<stage>/_llm_stats.json``, which the report reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from curator.global_run import GlobalRun
from curator.llm.config import LLMConfig
from curator.plan import LLM_STATS, ShardTask
from curator.storage import is_remote, join, write_json_atomic

CACHE_DIR = "llm_cache"
STATS_DIR = "llm_stats"


def resolve_tokenizer_path(tokenizer_path: str | None, llm: LLMConfig, needed_for: str | None) -> str | None:
    """The tokenizer file a stage counts with: the GGUF model itself by default with backend llama_cpp;
    with other backends required when ``needed_for`` names what it is for; local paths made absolute and
    checked to exist."""
    if tokenizer_path is None:
        if llm.backend == "llama_cpp":
            tokenizer_path = llm.model_path
        elif needed_for is not None:
            raise ValueError(f"tokenizer_path is required with backend {llm.backend} "
                             f"(the model's tokenizer.json, for {needed_for})")
    if tokenizer_path and not is_remote(tokenizer_path):
        path = os.path.abspath(os.path.expanduser(tokenizer_path))
        if not os.path.exists(path):
            raise ValueError(f"tokenizer not found: {path} (in a pipeline file, relative to the file)")
        return path
    return tokenizer_path


class LLMStage(Protocol):
    """What :func:`run_llm_shards` needs of a stage."""

    name: str
    llm: LLMConfig

    def token_counter(self) -> Any: ...

    def model_dump(self, mode: str) -> dict[str, Any]: ...


ShardFunction = Callable[..., dict[str, Any]]
"""``fn(task, input_path, params, stage_id, cache_dir, stats_dir, batch_rows)``: writes one output shard."""
MergeFunction = Callable[[list[ShardTask], str, str, str], dict[str, Any]]
"""``merge(tasks, stats_dir, stage_id, model)``: the current shards' counts, merged."""


def run_llm_shards(ctx: GlobalRun, stage: LLMStage, output_shard: ShardFunction, merge_stats: MergeFunction,
                   summarize: Callable[[str, dict[str, Any]], None] | None = None) -> None:
    """One output shard per input shard through ``output_shard``, then the merged counts to ``_llm_stats.json``."""
    if is_remote(ctx.work_dir):
        raise ValueError(f"stage {ctx.stage_id} ({stage.name}): the response caches are SQLite files and need "
                         f"a local run directory, not {ctx.work_dir}")
    stage.token_counter()  # on the client: a bad tokenizer, budget or context fails before any task
    params = stage.model_dump(mode="json")
    inputs = ctx.input_shards
    cache_dir = join(ctx.work_dir, CACHE_DIR)
    stats_dir = join(ctx.work_dir, STATS_DIR)
    try:
        ctx.map_outputs(output_shard, params, ctx.stage_id, cache_dir, stats_dir, ctx.batch_rows,
                        per_task=lambda task: (inputs[task.index],))
    finally:
        merged = merge_stats(ctx.output_shards, stats_dir, ctx.stage_id, stage.llm.model_name)
        write_json_atomic(join(ctx.plan.directory, LLM_STATS), merged)
        if summarize is not None:
            summarize(ctx.stage_id, merged)
