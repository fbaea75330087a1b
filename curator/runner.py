"""Runs a validated pipeline on a Dask cluster, resumably.

Map and source stages become one Dask task per shard, each depending on the upstream shard it
reads, so shards flow through a chain of map stages without waiting for whole stages. A global
stage starts when all its upstream stages are complete and runs its phases from a client thread.
Tasks return only small stats records; data moves through Parquet files, so a worker holds a few
batches, never a dataset.

Losing a worker loses nothing: Dask reschedules the shards it was running (a shard whose worker
died is recomputed from scratch; its half-written temp file is never published) and recomputes the
results it held, which costs nothing because a shard task whose stats file is already committed
returns that record instead of redoing the work. A shard that kills ``allowed-failures`` + 1 workers
(Dask's setting, 3 by default) is reported as failed, like any other failed shard.

GPU stages (``Resources.gpus > 0``) ask Dask for the worker resource ``GPU``; on a cluster without
such workers they fall back to CPU workers when they allow it, and the run refuses to start when
one does not (see :mod:`curator.gpu_placement`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from distributed import Client, Future, KilledWorker

from curator.global_run import GlobalRun
from curator.gpu_placement import GpuPlacement, NoGpuWorkerError, gpu_capacity, place_gpu_stages, stage_resources
from curator.pipeline import Pipeline
from curator.plan import MANIFEST, REJECTED_DIR, STATS_DIR, ShardTask, StagePlan, build_plan, finished_stats
from curator.progress import ProgressBoard
from curator.stage import ShardStats
from curator.storage import (
    copy_file, filesystem, join, list_shards, read_json, remove_file, remove_temp_files, write_json_atomic,
)
from curator.tasks import ShardError, run_map_shard, run_source_shard

log = logging.getLogger("curator.runner")
RUN_RECORD = "run.json"


@dataclass
class StageOutcome:
    """How one stage ended in a run."""

    stage_id: str
    state: str = "pending"  # pending, running, complete, failed, blocked
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    global_running: bool = False
    """A global stage's body is still running (it may write side files after its last shard)."""


