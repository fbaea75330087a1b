"""Kill a run with SIGKILL (the CLI and its workers), rerun it: the output equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import cli_env, curator_cmd, read_dataset, write_dataset
from tests.helpers.slow_pipeline import shard_rows, write_slow_pipeline

N_SHARDS = 24


def _setup(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "in", [shard_rows(s) for s in range(N_SHARDS)])
    return write_slow_pipeline(tmp_path / "p.yaml", "resume", "in", copy_seconds=0.4)


def _command(path: Path, run_dir: Path) -> list[str]:
    return [*curator_cmd(), "run", str(path), "--run-dir", str(run_dir), "--workers", "2",
            "--dashboard-address", ":0"]


def _kill_when(cmd: list[str], cwd: Path, ready, timeout: float = 120) -> bool:
    """Start a run; SIGKILL its whole process group once ``ready()``; True if it was killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=cli_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
        raise AssertionError("the run never reached the kill point")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path: Path) -> None:
    path = _setup(tmp_path)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.run(_command(path, ref_dir), cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr

    # Kill 1: part-way through the first stage (some shards done, some running).
    killed = _kill_when(_command(path, run_dir), tmp_path,
                        lambda: _count(run_dir / "copy" / "_stats", "part-*.json") >= 6)
    assert killed
    done_after_kill = sorted(p.name for p in (run_dir / "copy" / "_stats").glob("part-*.json"))
    assert 6 <= len(done_after_kill) < N_SHARDS
    stamps = {n: (run_dir / "copy" / "_stats" / n).stat().st_mtime_ns for n in done_after_kill}

    # Kill 2: once the global stage has started its phases.
    killed = _kill_when(_command(path, run_dir), tmp_path,
                        lambda: _count(run_dir / "dedup" / "_work" / "hash", "part-*.parquet") >= 1)
    assert killed
    assert not (run_dir / "dedup" / "_manifest.json").exists()
    # Finished shards of the first stage were not redone by the second attempt.
    assert all((run_dir / "copy" / "_stats" / n).stat().st_mtime_ns == t for n, t in stamps.items())

    final = subprocess.run(_command(path, run_dir), cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr

    for stage in ("copy", "short", "dedup"):
        got, want = read_dataset(run_dir / stage), read_dataset(ref_dir / stage)
        assert got.num_rows == want.num_rows
        assert got.equals(want), stage
    assert read_dataset(run_dir / "outputs" / "final").equals(read_dataset(ref_dir / "outputs" / "final"))
    assert read_dataset(run_dir / "short" / "_rejected").equals(read_dataset(ref_dir / "short" / "_rejected"))
    out = read_dataset(run_dir / "outputs" / "final")
    assert len(set(out.column("id").to_pylist())) == out.num_rows  # nothing doubled
    assert out.column("text").to_pylist().count("the same page text in every shard") == 1
    leftovers = [p for p in run_dir.rglob(".tmp-*")]
    assert leftovers == []
