"""Two-phase training blends (``blend.phases``): sources, a token budget, phases, and what a trainer reads.

The stage reads several datasets (``from: [crawl, math, synthetic]``), each row already counted by
``tokens.count`` (a ``tokens`` column). A *source* is one of those datasets with an optional row
condition (``quality_label == 'high'``, ``task == 'diverse_qa'``), a quality weight and an epoch
cap; *phases* take shares of the total budget and say which sources they may draw from. Steps,
each a resumable Dask phase:

1. ``select``: per (source, input shard), the rows matching the source's condition are written to
   ``<stage>/sources/<source>/part-NNNNN.parquet`` (``id``, ``text``, ``tokens``) and counted.
2. The solver (:mod:`stages.blend_solver`) turns supplies, weights, caps, shares and the budget into
   tokens per (phase, source), or fails naming the phase that cannot be filled, by how much, and
   the sources that ran out.
3. Outputs: per phase ``<stage>/<phase>.blend.txt``, a Megatron-LM ``--data-path`` value (``weight
   prefix`` pairs; a prefix is the source's folder, which Megatron's ``preprocess_data.py`` turns
   into ``<prefix>_text_document``), and ``<stage>/<phase>.manifest.json`` (tokens, epochs and
   weight per source); ``<stage>/_blend.json`` for all phases (the report draws it).
4. With ``materialize: true``: per (phase, source, source shard) the planned tokens are drawn
   (whole epochs, then a seeded shuffle filled greedily up to the remainder: documents that would
   overshoot are skipped while smaller ones fit), each drawn row gets a seeded random key, and
   ``<stage>/phases/<phase>/part-NNNNN.parquet`` are written, as many as ``shard_tokens`` asks for,
   each holding the rows whose key falls in it, sorted by key: shuffled across sources, the same
   for the same seed. Columns: ``id``, ``text``, ``tokens``, ``blend_source``, ``blend_epoch``.

The stage's own dataset is the plan: one row per (phase, source) with tokens, weight and epochs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curator.expressions import RowCondition
from curator.global_run import GlobalRun
from curator.plan import BLEND_MANIFEST, ShardTask
from curator.stage import GlobalStage, ShardStats
from curator.storage import ShardWriter, filesystem, join, read_batches, shard_name, write_json_atomic
from curator.tasks import write_shard
from stages.blend_solver import BlendPlan, PhaseSpec, SourceSupply, solve_blend

log = logging.getLogger("stages.blend")

SOURCE_COLUMNS = pa.schema([("id", pa.string()), ("text", pa.string()), ("tokens", pa.int64())])
BLENDED_COLUMNS = SOURCE_COLUMNS.append(pa.field("blend_source", pa.string())).append(
    pa.field("blend_epoch", pa.int32()))
PLAN_COLUMNS = pa.schema([("phase", pa.string()), ("source", pa.string()), ("tokens", pa.int64()),
                          ("weight", pa.float64()), ("epochs", pa.float64()), ("materialized_tokens", pa.int64())])


class BlendSource(BaseModel):
    """One source of the blend: rows of an upstream dataset, a quality weight and an epoch cap."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The source's name (a folder name).")
    dataset: str = Field(description="Which `from:` entry of the stage (a stage id or an input name) it reads.")
    condition: str | None = Field(None, description="Rows to take, e.g. \"quality_label == 'high'\" (default: all).")
    weight: float = Field(1.0, gt=0, description="Quality weight: 2 means twice the epochs of a weight-1 source.")
    max_epochs: float = Field(4.0, gt=0, description="Most passes over this source over all phases together.")

    @field_validator("condition")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            RowCondition.parse(value)
        return value


