"""Where GPU stages run: on workers that advertise the Dask resource ``GPU``, or what happens without one.

A stage asks for GPUs through its :class:`curator.stage.Resources`. Before a run starts, each
stage that asks for a GPU gets a :class:`GpuPlacement`: it runs on the GPU workers, falls back to
CPU workers (its CPU path) when the cluster has none and the stage allows it, or the run refuses
to start because the stage declared it cannot run on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from curator.stage import Resources, Stage

GPU_RESOURCE = "GPU"
"""The Dask worker resource GPU stages ask for (``dask worker --resources GPU=1``)."""

Action = Literal["gpu", "cpu_fallback", "refuse"]


def stage_resources(stage: Stage) -> Resources:
    """What one task of ``stage`` asks for: ``task_resources()`` when the stage defines it (so that
    parameters such as ``device: cpu`` can drop the GPU), else its class-level ``resources``."""
    per_instance = getattr(stage, "task_resources", None)
    if callable(per_instance):
        resources = per_instance()
        if isinstance(resources, Resources):
            return resources
    return stage.resources


def gpu_capacity(client: Any) -> dict[str, float]:
    """The ``GPU`` resource of every worker that advertises one, by worker address."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed: no n_workers argument
        workers = client.scheduler_info().get("workers", {})
    out: dict[str, float] = {}
    for address, info in workers.items():
        amount = float((info.get("resources") or {}).get(GPU_RESOURCE, 0) or 0)
        if amount > 0:
            out[address] = amount
    return out


@dataclass(frozen=True)
class GpuPlacement:
    """How one GPU-asking stage runs on this cluster."""

    stage_id: str
    uses: str
    gpus: float
    action: Action
    gpu_workers: int

    @property
    def submit_resources(self) -> dict[str, float] | None:
        """The ``resources=`` of the stage's Dask tasks (None: any worker)."""
        return {GPU_RESOURCE: self.gpus} if self.action == "gpu" else None

    @property
    def message(self) -> str:
        """One line saying what happens to the stage."""
        head = f"stage {self.stage_id} ({self.uses}) asks for {self.gpus:g} GPU per task"
        if self.action == "gpu":
            return (f"{head}: it runs on the {self.gpu_workers} worker(s) that advertise the Dask resource "
                    f"{GPU_RESOURCE}")
        missing = (f"no worker advertises the Dask resource {GPU_RESOURCE}" if self.gpu_workers == 0 else
                   f"no worker advertises {GPU_RESOURCE}={self.gpus:g} or more")
        if self.action == "cpu_fallback":
            return f"{head} but {missing}: it falls back to its CPU path on the CPU workers"
        return (f"{head} but {missing}, and it cannot run on a CPU: start GPU workers "
                f"(dask worker ... --resources {GPU_RESOURCE}=1) or run on a machine with CUDA GPUs")


class NoGpuWorkerError(RuntimeError):
    """A stage that cannot run on a CPU is in a pipeline whose cluster has no GPU worker."""

    def __init__(self, placements: list[GpuPlacement]) -> None:
        super().__init__("; ".join(p.message for p in placements))
        self.placements = placements


def place_gpu_stages(stages: Iterable[tuple[str, str, Stage]], capacity: dict[str, float]) -> list[GpuPlacement]:
    """A placement for every stage (id, uses, stage) that asks for a GPU, given the workers' ``GPU``."""
    placements = []
    for stage_id, uses, stage in stages:
        resources = stage_resources(stage)
        if resources.gpus <= 0:
            continue
        able = sum(1 for amount in capacity.values() if amount >= resources.gpus)
        if able:
            action: Action = "gpu"
        else:
            action = "cpu_fallback" if resources.cpu_fallback else "refuse"
        placements.append(GpuPlacement(stage_id, uses, resources.gpus, action, able))
    return placements
