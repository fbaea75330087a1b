"""Running on an existing Dask cluster: separate scheduler and worker processes on 127.0.0.1.

Outputs must equal a LocalCluster run row for row, also when a worker is SIGKILLed mid-stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from distributed import Client

from tests.conftest import REPO, cli_env, curator_cmd, read_dataset, write_dataset
from tests.helpers.dask_processes import DaskProcesses
from tests.helpers.slow_pipeline import shard_rows, write_slow_pipeline

SAMPLE_STAGES = ("warc", "decode", "extract", "langid", "ftfy", "dedup", "fuzzy_dedup", "quality_fasttext",
                 "quality_encoder", "quality")
N_SHARDS = 24
STAGES = ("copy", "short", "dedup")


def _sample_without_llm(folder: Path) -> Path:
    """pipelines/sample.yaml without its LLM branch (the slow part on a CPU), paths made absolute."""
    pipelines = REPO / "pipelines"
    spec = yaml.safe_load((pipelines / "sample.yaml").read_text())
    spec["inputs"]["crawl"]["files"] = str((pipelines / spec["inputs"]["crawl"]["files"]).resolve())
    spec["stages"] = [s for s in spec["stages"] if s["id"] != "synth"]
    for stage in spec["stages"]:
        if "model_path" in stage.get("with", {}):
            stage["with"]["model_path"] = str((pipelines / stage["with"]["model_path"]).resolve())
    spec["outputs"] = {"documents": spec["outputs"]["documents"]}
    path = folder / "sample_no_llm.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_scheduler_file_run_equals_local_cluster_run(tmp_path: Path, lid_model: Path,
                                                    quality_models: Path) -> None:
    sample = str(_sample_without_llm(tmp_path))
    with DaskProcesses(tmp_path / "cluster", cli_env()) as cluster:
        cluster.start_scheduler()
        cluster.start_worker("a")
        cluster.start_worker("b")
        cluster.wait_for_workers(["a", "b"])
        remote = subprocess.run([*curator_cmd(), "run", sample, "--scheduler-file", str(cluster.scheduler_file),
                                 "--run-dir", str(tmp_path / "remote")],
                                capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run([*curator_cmd(), "run", sample, "--workers", "2", "--dashboard-address", ":0",
                            "--run-dir", str(tmp_path / "local")],
                           capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert local.returncode == 0, local.stderr
    for stage in SAMPLE_STAGES:
        remote_rows, local_rows = read_dataset(tmp_path / "remote" / stage), read_dataset(tmp_path / "local" / stage)
        if stage.startswith("quality"):  # model scores: equal up to float rounding of other thread counts
            assert remote_rows.column("id").equals(local_rows.column("id")), stage
            for name in remote_rows.column_names:
                if pa.types.is_floating(remote_rows.schema.field(name).type):
                    assert np.allclose(remote_rows.column(name).to_numpy(zero_copy_only=False),
                                       local_rows.column(name).to_numpy(zero_copy_only=False),
                                       rtol=1e-4, atol=1e-5, equal_nan=True), (stage, name)
        else:
            assert remote_rows.equals(local_rows), stage
    assert read_dataset(tmp_path / "remote" / "outputs" / "documents").num_rows == \
        read_dataset(tmp_path / "local" / "outputs" / "documents").num_rows


# -- a small pipeline, on --scheduler ADDRESS, undisturbed and with a worker killed ---------------

def _write_pipeline(folder: Path) -> Path:
    write_dataset(folder / "in", [shard_rows(s) for s in range(N_SHARDS)])
    return write_slow_pipeline(folder / "p.yaml", "cluster", "in", copy_seconds=0.4)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small pipeline and its run on a LocalCluster of 2 workers: (pipeline file, run dir)."""
    folder = tmp_path_factory.mktemp("cluster_ref")
    path = _write_pipeline(folder)
    ref = subprocess.run([*curator_cmd(), "run", str(path), "--run-dir", str(folder / "ref"), "--workers", "2",
                          "--dashboard-address", ":0"],
                         capture_output=True, text=True, env=cli_env(), cwd=folder, timeout=300)
    assert ref.returncode == 0, ref.stderr
    return path, folder / "ref"