class BlendPhase(BaseModel):
    """One training phase: its share of the budget and the sources it may draw from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The phase's name (a folder name).")
    share: float = Field(gt=0, le=1, description="Share of the total budget (all phases sum to 1).")
    sources: list[str] = Field(min_length=1, description="Names of the sources it draws from.")
    weights: dict[str, float] | None = Field(None, description="Per-phase weights replacing the sources' own.")


class Blend(GlobalStage):
    """Two-phase training blends: per-phase weights under epoch caps, Megatron blend files, shuffled shards."""

    name = "blend.phases"
    requires = ()

    sources: list[BlendSource] = Field(min_length=1, description="The sources, each a dataset and a condition.")
    phases: list[BlendPhase] = Field(min_length=1, description="The phases, in training order.")
    budget_tokens: int = Field(gt=0, description="Total training tokens over all phases.")
    tokens_column: str = Field("tokens", description="Each row's token count (from tokens.count).")
    column: str = Field("text", description="The text column.")
    materialize: bool = Field(False, description="Write each phase's rows as shuffled shards sized by tokens.")
    shard_tokens: int = Field(100_000_000, gt=0, description="Tokens per materialised shard (about).")
    seed: int = Field(0, description="Seed of the draws and the shuffle.")

    @model_validator(mode="after")
    def _check(self) -> Blend:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {names}")
        for phase in self.phases:
            unknown = [s for s in phase.sources if s not in names]
            if unknown:
                raise ValueError(f"phase {phase.name}: unknown source(s) {unknown}; sources are {names}")
        if len({p.name for p in self.phases}) != len(self.phases):
            raise ValueError("phase names must be unique")
        return self

    def num_output_shards(self, num_input_shards: int) -> int:
        return 1

    def output_columns(self, input_columns: list[str]) -> list[str]:
        return list(PLAN_COLUMNS.names)

    def required_columns(self) -> tuple[str, ...]:
        return ()

    # ------------------------------------------------------------------ stage-level API

    def solve(self, supplies: dict[str, dict[str, int]]) -> BlendPlan:
        """The plan for these supplies (``{source: {"tokens": n, ...}}``)."""
        return solve_blend(
            [SourceSupply(s.name, int(supplies[s.name]["tokens"]), s.weight, s.max_epochs) for s in self.sources],
            [PhaseSpec(p.name, p.share, tuple(p.sources), p.weights) for p in self.phases], self.budget_tokens)

    # ------------------------------------------------------------------ the global run

    def run(self, ctx: GlobalRun) -> None:
        by_upstream = ctx.inputs_by_upstream
        for source in self.sources:
            if source.dataset not in by_upstream:
                raise ValueError(f"stage {ctx.stage_id} ({self.name}): source {source.name} reads {source.dataset!r}, "
                                 f"which is not in the stage's from: {sorted(by_upstream)}")
        directory = ctx.plan.directory
        params = self.model_dump(mode="json")
        items = [(s.name, i, path) for s in self.sources for i, path in enumerate(by_upstream[s.dataset])]
        counts = ctx.map("select", _select_source_rows, items, params, directory, ctx.stage_id, ctx.batch_rows)
        for source in self.sources:
            _remove_parts_from(join(directory, "sources", source.name), len(by_upstream[source.dataset]))
        supplies: dict[str, dict[str, Any]] = {s.name: {"tokens": 0, "documents": 0, "parts": []} for s in self.sources}
        for (name, index, _), result in zip(items, counts):
            supplies[name]["tokens"] += result["tokens"]
            supplies[name]["documents"] += result["documents"]
            if result["documents"]:
                supplies[name]["parts"].append({"index": index, "tokens": result["tokens"]})
        try:
            plan = self.solve(supplies)
        except ValueError as exc:
            raise ValueError(f"stage {ctx.stage_id} ({self.name}): {exc}") from exc
        materialized: dict[tuple[str, str], int] = {}
        if self.materialize:
            materialized = self._materialize(ctx, plan, supplies, params, directory)
        manifest = self.manifest(plan, supplies, directory, materialized)
        for phase in manifest["phases"]:
            write_json_atomic(join(directory, f"{phase['name']}.manifest.json"), phase)
            _write_text(join(directory, f"{phase['name']}.blend.txt"), megatron_data_path(phase, manifest["sources"]))
        write_json_atomic(join(directory, BLEND_MANIFEST), manifest)
        rows = [{"phase": p["name"], "source": name, "tokens": v["tokens"], "weight": v["weight"],
                 "epochs": v["epochs"], "materialized_tokens": v.get("materialized_tokens")}
                for p in manifest["phases"] for name, v in p["sources"].items()]
        ctx.map_outputs(_write_plan_shard, rows)
        log.info("%s: %s", ctx.stage_id, "; ".join(
            f"{p['name']} {p['tokens']:,} tokens from " + ", ".join(
                f"{n} {v['weight']:.3f}" for n, v in p["sources"].items()) for p in manifest["phases"]))

    def _materialize(self, ctx: GlobalRun, plan: BlendPlan, supplies: dict[str, dict[str, Any]],
                     params: dict[str, Any], directory: str) -> dict[tuple[str, str], int]:
        draws = []
        buckets: dict[str, int] = {}
        for p_index, phase in enumerate(plan.phases):
            buckets[phase.name] = max(1, round(phase.tokens / self.shard_tokens))
            for s_index, source in enumerate(self.sources):
                target = phase.allocations.get(source.name, 0)
                parts = supplies[source.name]["parts"]
                if not target or not parts:
                    continue
                for part, part_target in zip(parts, _split(target, [p["tokens"] for p in parts])):
                    if part_target:
                        draws.append((phase.name, source.name, part["index"], part_target, part["tokens"],
                                      [self.seed, p_index, s_index, part["index"]], buckets[phase.name]))
        # Draws of another configuration never mix with these: their folder is named by the stage's fingerprint.
        scratch = join(ctx.work_dir, "draws", ctx.plan.stage_fingerprint[:16])
        drawn = ctx.map("draw", _draw_rows, draws, directory, scratch)
        outputs = [(phase.name, k, buckets[phase.name]) for phase in plan.phases for k in range(buckets[phase.name])]
        written = ctx.map("shuffle", _write_phase_shard, outputs, directory, scratch)
        for phase in plan.phases:
            _remove_parts_from(join(directory, "phases", phase.name), buckets[phase.name])
        totals: dict[tuple[str, str], int] = {}
        for (phase, source, *_), tokens in zip(draws, drawn):
            totals[(phase, source)] = totals.get((phase, source), 0) + int(tokens)
        log.info("%s: wrote %d phase shards (%s rows)", ctx.stage_id, len(outputs), sum(written))
        return totals

    def manifest(self, plan: BlendPlan, supplies: dict[str, dict[str, Any]], directory: str,
                 materialized: dict[tuple[str, str], int]) -> dict[str, Any]:
        """The blend as JSON: budget, sources with supply and epochs, per phase tokens, weights and epochs."""
        epochs = plan.epochs()
        sources = {s.name: {"dataset": s.dataset, "condition": s.condition, "tokens": int(supplies[s.name]["tokens"]),
                            "documents": int(supplies[s.name]["documents"]), "weight": s.weight,
                            "max_epochs": s.max_epochs, "epochs": round(epochs.get(s.name, 0.0), 6),
                            "path": join(directory, "sources", s.name)} for s in self.sources}
        phases = []
        for spec, phase in zip(self.phases, plan.phases):
            weights = phase.weights()
            per_source = {}
            for name in spec.sources:
                tokens = int(phase.allocations.get(name, 0))
                entry: dict[str, Any] = {"tokens": tokens, "weight": round(weights.get(name, 0.0), 9),
                                         "epochs": round(tokens / sources[name]["tokens"], 6)
                                         if sources[name]["tokens"] else 0.0}
                if self.materialize:
                    entry["materialized_tokens"] = materialized.get((phase.name, name), 0)
                per_source[name] = entry
            out = {"name": phase.name, "share": spec.share, "tokens": phase.tokens, "sources": per_source}
            if self.materialize:
                out["path"] = join(directory, "phases", phase.name)
            phases.append(out)
        return {"stage": "blend", "budget_tokens": self.budget_tokens, "seed": self.seed, "sources": sources,
                "phases": phases, "materialized": self.materialize}


def megatron_data_path(phase: dict[str, Any], sources: dict[str, Any]) -> str:
    """Megatron-LM's ``--data-path`` value for a phase: ``weight prefix`` pairs of the sources it draws from."""
    pairs = [f"{v['weight']:.9f} {sources[name]['path']}_text_document"
             for name, v in phase["sources"].items() if v["tokens"] > 0]
    return " ".join(pairs) + "\n"