@dataclass
class RunResult:
    """The outcome of a run: per-stage state and every failure, each naming its stage and shard."""

    run_dir: str
    stages: dict[str, StageOutcome]
    failures: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether every stage completed."""
        return not self.failures and all(s.state == "complete" for s in self.stages.values())


def run_shard_once(fn: Callable[..., dict[str, Any]], task: ShardTask, *args: Any) -> dict[str, Any]:
    """Run a shard task unless its stats file already commits it with the expected fingerprint.

    Dask recomputes a finished task whose result was held by a worker that died; the shard is on
    disk already, so the recomputation returns its record instead of rewriting the shard.
    """
    record = finished_stats(task)
    if record is not None:
        return record
    return fn(*args)


class PipelineRunner:
    """Runs one pipeline on a Dask client."""

    def __init__(self, pipeline: Pipeline, client: Client, progress: ProgressBoard | None = None,
                 retries: int = 2) -> None:
        self.pipeline = pipeline
        self.client = client
        self.progress = progress or ProgressBoard(interactive=False)
        self.retries = retries
        self.plans: dict[str, StagePlan] = build_plan(pipeline)
        self.outcomes = {sid: StageOutcome(sid) for sid in self.plans}
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._futures: dict[str, dict[int, Future]] = {}
        # Task keys name the run too: a second run on the same client must not get the first one's results back.
        self._run_token = uuid.uuid4().hex[:8]
        self.gpu_placements: dict[str, GpuPlacement] = {
            p.stage_id: p for p in place_gpu_stages(
                ((sid, plan.spec.uses, plan.spec.stage) for sid, plan in self.plans.items()), self._gpu_capacity())}
        """How each GPU-asking stage runs on this cluster, decided before the run starts."""

    def check_gpu_placements(self) -> None:
        """Log one line per GPU stage saying where it runs; raise :class:`NoGpuWorkerError` when a
        stage that cannot run on a CPU (and has shards left to do) has no GPU worker."""
        refused = [p for p in self.gpu_placements.values() if p.action == "refuse" and self._has_work(p.stage_id)]
        if refused:
            raise NoGpuWorkerError(refused)
        for placement in self.gpu_placements.values():
            if placement.action == "cpu_fallback":
                log.warning("%s", placement.message)
            else:
                log.info("%s", placement.message)

    # -- public ---------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run every stage not already done; return the outcome (never raises for shard failures).

        Raises :class:`NoGpuWorkerError` before anything runs when a stage needs a GPU the cluster lacks.
        """
        self.check_gpu_placements()
        start = time.monotonic()
        self._write_run_record("running")
        for sid, plan in self.plans.items():
            self.progress.add_stage(sid, plan.spec.uses, len(plan.shards))
            removed = remove_temp_files(plan.directory)
            if removed:
                log.info("stage %s: removed %d temporary files left by an interrupted run", sid, removed)
        order = list(self.plans)
        while True:
            for sid in order:
                if self.outcomes[sid].state == "pending":
                    self._maybe_start(sid)
            if all(o.state in ("complete", "failed", "blocked") for o in self.outcomes.values()):
                break
            self._handle(self._events.get())
        failures = [f for o in self.outcomes.values() for f in o.failures]
        for o in self.outcomes.values():
            if o.state == "blocked":
                failures.append(f"stage {o.stage_id}: not run because an upstream stage failed")
        result = RunResult(self.pipeline.run_dir, self.outcomes, failures, time.monotonic() - start)
        if result.ok:
            for output in self.pipeline.outputs:
                export_output(self.plans[output.source], output.path)
        self._write_run_record("complete" if result.ok else "failed", result)
        return result

    # -- scheduling -----------------------------------------------------------------------------

    def _submit_kwargs(self, plan: StagePlan, depth: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"retries": self.retries, "pure": False, "priority": depth}
        placement = self.gpu_placements.get(plan.spec.id)
        if placement is not None and placement.submit_resources:
            kwargs["resources"] = placement.submit_resources
        return kwargs

    def _maybe_start(self, sid: str) -> None:
        plan = self.plans[sid]
        outcome = self.outcomes[sid]
        ups = [self.outcomes[u] for u in plan.upstream_stages]
        if any(u.state in ("failed", "blocked") for u in ups) and plan.spec.kind == "global":
            outcome.state = "blocked"
            return
        kind = plan.spec.kind
        if kind == "global":
            if not all(u.state == "complete" for u in ups):
                return
        else:
            for u in plan.upstream_stages:
                up_kind = self.plans[u].spec.kind
                up_state = self.outcomes[u].state
                if up_state in ("failed", "blocked") and up_kind == "global":
                    outcome.state = "blocked"
                    return
                if up_state == "pending" or (up_kind == "global" and up_state != "complete"):
                    return
        outcome.state = "running"
        self.progress.start(sid)
        depth = list(self.plans).index(sid)
        if kind == "global":
            self._start_global(plan, depth)
        else:
            self._submit_shards(plan, depth)
        self._check_complete(sid)

    def _submit_shards(self, plan: StagePlan, depth: int) -> None:
        sid = plan.spec.id
        futures: dict[int, Future] = {}
        kwargs = self._submit_kwargs(plan, depth)
        for task in plan.shards:
            record = finished_stats(task)
            if record is not None:
                self._record(sid, task.index, record, skipped=True)
                continue
            deps = [self._futures[u][i] for u, i in task.upstream if i in self._futures.get(u, {})]
            key = f"{sid}-{task.name}-{task.fingerprint[:10]}-{self._run_token}"
            if plan.spec.kind == "source":
                fut = self.client.submit(run_shard_once, run_source_shard, task, plan.ref, task, plan.spec.batch_rows,
                                         key=key, **kwargs)
            else:
                fut = self.client.submit(run_shard_once, run_map_shard, task, plan.ref, task, plan.spec.batch_rows,
                                         *deps, key=key, **kwargs)
            fut.add_done_callback(lambda f, i=task.index: self._events.put(("shard", sid, i, f)))
            futures[task.index] = fut
        self._futures[sid] = futures

    def _start_global(self, plan: StagePlan, depth: int) -> None:
        sid = plan.spec.id
        done = {t.index: finished_stats(t) for t in plan.shards}
        if all(r is not None for r in done.values()):
            for i, record in done.items():
                self._record(sid, i, record, skipped=True)  # type: ignore[arg-type]
            return

        def on_output(record: dict[str, Any], skipped: bool) -> None:
            self._events.put(("output", sid, record, skipped))

        def body() -> None:
            error: BaseException | None = None
            try:
                ctx = GlobalRun(self.client, plan, self._submit_kwargs(plan, depth), on_output,
                                lambda text: self._events.put(("phase", sid, text)))
                plan.spec.stage.run(ctx)  # type: ignore[attr-defined]
            except BaseException as exc:  # noqa: BLE001 - reported by the main loop
                error = exc
                log.debug("global stage %s failed:\n%s", sid, traceback.format_exc())
            self._events.put(("global_done", sid, error))

        self.outcomes[sid].global_running = True
        threading.Thread(target=body, name=f"curator-global-{sid}", daemon=True).start()

    # -- events ---------------------------------------------------------------------------------

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind, sid = event[0], event[1]
        outcome = self.outcomes[sid]
        if kind == "shard":
            index, fut = event[2], event[3]
            try:
                # Waits if the result was lost with a dead worker since the callback and is being recomputed.
                record = fut.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - a failed shard is reported, not raised
                message = shard_failure_message(sid, index, str(fut.key), exc)
                outcome.failures.append(message)
                self.progress.shard_failed(sid)
                log.error("%s", message)
            else:
                self._record(sid, index, record, skipped=False)
        elif kind == "output":
            record, skipped = event[2], event[3]
            index = int(str(record["shard"]).split("-")[-1])
            self._record(sid, index, record, skipped)
        elif kind == "phase":
            self.progress.start(sid, phase=event[2])
            return
        elif kind == "global_done":
            error = event[2]
            outcome.global_running = False
            if error is not None:
                message = str(error) if isinstance(error, ShardError) else f"stage {sid}: {type(error).__name__}: {error}"
                outcome.failures.append(message)
                log.error("%s", message)
                outcome.state = "failed"
                self.progress.shard_failed(sid)
            elif len(outcome.records) < len(self.plans[sid].shards):
                outcome.failures.append(f"stage {sid}: finished without writing every output shard")
                outcome.state = "failed"
        self._check_complete(sid)

    def _record(self, sid: str, index: int, record: dict[str, Any], skipped: bool) -> None:
        if index in self.outcomes[sid].records:
            return
        self.outcomes[sid].records[index] = record
        self.progress.shard_done(sid, record, skipped)

    def _check_complete(self, sid: str) -> None:
        outcome = self.outcomes[sid]
        if outcome.state != "running":
            return
        plan = self.plans[sid]
        accounted = len(outcome.records) + len(outcome.failures)
        if plan.spec.kind == "global":
            # Complete only when the body returned too: it writes its side files (dedup summaries,
            # LLM stats) after the last shard, and may still fail.
            if len(outcome.records) < len(plan.shards) or outcome.global_running:
                return
        elif accounted < len(plan.shards):
            return
        if outcome.failures:
            outcome.state = "failed"
            return
        outcome.state = "complete"
        # Temp files of shard attempts whose worker died; every shard is committed by now.
        remove_temp_files(plan.directory)
        write_manifest(plan, outcome.records)
        self.progress.finish(sid)

    # -- helpers --------------------------------------------------------------------------------

    def _gpu_capacity(self) -> dict[str, float]:
        if not any(stage_resources(plan.spec.stage).gpus > 0 for plan in self.plans.values()):
            return {}
        return gpu_capacity(self.client)

    def _has_work(self, sid: str) -> bool:
        return any(finished_stats(t) is None for t in self.plans[sid].shards)

    def _write_run_record(self, status: str, result: RunResult | None = None) -> None:
        record: dict[str, Any] = {
            "pipeline": self.pipeline.name,
            "pipeline_file": self.pipeline.file,
            "status": status,
            "updated_at": time.time(),
            "stages": [
                {"id": p.spec.id, "uses": p.spec.uses, "kind": p.spec.kind, "from": p.spec.upstream,
                 "shards": len(p.shards)}
                for p in self.plans.values()
            ],
            "outputs": [{"name": o.name, "from": o.source, "path": o.path} for o in self.pipeline.outputs],
        }
        previous = read_json(join(self.pipeline.run_dir, RUN_RECORD)) or {}
        record["started_at"] = previous.get("started_at") if status != "running" else time.time()
        if result is not None:
            record["failures"] = result.failures
            record["seconds"] = round(result.seconds, 3)
        write_json_atomic(join(self.pipeline.run_dir, RUN_RECORD), record)


