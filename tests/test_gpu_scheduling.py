"""GPU-aware scheduling: GPU stages run only on workers advertising the Dask resource GPU; without
such workers the run says so before starting and falls back to CPU workers, or refuses to start.

No GPU is needed: ``GPU`` is a label a worker advertises (``dask worker --resources GPU=1``).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pyarrow.compute as pc
import pytest
from distributed import Client, LocalCluster

from curator.cluster import start_local_cluster, visible_cuda_devices
from curator.gpu_placement import place_gpu_stages
from tests.conftest import REPO, cli_env, curator_cmd, read_dataset, write_dataset
from tests.helpers.dask_processes import DaskProcesses
from tests.helpers.gpu_stages_for_tests import CpuMarker, GpuMarker, GpuOnly

GPU_STAGES = REPO / "tests" / "helpers" / "gpu_stages_for_tests.py"
N_SHARDS = 8
FALLBACK_LINE = ("stage gpu (test.gpu_marker) asks for 1 GPU per task but no worker advertises the Dask resource "
                 "GPU: it falls back to its CPU path on the CPU workers")


def _pipeline(tmp_path: Path, gpu_stage: str = "test.gpu_marker") -> Path:
    write_dataset(tmp_path / "in", [[{"id": f"{s}-{r}", "text": f"doc {s} {r}"} for r in range(5)]
                                    for s in range(N_SHARDS)])
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: gpu_mix
imports: [{GPU_STAGES}]
inputs:
  docs: {{dataset: in}}
stages:
  - {{id: cpu, uses: test.cpu_marker, from: docs}}
  - {{id: gpu, uses: {gpu_stage}, from: cpu}}
""")
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*curator_cmd(), "run", str(tmp_path / "p.yaml"), "--run-dir", str(tmp_path / "run"),
                           "--dashboard-address", ":0", *args],
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)


def test_gpu_stage_runs_only_on_the_gpu_labelled_worker(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    with DaskProcesses(tmp_path / "cluster", cli_env()) as cluster:
        cluster.start_scheduler()
        cluster.start_worker("gpu-worker", resources="GPU=1")
        cluster.start_worker("cpu-worker")
        cluster.wait_for_workers(["gpu-worker", "cpu-worker"])
        result = subprocess.run([*curator_cmd(), "-v", "run", str(tmp_path / "p.yaml"), "--run-dir",
                                 str(tmp_path / "run"), "--scheduler", cluster.address],
                                capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert ("stage gpu (test.gpu_marker) asks for 1 GPU per task: it runs on the 1 worker(s) that advertise "
            "the Dask resource GPU") in result.stderr
    gpu = read_dataset(tmp_path / "run" / "gpu")
    assert gpu.num_rows == N_SHARDS * 5
    assert set(gpu.column("gpu_worker").to_pylist()) == {"gpu-worker"}
    assert pc.all(gpu.column("on_gpu_worker")).as_py()
    # CPU tasks are not tied to the GPU worker: the other worker ran some of them.
    assert "cpu-worker" in set(gpu.column("cpu_worker").to_pylist()) <= {"gpu-worker", "cpu-worker"}


def test_local_cluster_gpu_workers_take_the_gpu_stage(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    result = _run(tmp_path, "--workers", "1", "--gpu-workers", "1")
    assert result.returncode == 0, result.stderr
    gpu = read_dataset(tmp_path / "run" / "gpu")
    assert set(gpu.column("gpu_worker").to_pylist()) == {"gpu-0"}
    assert pc.all(gpu.column("on_gpu_worker")).as_py()


def test_no_gpu_worker_falls_back_and_says_so_before_starting(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    result = _run(tmp_path, "--workers", "1", "--gpu-workers", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if FALLBACK_LINE in line]
    assert len(said) == 1, result.stderr
    assert not any(" shards " in line for line in lines[: said[0]]), "the line must come before any progress"
    gpu = read_dataset(tmp_path / "run" / "gpu")
    assert gpu.num_rows == N_SHARDS * 5 and not pc.any(gpu.column("on_gpu_worker")).as_py()


def test_stage_that_cannot_run_on_cpu_refuses_to_start(tmp_path: Path) -> None:
    _pipeline(tmp_path, gpu_stage="test.gpu_only")
    result = _run(tmp_path, "--workers", "1", "--gpu-workers", "0")
    assert result.returncode == 1
    assert "curator: cannot start:" in result.stderr
    assert ("stage gpu (test.gpu_only) asks for 1 GPU per task but no worker advertises the Dask resource GPU, "
            "and it cannot run on a CPU") in result.stderr
    assert not (tmp_path / "run" / "cpu").exists(), "nothing may run when the run refuses to start"


def test_placements_follow_worker_capacity() -> None:
    stages = [("c", "test.cpu_marker", CpuMarker()), ("g", "test.gpu_marker", GpuMarker()),
              ("o", "test.gpu_only", GpuOnly())]
    with_gpu = {p.stage_id: p for p in place_gpu_stages(stages, {"tcp://a": 1.0})}
    assert set(with_gpu) == {"g", "o"}
    assert all(p.action == "gpu" and p.submit_resources == {"GPU": 1.0} for p in with_gpu.values())
    without = {p.stage_id: p for p in place_gpu_stages(stages, {})}
    assert without["g"].action == "cpu_fallback" and without["g"].submit_resources is None
    assert without["o"].action == "refuse"
    assert without["g"].message == FALLBACK_LINE.replace("stage gpu", "stage g")


def test_visible_cuda_devices(tmp_path: Path) -> None:
    assert visible_cuda_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_cuda_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_cuda_devices({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    for i in range(2):
        (tmp_path / f"0000:0{i}:00.0").mkdir()
    assert visible_cuda_devices({}, proc_gpus=tmp_path) == ["0", "1"]
    assert visible_cuda_devices({}, proc_gpus=tmp_path / "missing") == []


class _FakeLocalCUDACluster(LocalCluster):
    """Stands in for dask-cuda's LocalCUDACluster (not installed here): a LocalCluster that takes
    its CUDA_VISIBLE_DEVICES argument and records what it was asked for."""

    calls: list[dict] = []

    def __init__(self, CUDA_VISIBLE_DEVICES: str | None = None, **kwargs: object) -> None:  # noqa: N803
        self.calls.append({"CUDA_VISIBLE_DEVICES": CUDA_VISIBLE_DEVICES, **kwargs})
        super().__init__(processes=True, **kwargs)


def test_local_cluster_uses_dask_cuda_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=_FakeLocalCUDACluster))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    _FakeLocalCUDACluster.calls.clear()
    with start_local_cluster(workers=1, dashboard_address=None) as cluster, Client(cluster) as client:
        workers = client.scheduler_info()["workers"].values()
        resources = sorted((str(w["name"]), w.get("resources") or {}) for w in workers)
        env = client.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
    [call] = _FakeLocalCUDACluster.calls
    assert call["CUDA_VISIBLE_DEVICES"] == "0" and call["n_workers"] == 1 and call["resources"] == {"GPU": 1}
    assert resources == [("0", {"GPU": 1}), ("cpu-0", {})]
    assert sorted(env.values()) == ["", "0"], "the CPU worker must see no GPU"
