"""From a validated pipeline to shard tasks with fingerprints.

Every output shard gets a fingerprint computed before anything runs: a digest of its stage's
config hash and the fingerprints of the shards it reads. Input files are fingerprinted by path,
size and mtime; a stage's shard fingerprint chains its upstream's. A shard is done when its stats
file (written last, atomically) carries the expected fingerprint, so a rerun after a kill or a
config change redoes exactly the shards whose inputs or settings changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from curator.pipeline import Pipeline, StageSpec
from curator.storage import digest, join, read_json, shard_name

STATS_DIR = "_stats"
REJECTED_DIR = "_rejected"
WORK_DIR = "_work"
MANIFEST = "_manifest.json"
DEDUP_SUMMARY = "_fuzzy_dedup.json"
"""A dedup.fuzzy stage's summary (clusters, sizes), beside its shards; the report shows it."""
CONTAMINATION_REPORT = "_contamination.json"
"""A dedup.decontaminate stage's report (benchmark items found where), beside its shards."""
LLM_STATS = "_llm_stats.json"
"""An LLM stage's merged request counts (requests, failures, tokens, latencies), beside its shards."""
ENSEMBLE_SUMMARY = "_ensemble.json"
"""A classify.ensemble stage's summary (thresholds, bucket histograms, label shares), beside its shards."""
TOKEN_COUNTS = "_token_counts.json"
"""A tokens.count stage's totals (documents and tokens, overall and per label), beside its shards."""
BLEND_MANIFEST = "_blend.json"
"""A blend stage's manifest (budget, sources, per-phase tokens, weights and epochs), beside its shards."""


@dataclass(frozen=True)
class StageRef:
    """What a worker needs to build a stage: where to find its class, and its parameters."""

    stage_id: str
    uses: str
    params: dict
    config_hash: str
    imports: tuple[str, ...] = ()
    base_dir: str = "."


@dataclass(frozen=True)
class ShardTask:
    """One output shard of one stage: what it reads, where it writes, and its fingerprint."""

    stage_id: str
    index: int
    inputs: tuple[str, ...]
    fingerprint: str
    output: str
    stats_path: str
    rejected_path: str | None
    upstream: tuple[tuple[str, int], ...] = ()

    @property
    def name(self) -> str:
        """The shard's file stem, e.g. ``part-00003``."""
        return shard_name(self.index)


@dataclass
class StagePlan:
    """All shard tasks of one stage."""

    spec: StageSpec
    ref: StageRef
    directory: str
    shards: list[ShardTask]
    input_fingerprints: list[str]
    upstream_stages: list[str] = field(default_factory=list)
    inputs_by_upstream: dict[str, list[str]] = field(default_factory=dict)

    @property
    def stage_fingerprint(self) -> str:
        """A digest of the stage's config and all its inputs."""
        return digest([self.ref.config_hash, self.input_fingerprints])


def config_hash(spec: StageSpec) -> str:
    """A digest of what determines a stage's output: its name, version and parameters."""
    return digest({
        "uses": spec.uses,
        "version": type(spec.stage).version,
        "params": spec.stage.model_dump(mode="json"),
        "keep_rejected": spec.keep_rejected,
    })


def build_plan(pipeline: Pipeline) -> dict[str, StagePlan]:
    """Shard tasks for every stage, in the pipeline's dependency order."""
    plans: dict[str, StagePlan] = {}
    for spec in pipeline.stages:
        directory = join(pipeline.run_dir, spec.id)
        ref = StageRef(
            spec.id, spec.uses, spec.stage.model_dump(mode="json"), config_hash(spec),
            tuple(pipeline.imports), pipeline.base_dir,
        )
        # Upstream shards in `from:` order: (path, fingerprint, producing stage and index or None).
        sources: list[tuple[str, str, tuple[str, int] | None]] = []
        for up in spec.upstream:
            if up in pipeline.inputs:
                sources += [(f.path, f.fingerprint, None) for f in pipeline.inputs[up].files]
            else:
                sources += [(t.output, t.fingerprint, (up, t.index)) for t in plans[up].shards]
        input_fps = [fp for _, fp, _ in sources]
        shards: list[ShardTask] = []
        if spec.kind == "global":
            count = spec.stage.num_output_shards(len(sources))  # type: ignore[attr-defined]
            stage_fp = digest([ref.config_hash, input_fps])
            all_inputs = tuple(p for p, _, _ in sources)
            all_up = tuple(u for _, _, u in sources if u is not None)
            for i in range(count):
                shards.append(_task(spec, directory, i, all_inputs, digest([stage_fp, i]), all_up))
        else:
            for i, (path, fp, up) in enumerate(sources):
                shards.append(_task(spec, directory, i, (path,), digest([ref.config_hash, fp]), (up,) if up else ()))
        upstream_stages = [u for u in spec.upstream if u in plans]
        by_upstream = {up: ([f.path for f in pipeline.inputs[up].files] if up in pipeline.inputs
                            else [t.output for t in plans[up].shards]) for up in spec.upstream}
        plans[spec.id] = StagePlan(spec, ref, directory, shards, input_fps, upstream_stages, by_upstream)
    return plans


def _task(spec: StageSpec, directory: str, index: int, inputs: tuple[str, ...], fingerprint: str,
          upstream: tuple[tuple[str, int], ...]) -> ShardTask:
    name = shard_name(index)
    return ShardTask(
        stage_id=spec.id,
        index=index,
        inputs=inputs,
        fingerprint=fingerprint,
        output=join(directory, f"{name}.parquet"),
        stats_path=join(directory, STATS_DIR, f"{name}.json"),
        rejected_path=join(directory, REJECTED_DIR, f"{name}.parquet") if spec.keep_rejected else None,
        upstream=upstream,
    )


def finished_stats(task: ShardTask) -> dict | None:
    """The stats record of a shard if it is done with the expected fingerprint, else None."""
    record = read_json(task.stats_path)
    if isinstance(record, dict) and record.get("fingerprint") == task.fingerprint:
        return record
    return None
