"""Runs a validated pipeline on a Dask cluster, resumably.

Map and source stages become one Dask task per shard, each depending on the upstream shard it
reads, so shards flow through a chain of map stages without waiting for whole stages. A global
stage starts when all its upstream stages are complete and runs its phases from a client thread.
Tasks return only small stats records; data moves through Parquet files, so a worker holds a few
batches, never a dataset.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future

from curator.global_run import GlobalRun
from curator.pipeline import Pipeline
from curator.plan import MANIFEST, REJECTED_DIR, STATS_DIR, StagePlan, build_plan, finished_stats
from curator.progress import ProgressBoard
from curator.stage import ShardStats
from curator.storage import filesystem, join, list_shards, read_json, remove_temp_files, write_json_atomic
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
        self._gpu_workers = self._count_gpu_workers()

    # -- public ---------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run every stage not already done; return the outcome (never raises for shard failures)."""
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
        gpus = plan.spec.stage.resources.gpus
        if gpus > 0:
            if self._gpu_workers:
                kwargs["resources"] = {"GPU": gpus}
            else:
                log.warning("stage %s asks for a GPU but no worker has one: it runs on CPU through the "
                            "PyTorch reference path", plan.spec.id)
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
            key = f"{sid}-{task.name}-{task.fingerprint[:10]}"
            if plan.spec.kind == "source":
                fut = self.client.submit(run_source_shard, plan.ref, task, plan.spec.batch_rows, key=key, **kwargs)
            else:
                fut = self.client.submit(run_map_shard, plan.ref, task, plan.spec.batch_rows, *deps, key=key, **kwargs)
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
            if fut.status == "finished":
                self._record(sid, index, fut.result(), skipped=False)
            else:
                exc = fut.exception()
                if isinstance(exc, ShardError) and exc.stage_id != sid:
                    message = f"stage {sid}, shard part-{index:05d}: not run because {exc}"
                else:
                    message = str(exc) if isinstance(exc, ShardError) else f"stage {sid}, shard part-{index:05d}: {type(exc).__name__}: {exc}"
                outcome.failures.append(message)
                self.progress.shard_failed(sid)
                log.error("%s", message)
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
        write_manifest(plan, outcome.records)
        self.progress.finish(sid)

    # -- helpers --------------------------------------------------------------------------------

    def _count_gpu_workers(self) -> int:
        try:
            workers = self.client.scheduler_info().get("workers", {})
        except Exception:  # noqa: BLE001
            return 0
        return sum(1 for w in workers.values() if w.get("resources", {}).get("GPU", 0) > 0)

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
        src_fs, src_path = filesystem(task.output)
        tmp = f"{dest_root}/.tmp-export-{os.getpid()}-{task.name}.parquet"
        with src_fs.open(src_path, "rb") as src, fs.open(tmp, "wb") as dst:
            while chunk := src.read(16 << 20):
                dst.write(chunk)
        fs.mv(tmp, f"{dest_root}/{task.name}.parquet")
        write_json_atomic(marker, read_json(task.stats_path) or {"fingerprint": task.fingerprint})
    expected = {f"{t.name}.parquet" for t in plan.shards}
    for path in list_shards(dest):
        if path.rsplit("/", 1)[-1] not in expected:
            fs.rm(filesystem(path)[1])
    write_json_atomic(join(dest, MANIFEST), read_json(join(plan.directory, MANIFEST)) or {})