def _write_text(path: str, text: str) -> None:
    fs, fs_path = filesystem(path)
    tmp = fs_path + ".tmp"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, fs_path)


def _split(total: int, sizes: list[int]) -> list[int]:
    """``total`` split in proportion to ``sizes``, as integers that sum to ``total`` (largest remainder)."""
    whole = sum(sizes)
    raw = [total * s / whole for s in sizes]
    out = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))[:total - sum(out)]:
        out[i] += 1
    return out


# ---------------------------------------------------------------------- Dask phases


def _source_path(directory: str, source: str, index: int) -> str:
    return join(directory, "sources", source, f"{shard_name(index)}.parquet")


def _select_source_rows(item: tuple[str, int, str], params: dict[str, Any], directory: str, stage_id: str,
                        batch_rows: int) -> dict[str, int]:
    """Write one input shard's rows of one source (id, text, tokens); count them."""
    name, index, path = item
    stage = Blend(**params)
    source = next(s for s in stage.sources if s.name == name)
    condition = RowCondition.parse(source.condition) if source.condition else None
    writer = ShardWriter(_source_path(directory, name, index), SOURCE_COLUMNS)
    documents = tokens = 0
    try:
        for batch in read_batches(path, batch_rows):
            for column in (stage.tokens_column, stage.column, "id"):
                if column not in batch.column_names:
                    hint = " (run tokens.count on it first)" if column == stage.tokens_column else ""
                    raise ValueError(f"stage {stage_id} ({stage.name}): source {name}: {path} has no column "
                                     f"{column!r}{hint}")
            if condition is not None:
                batch = batch.filter(condition.mask(batch))
            if not batch.num_rows:
                continue
            counts = batch.column(stage.tokens_column).cast(pa.int64()).fill_null(0)
            table = pa.table({"id": batch.column("id").cast(pa.string()), "text": batch.column(stage.column),
                              "tokens": counts}, schema=SOURCE_COLUMNS)
            writer.write(table)
            documents += table.num_rows
            tokens += int(pc.sum(counts).as_py() or 0)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"documents": documents, "tokens": tokens}


