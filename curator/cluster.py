"""Connecting to Dask: a LocalCluster sized to the machine, or an existing scheduler.

On a machine with CUDA GPUs the local cluster has one GPU worker per GPU, each seeing only its own
device and advertising the Dask resource ``GPU=1`` (dask-cuda's ``LocalCUDACluster`` when it is
installed), plus single-threaded CPU workers that see no GPU, so GPU stages run on the GPU workers
and everything else on the CPU workers.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, Nanny
from distributed.deploy.spec import SpecCluster
from distributed.system import MEMORY_LIMIT

from curator.gpu_placement import GPU_RESOURCE

log = logging.getLogger("curator.cluster")

NVIDIA_PROC_GPUS = Path("/proc/driver/nvidia/gpus")
"""One folder per NVIDIA GPU the driver sees."""
WORKER_START_TIMEOUT = 120.0
"""Seconds the workers added to a local cluster (GPU or CPU ones) may take to start."""


def default_workers() -> int:
    """One single-threaded worker process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def visible_cuda_devices(environ: dict[str, str] | None = None, proc_gpus: Path = NVIDIA_PROC_GPUS) -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs).

    ``CUDA_VISIBLE_DEVICES`` when set (CUDA stops at the first invalid entry such as ``-1``), else
    one index per GPU of the NVIDIA driver. Nothing is imported or initialised on a GPU.
    """
    environ = dict(os.environ) if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            devices.append(entry)
        return devices
    try:
        count = sum(1 for p in proc_gpus.iterdir() if p.is_dir())
    except OSError:
        return []
    return [str(i) for i in range(count)]


def _cuda_cluster_class() -> type[SpecCluster] | None:
    try:
        module = importlib.import_module("dask_cuda")
    except ImportError:
        return None
    return getattr(module, "LocalCUDACluster", None)


def _nanny_spec(options: dict[str, Any], name_options: dict[str, Any]) -> dict[str, Any]:
    opts = copy.deepcopy(options)
    opts.update(name_options)
    return {"cls": Nanny, "options": opts}


def start_local_cluster(workers: int | None = None, gpu_workers: int | None = None,
                        dashboard_address: str | None = ":8787") -> SpecCluster:
    """A local cluster: ``gpu_workers`` GPU workers (default: one per visible CUDA device) and
    ``workers`` CPU workers (default: one per core not driving a GPU), all single-threaded, with an
    equal share of the machine's memory.

    GPU workers advertise ``GPU=1`` and see one device each; CPU workers see none. dask-cuda's
    LocalCUDACluster starts the GPU workers when it is importable.
    """
    devices = visible_cuda_devices()
    n_gpu = len(devices) if gpu_workers is None else gpu_workers
    if n_gpu > len(devices):
        log.warning("%d GPU worker(s) asked for but %d CUDA device(s) visible: the extra workers advertise %s=1 "
                    "without a device of their own", n_gpu, len(devices), GPU_RESOURCE)
    n_cpu = workers or max(1, default_workers() - n_gpu)
    memory = max(1, MEMORY_LIMIT // (n_cpu + n_gpu))
    common: dict[str, Any] = {"dashboard_address": dashboard_address, "silence_logs": logging.ERROR,
                              "threads_per_worker": 1, "memory_limit": memory}
    cpu_env = {"CUDA_VISIBLE_DEVICES": ""} if n_gpu else {}
    cuda_cluster = _cuda_cluster_class() if n_gpu and len(devices) >= n_gpu else None
    if cuda_cluster is not None:
        log.info("local cluster: %d GPU worker(s) from dask-cuda's LocalCUDACluster and %d CPU worker(s)", n_gpu, n_cpu)
        cluster = cuda_cluster(CUDA_VISIBLE_DEVICES=",".join(devices[:n_gpu]), n_workers=n_gpu,
                               resources={GPU_RESOURCE: 1}, **common)
        cpu_options = {"nthreads": 1, "memory_limit": memory, "silence_logs": logging.ERROR,
                       "host": "127.0.0.1", "env": cpu_env}
        extra = {f"cpu-{i}": _nanny_spec(cpu_options, {}) for i in range(n_cpu)}
    else:
        cluster = LocalCluster(n_workers=n_cpu, processes=True, **common,
                               **({"env": cpu_env} if cpu_env else {}))
        gpu_options = copy.deepcopy(cluster.new_spec.get("options", {}))
        extra = {}
        for i in range(n_gpu):
            env = {**gpu_options.get("env", {}), **({"CUDA_VISIBLE_DEVICES": devices[i]} if i < len(devices) else {})}
            extra[f"gpu-{i}"] = _nanny_spec(gpu_options, {"resources": {GPU_RESOURCE: 1}, "env": env})
    if extra:
        try:
            cluster.worker_spec.update(extra)
            cluster.scale(len(cluster.worker_spec))
            cluster.wait_for_workers(len(cluster.worker_spec), timeout=WORKER_START_TIMEOUT)
        except BaseException:
            cluster.close()
            raise
    return cluster


@contextmanager
def dask_client(
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    dashboard_address: str | None = ":8787",
    gpu_workers: int | None = None,
) -> Iterator[Client]:
    """A Dask client: on ``scheduler``/``scheduler_file`` if given, else on a new local cluster.

    The local cluster (see :func:`start_local_cluster`) has ``workers`` CPU workers and
    ``gpu_workers`` GPU workers (default: one per visible CUDA device).
    """
    if scheduler or scheduler_file:
        client = Client(address=scheduler, scheduler_file=scheduler_file)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = start_local_cluster(workers, gpu_workers, dashboard_address)
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    try:
        yield client
    finally:
        client.close()
        cluster.close()
