"""A Dask cluster of separate OS processes on 127.0.0.1: ``dask scheduler`` and ``dask worker`` commands.

Each process runs in its own session (process group), so a worker and its nanny can be killed
together with SIGKILL, as a lost machine would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client


def dask_cli() -> str:
    """The ``dask`` command of this environment."""
    return str(Path(sys.executable).with_name("dask"))


class DaskProcesses:
    """A scheduler process and named worker processes; use as a context manager (stops everything)."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.env = dict(os.environ) if env is None else env
        self.scheduler_file = folder / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_scheduler(self, timeout: float = 60) -> str:
        """Start ``dask scheduler`` on a free port of 127.0.0.1; return its address once it is up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler = self._spawn([dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--dashboard-address", ":0", "--scheduler-file", str(self.scheduler_file)],
                                     "scheduler")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with {self.scheduler.returncode}: "
                                   f"see {self._log('scheduler')}")
            if self.scheduler_file.exists():
                try:
                    return str(json.loads(self.scheduler_file.read_text())["address"])
                except (ValueError, KeyError):
                    pass  # being written
            time.sleep(0.1)
        raise TimeoutError(f"dask scheduler did not write {self.scheduler_file} within {timeout:.0f}s")

    @property
    def address(self) -> str:
        """The scheduler's address (tcp://127.0.0.1:PORT)."""
        return str(json.loads(self.scheduler_file.read_text())["address"])

    def start_worker(self, name: str, resources: str | None = None, nanny: bool = True) -> subprocess.Popen:
        """Start one single-threaded ``dask worker`` process named ``name`` (``resources``: e.g. ``GPU=1``)."""
        cmd = [dask_cli(), "worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "1",
               "--host", "127.0.0.1", "--no-dashboard"]
        if resources:
            cmd += ["--resources", resources]
        if not nanny:
            cmd.append("--no-nanny")
        proc = self._spawn(cmd, f"worker-{name}")
        self.workers[name] = proc
        return proc

    def wait_for_workers(self, names: list[str], timeout: float = 90) -> dict[str, str]:
        """Wait until the named workers are connected; return their addresses by name."""
        with Client(self.address, timeout=timeout) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                by_name = {str(w["name"]): addr for addr, w in client.scheduler_info()["workers"].items()}
                if all(n in by_name for n in names):
                    return {n: by_name[n] for n in names}
                for n in names:
                    proc = self.workers.get(n)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"dask worker {n} exited with {proc.returncode}: "
                                           f"see {self._log(f'worker-{n}')}")
                time.sleep(0.1)
        raise TimeoutError(f"workers {names} did not connect to {self.address} within {timeout:.0f}s")

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group (the worker and its nanny): a lost machine."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop every worker, then the scheduler (SIGTERM, then SIGKILL after 20 s)."""
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.workers.clear()
        self.scheduler = None

    # -- helpers --------------------------------------------------------------------------------

    def _log(self, label: str) -> Path:
        return self.folder / f"{label}.log"

    def _spawn(self, cmd: list[str], label: str) -> subprocess.Popen:
        with open(self._log(label), "ab") as log_file:
            return subprocess.Popen(cmd, env=self.env, start_new_session=True, stdout=log_file,
                                    stderr=subprocess.STDOUT, cwd=self.folder)