def choose_rows(row_tokens: np.ndarray, target: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Rows (index, epoch) whose tokens add up to ``target`` as closely as documents allow.

    Whole passes over all rows first (epoch 0, 1, ...), then the rest from a shuffled order, taking
    each row that still fits and skipping those that would overshoot; if the remainder is then
    closer to the next row's size than to zero, that row is taken too.
    """
    total = int(row_tokens.sum())
    if total <= 0 or target <= 0:
        return []
    passes, rest = divmod(int(target), total)
    chosen = [(int(i), epoch) for epoch in range(passes) for i in np.flatnonzero(row_tokens > 0)]
    order = rng.permutation(len(row_tokens))
    left = rest
    skipped: list[int] = []
    for i in order:
        size = int(row_tokens[i])
        if size <= 0:
            continue
        if size <= left:
            chosen.append((int(i), passes))
            left -= size
            if left == 0:
                break
        else:
            skipped.append(int(i))
    if left > 0 and skipped:
        best = min(skipped, key=lambda i: int(row_tokens[i]))
        if int(row_tokens[best]) - left < left:
            chosen.append((best, passes))
    return chosen


def _draw_path(draws: str, phase: str, bucket: int, source: str, part: int) -> str:
    return join(draws, phase, f"bucket-{bucket:05d}", f"{source}-{shard_name(part)}.parquet")


def _draw_rows(item: tuple[Any, ...], directory: str, draws: str) -> int:
    """Draw one source shard's planned tokens for a phase, split into the phase's output buckets by random key."""
    phase, source, part, target, _, seed, buckets = item
    table = _read_all(_source_path(directory, source, part))
    rng = np.random.default_rng(seed)
    chosen = choose_rows(table.column("tokens").to_numpy(zero_copy_only=False), int(target), rng)
    if not chosen:
        return 0
    rows = np.array([i for i, _ in chosen], dtype=np.int64)
    epochs = np.array([e for _, e in chosen], dtype=np.int32)
    keys = rng.integers(0, 2**62, size=len(rows), dtype=np.int64)
    drawn = table.take(pa.array(rows)).append_column("blend_source", pa.array([source] * len(rows), pa.string()))
    drawn = drawn.append_column("blend_epoch", pa.array(epochs)).append_column("_key", pa.array(keys))
    bucket_of = keys % buckets
    for bucket in range(buckets):
        mask = bucket_of == bucket
        writer = ShardWriter(_draw_path(draws, phase, bucket, source, part))
        writer.write(drawn.filter(pa.array(mask)))
        writer.commit()
    return int(drawn.column("tokens").to_numpy().sum())


def _write_phase_shard(item: tuple[str, int, int], directory: str, draws: str) -> int:
    """One output shard of a phase: its bucket's drawn rows from every source, sorted by their random key."""
    phase, bucket, _ = item
    folder = join(draws, phase, f"bucket-{bucket:05d}")
    fs, fs_path = filesystem(folder)
    files = sorted(fs.glob(f"{fs_path}/*.parquet")) if fs.exists(fs_path) else []
    tables = [_read_all(fs.unstrip_protocol(f)) for f in files]
    merged = pa.concat_tables(tables) if tables else BLENDED_COLUMNS.empty_table().append_column(
        "_key", pa.array([], pa.int64()))
    merged = merged.sort_by("_key").drop_columns(["_key"])
    writer = ShardWriter(join(directory, "phases", phase, f"{shard_name(bucket)}.parquet"), BLENDED_COLUMNS)
    writer.write(merged)
    writer.commit()
    return merged.num_rows


def _remove_parts_from(folder: str, count: int) -> None:
    """Remove ``part-NNNNN.parquet`` files numbered ``count`` and up: left by an earlier run with more parts."""
    fs, fs_path = filesystem(folder)
    if not fs.exists(fs_path):
        return
    for path in fs.glob(f"{fs_path}/part-*.parquet"):
        stem = path.rsplit("/", 1)[-1][len("part-"):-len(".parquet")]
        if stem.isdigit() and int(stem) >= count:
            fs.rm(path)


def _read_all(path: str) -> pa.Table:
    batches = list(read_batches(path, 1 << 20))
    return pa.concat_tables(batches) if batches else SOURCE_COLUMNS.empty_table()


def _write_plan_shard(task: ShardTask, rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats = ShardStats(docs_in=len(rows), docs_out=len(rows))
    table = pa.Table.from_pylist(rows, schema=PLAN_COLUMNS)
    return write_shard(task, [(table, None)], stats, schema=PLAN_COLUMNS)