def shard_failure_message(sid: str, index: int, key: str, exc: BaseException) -> str:
    """The failure line of a shard task: it names the stage, the shard, and why."""
    where = f"stage {sid}, shard part-{index:05d}"
    if isinstance(exc, ShardError):
        return f"{where}: not run because {exc}" if exc.stage_id != sid else str(exc)
    if isinstance(exc, KilledWorker):
        if str(exc.task) != key:
            died = exc.allowed_failures + 1
            return f"{where}: not run because task {exc.task} failed: {died} workers died running it"
        return (f"{where}: {exc.allowed_failures + 1} workers died while running it (killed, or out of memory: "
                "see the workers' logs; Dask's distributed.scheduler.allowed-failures sets how many may)")
    return f"{where}: {type(exc).__name__}: {exc}"


def aggregate(records: dict[int, dict[str, Any]]) -> ShardStats:
    """Sum the stats of a stage's shard records."""
    total = ShardStats()
    for record in records.values():
        total.add(ShardStats.from_json(record.get("stats", {})))
    return total


def write_manifest(plan: StagePlan, records: dict[int, dict[str, Any]]) -> None:
    """Write a completed stage's manifest and remove shards left by an earlier, larger plan."""
    _remove_stale(plan)
    total = aggregate(records)
    write_json_atomic(join(plan.directory, MANIFEST), {
        "stage": plan.spec.id,
        "uses": plan.spec.uses,
        "kind": plan.spec.kind,
        "version": type(plan.spec.stage).version,
        "params": plan.ref.params,
        "config_hash": plan.ref.config_hash,
        "from": plan.spec.upstream,
        "input_fingerprints": plan.input_fingerprints,
        "shards": [
            {"name": t.name, "fingerprint": t.fingerprint, "rows": records.get(t.index, {}).get("rows")}
            for t in plan.shards
        ],
        "totals": total.to_json(),
        "completed_at": time.time(),
    })


