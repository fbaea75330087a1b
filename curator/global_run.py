"""The context a global stage runs in: its inputs, a work folder, and resumable Dask phases.

A global stage (dedup, calibration, blending) calls :meth:`GlobalRun.map` once per phase. Each
item of a phase runs as one Dask task whose JSON-able result is saved in a marker file, so a rerun
after a kill skips the items already done, and :meth:`GlobalRun.map_outputs` writes the output
shards that are not done yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, as_completed

from curator.plan import WORK_DIR, ShardTask, StagePlan, finished_stats
from curator.storage import digest, join, read_json, write_json_atomic
from curator.tasks import ShardError


def _run_phase_item(fn: Callable[..., Any], item: Any, args: tuple[Any, ...], marker: str,
                    fingerprint: str, stage_id: str, label: str) -> Any:
    try:
        result = fn(item, *args)
    except Exception as exc:
        raise ShardError(stage_id, label, (), f"{type(exc).__name__}: {exc}") from exc
    write_json_atomic(marker, {"fingerprint": fingerprint, "result": result})
    return result


def _run_output_shard(fn: Callable[..., dict[str, Any]], task: ShardTask, args: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return fn(task, *args)
    except ShardError:
        raise
    except Exception as exc:
        raise ShardError(task.stage_id, task.name, task.inputs, f"{type(exc).__name__}: {exc}") from exc


class GlobalRun:
    """Runs the phases of one global stage on the cluster, resumably."""

    def __init__(self, client: Client, plan: StagePlan, submit_kwargs: dict[str, Any],
                 on_output: Callable[[dict[str, Any], bool], None],
                 on_phase: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.plan = plan
        self.stage = plan.spec.stage
        self.stage_id = plan.spec.id
        self.work_dir = join(plan.directory, WORK_DIR)
        self.batch_rows = plan.spec.batch_rows
        self._submit_kwargs = submit_kwargs
        self._on_output = on_output
        self._on_phase = on_phase or (lambda text: None)

    @property
    def input_shards(self) -> list[str]:
        """Paths of the input Parquet shards, in order."""
        return list(self.plan.shards[0].inputs) if self.plan.shards else []

    @property
    def inputs_by_upstream(self) -> dict[str, list[str]]:
        """Input shard paths per ``from:`` entry (stage id or input name), for stages that read several."""
        return {up: list(paths) for up, paths in self.plan.inputs_by_upstream.items()}

    @property
    def output_shards(self) -> list[ShardTask]:
        """The output shards the stage must write (with :func:`curator.tasks.write_shard`)."""
        return self.plan.shards

    def map(self, phase: str, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> list[Any]:
        """Run ``fn(item, *args)`` for every item as a Dask task; return the results in order.

        ``fn`` must be a module-level function and its result JSON-able. Items finished by an
        earlier run with the same stage config and inputs are not run again.
        """
        fingerprint = digest([self.plan.stage_fingerprint, phase, len(items)])
        results: list[Any] = [None] * len(items)
        futures = {}
        for i, item in enumerate(items):
            marker = join(self.work_dir, phase, "_done", f"item-{i:05d}.json")
            record = read_json(marker)
            if isinstance(record, dict) and record.get("fingerprint") == fingerprint:
                results[i] = record["result"]
                continue
            futures[i] = self.client.submit(
                _run_phase_item, fn, item, args, marker, fingerprint, self.stage_id, f"{phase} item {i}",
                key=f"{self.stage_id}-{phase}-{i}-{fingerprint[:10]}", **self._submit_kwargs,
            )
        done = len(items) - len(futures)
        self._on_phase(f"{phase} {done}/{len(items)}")
        for _ in as_completed(list(futures.values())):
            done += 1
            self._on_phase(f"{phase} {done}/{len(items)}")
        for i, fut in futures.items():
            if fut.status == "error":
                raise fut.exception()
            results[i] = fut.result()
        return results

    def map_outputs(self, fn: Callable[..., dict[str, Any]], *args: Any,
                    per_task: Callable[[ShardTask], tuple[Any, ...]] | None = None) -> None:
        """Run ``fn(task, *per_task(task), *args)`` for each output shard not done yet.

        ``fn`` writes and commits the shard (see :func:`curator.tasks.write_shard`) and returns its
        stats record. ``per_task`` gives the arguments that differ between shards.
        """
        self._on_phase("writing output")
        futures = []
        for task in self.plan.shards:
            record = finished_stats(task)
            if record is not None:
                self._on_output(record, True)
                continue
            task_args = (per_task(task) if per_task else ()) + args
            futures.append(self.client.submit(_run_output_shard, fn, task, task_args,
                                              key=f"{self.stage_id}-{task.name}-{task.fingerprint[:10]}",
                                              **self._submit_kwargs))
        errors = []
        for fut in as_completed(futures):
            if fut.status == "finished":
                self._on_output(fut.result(), False)
            else:
                errors.append(fut.exception())
        if errors:
            raise errors[0]
