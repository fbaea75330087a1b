"""Running on an existing Dask cluster: separate scheduler and worker processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, cli_env, curator_cmd, read_dataset



def _dask_cli() -> str:
    return str(Path(sys.executable).with_name("dask"))


# The LLM branch samples at temperature 0.5, so its answers differ between runs; one task of it
# is enough to show that it runs on an external cluster too.
ONE_LLM_TASK = ("--set", "stages.synth.with.tasks=[wikipedia]")


def test_scheduler_file_run_equals_local_cluster_run(tmp_path: Path, lid_model: Path, gguf_model: Path,
                                                    quality_models: Path) -> None:
    scheduler_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                              env=cli_env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scheduler_file.exists(), "the scheduler did not start"
        procs.append(subprocess.Popen([_dask_cli(), "worker", "--scheduler-file", str(scheduler_file),
                                       "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1"],
                                      env=cli_env(), start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sample = str(REPO / "pipelines" / "sample.yaml")
        remote = subprocess.run([*curator_cmd(), "run", sample, "--scheduler-file", str(scheduler_file),
                                 "--run-dir", str(tmp_path / "remote"), *ONE_LLM_TASK],
                                capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
        assert remote.returncode == 0, remote.stderr
        local = subprocess.run([*curator_cmd(), "run", sample, "--workers", "2", "--dashboard-address", ":0",
                                "--run-dir", str(tmp_path / "local"), *ONE_LLM_TASK],
                               capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
        assert local.returncode == 0, local.stderr
        for stage in ("warc", "decode", "extract", "langid", "ftfy", "dedup"):
            assert read_dataset(tmp_path / "remote" / stage).equals(read_dataset(tmp_path / "local" / stage))
        for run in ("remote", "local"):
            llm = json.loads((tmp_path / run / "synth" / "_llm_stats.json").read_text())
            assert llm["requests"] == llm["successes"] == 8 and list(llm["tasks"]) == ["wikipedia"]
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