def _remove_stale(plan: StagePlan) -> None:
    fs, root = filesystem(plan.directory)
    expected = {t.name for t in plan.shards}
    for sub, ext in (("", ".parquet"), (STATS_DIR, ".json"), (REJECTED_DIR, ".parquet")):
        folder = f"{root}/{sub}" if sub else root
        if not fs.isdir(folder):
            continue
        for path in fs.ls(folder, detail=False):
            name = path.rsplit("/", 1)[-1]
            if name.startswith("part-") and name.endswith(ext) and name[: -len(ext)] not in expected:
                fs.rm(path)
    if not plan.spec.keep_rejected and fs.isdir(f"{root}/{REJECTED_DIR}"):
        fs.rm(f"{root}/{REJECTED_DIR}", recursive=True)


def export_output(plan: StagePlan, dest: str) -> None:
    """Copy a stage's shards to an output folder, atomically per shard, skipping unchanged ones."""
    fs, dest_root = filesystem(dest)
    fs.makedirs(dest_root, exist_ok=True)
    remove_temp_files(dest)
    for task in plan.shards:
        marker = join(dest, STATS_DIR, f"{task.name}.json")
        record = read_json(marker)
        if isinstance(record, dict) and record.get("fingerprint") == task.fingerprint:
            continue
        remove_file(marker)  # uncommitted while its data is replaced
        copy_file(task.output, join(dest, f"{task.name}.parquet"))
        write_json_atomic(marker, read_json(task.stats_path) or {"fingerprint": task.fingerprint})
    expected = {f"{t.name}.parquet" for t in plan.shards}
    for path in list_shards(dest, committed_only=False):
        name = path.rsplit("/", 1)[-1]
        if name not in expected:
            fs.rm(filesystem(path)[1])
            remove_file(join(dest, STATS_DIR, name[: -len(".parquet")] + ".json"))
    write_json_atomic(join(dest, MANIFEST), read_json(join(plan.directory, MANIFEST)) or {})

