"""Running on an existing Dask cluster: separate scheduler and worker processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, cli_env, curator_cmd, read_dataset



def _dask_cli() -> str:
    return str(Path(sys.executable).with_name("dask"))


def test_scheduler_file_run_equals_local_cluster_run(tmp_path: Path, lid_model: Path) -> None:
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
                                 "--run-dir", str(tmp_path / "remote")],
                                capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
        assert remote.returncode == 0, remote.stderr
        local = subprocess.run([*curator_cmd(), "run", sample, "--workers", "2", "--dashboard-address", ":0",
                                "--run-dir", str(tmp_path / "local")],
                               capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
        assert local.returncode == 0, local.stderr
        for stage in ("warc", "decode", "extract", "langid", "ftfy", "dedup"):
            assert read_dataset(tmp_path / "remote" / stage).equals(read_dataset(tmp_path / "local" / stage))
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
