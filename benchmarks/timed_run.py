"""Run a pipeline given as YAML text through the runner on an existing client, timed."""

from __future__ import annotations

import time
from pathlib import Path

from distributed import Client

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner, RunResult


def timed_run(client: Client, pipeline_yaml: str, run_dir: Path) -> tuple[float, RunResult]:
    """Write the pipeline file beside ``run_dir``, run it, and return (seconds, result)."""
    pipeline_file = run_dir.parent / f"{run_dir.name}.yaml"
    pipeline_file.write_text(pipeline_yaml)
    pipeline = load_pipeline(str(pipeline_file), run_dir=str(run_dir))
    start = time.perf_counter()
    result = PipelineRunner(pipeline, client, ProgressBoard(interactive=False, quiet_interval=1e9)).run()
    elapsed = time.perf_counter() - start
    assert result.ok, result.failures
    return elapsed, result
