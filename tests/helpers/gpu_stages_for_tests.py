"""Stages that record the Dask worker they ran on, for GPU-scheduling tests (loaded through ``imports:``).

No GPU is needed: the Dask resource ``GPU`` is only a label a worker advertises.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pyarrow as pa

from curator.stage import MapStage, Resources


def _worker() -> tuple[str, bool]:
    """This process's Dask worker name, and whether it advertises the resource GPU."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return "", False
    return str(worker.name), float(worker.state.total_resources.get("GPU", 0)) > 0


class CpuMarker(MapStage):
    """Add ``cpu_worker``: the worker that processed the row (a CPU stage: any worker)."""

    name = "test.cpu_marker"
    adds = ("cpu_worker",)
    seconds: float = 0.05

    def process(self, batch: pa.Table) -> pa.Table:
        time.sleep(self.seconds)  # so that both workers get some shards
        name, _ = _worker()
        return batch.append_column("cpu_worker", pa.array([name] * batch.num_rows, pa.string()))


class GpuMarker(MapStage):
    """Add ``gpu_worker`` and ``on_gpu_worker``: a GPU stage that can fall back to a CPU worker."""

    name = "test.gpu_marker"
    adds = ("gpu_worker", "on_gpu_worker")
    resources: ClassVar[Resources] = Resources(gpus=1)

    def process(self, batch: pa.Table) -> pa.Table:
        name, has_gpu = _worker()
        return batch.append_column("gpu_worker", pa.array([name] * batch.num_rows, pa.string())).append_column(
            "on_gpu_worker", pa.array([has_gpu] * batch.num_rows, pa.bool_()))


class GpuOnly(GpuMarker):
    """Like ``test.gpu_marker``, but declared unable to run on a CPU."""

    name = "test.gpu_only"
    resources: ClassVar[Resources] = Resources(gpus=1, cpu_fallback=False)