def _assert_same_output(run_dir: Path, ref_dir: Path) -> None:
    for stage in STAGES:
        got, want = read_dataset(run_dir / stage), read_dataset(ref_dir / stage)
        assert got.num_rows == want.num_rows, stage
        assert got.equals(want), stage
    assert read_dataset(run_dir / "short" / "_rejected").equals(read_dataset(ref_dir / "short" / "_rejected"))
    out = read_dataset(run_dir / "outputs" / "final")
    assert out.equals(read_dataset(ref_dir / "outputs" / "final"))
    assert len(set(out.column("id").to_pylist())) == out.num_rows  # nothing doubled
    assert out.column("text").to_pylist().count("the same page text in every shard") == 1
    manifest = json.loads((run_dir / "copy" / "_manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [30] * N_SHARDS  # nothing lost
    assert list(run_dir.rglob(".tmp-*")) == []


def _run_cmd(path: Path, run_dir: Path, address: str) -> list[str]:
    return [*curator_cmd(), "run", str(path), "--run-dir", str(run_dir), "--scheduler", address]


def test_scheduler_address_run_equals_local_cluster_run(tmp_path: Path, local_reference: tuple[Path, Path]) -> None:
    path, ref_dir = local_reference
    with DaskProcesses(tmp_path / "cluster", cli_env()) as cluster:
        address = cluster.start_scheduler()
        assert address.startswith("tcp://127.0.0.1:")
        cluster.start_worker("a")
        cluster.start_worker("b")
        cluster.wait_for_workers(["a", "b"])
        result = subprocess.run(_run_cmd(path, tmp_path / "run", address), capture_output=True, text=True,
                                env=cli_env(), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    workers = {json.loads(p.read_text())["worker"] for p in (tmp_path / "run" / "copy" / "_stats").glob("*.json")}
    assert len(workers) == 2, "both worker processes ran shards"
    _assert_same_output(tmp_path / "run", ref_dir)


def _done(run_dir: Path) -> int:
    folder = run_dir / "copy" / "_stats"
    return len(list(folder.glob("part-*.json"))) if folder.exists() else 0


def test_worker_sigkilled_mid_stage_run_completes_with_identical_output(
        tmp_path: Path, local_reference: tuple[Path, Path]) -> None:
    path, ref_dir = local_reference
    run_dir = tmp_path / "run"
    with DaskProcesses(tmp_path / "cluster", cli_env()) as cluster:
        address = cluster.start_scheduler()
        cluster.start_worker("a")
        cluster.start_worker("victim")
        by_name = cluster.wait_for_workers(["a", "victim"])
        with Client(address) as client:
            victim_pid = client.run(os.getpid, workers=[by_name["victim"]])[by_name["victim"]]
        proc = subprocess.Popen(_run_cmd(path, run_dir, address), cwd=tmp_path, env=cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while _done(run_dir) < 6:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the run never reached the kill point"
                time.sleep(0.02)
            cluster.kill_worker("victim")
            committed = {f.name: f.stat().st_mtime_ns for f in (run_dir / "copy" / "_stats").glob("part-*.json")}
            _, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(committed) < N_SHARDS, "the worker must die mid-stage"
    assert proc.returncode == 0, stderr
    # Shards committed before the kill are kept, not redone, including those the victim wrote
    # (Dask recomputes the results the dead worker held; the runner returns the committed record).
    stats = run_dir / "copy" / "_stats"
    assert {n: (stats / n).stat().st_mtime_ns for n in committed} == committed
    records = [json.loads(p.read_text()) for p in stats.glob("part-*.json")]
    by_victim = [r["shard"] for r in records if r["worker"].endswith(f":{victim_pid}")]
    assert 0 < len(by_victim) < N_SHARDS, "the victim ran some shards before it died"
    _assert_same_output(run_dir, ref_dir)


CLUSTER_STAGES = REPO / "tests" / "helpers" / "cluster_stages_for_tests.py"


def test_shard_that_kills_its_workers_fails_by_name(tmp_path: Path) -> None:
    shards = [[{"id": f"{s}-{r}", "text": "POISON" if (s, r) == (2, 1) else f"doc {s} {r}"} for r in range(3)]
              for s in range(4)]
    write_dataset(tmp_path / "in", shards)
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: poison
imports: [{CLUSTER_STAGES}]
inputs:
  docs: {{dataset: in}}
stages:
  - {{id: k, uses: test.kill_worker_on_text, from: docs}}
""")
    # Settings of the LocalCluster's scheduler: a shard may kill 2 workers; and a worker holds only the task it
    # runs, as otherwise a shard queued behind the poisoned one on the same worker is counted as a suspect too.
    env = {**cli_env(), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    result = subprocess.run([*curator_cmd(), "run", str(path), "--run-dir", str(tmp_path / "run"), "--workers", "1",
                             "--dashboard-address", ":0"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    assert "stage k, shard part-00002: 2 workers died while running it" in result.stderr, result.stderr
    done = sorted(p.stem for p in (tmp_path / "run" / "k" / "_stats").glob("part-*.json"))
    assert done == ["part-00000", "part-00001", "part-00003"]
