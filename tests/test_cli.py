"""The curator command line: stages, run with progress and dashboard, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, cli_env, curator_cmd

SAMPLE_STAGES = ("warc", "decode", "extract", "langid", "ftfy", "dedup", "fuzzy_dedup", "quality_fasttext",
                 "quality_encoder", "quality", "perplexity", "synth")


def test_stages_lists_names_params_and_docs() -> None:
    proc = subprocess.run([*curator_cmd(), "stages"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dedup.exact  -  Exact dedup across the dataset" in proc.stdout
    assert "    normalize: 'none' | 'whitespace' | 'lower_whitespace' = 'whitespace'  Normalisation before hashing." in proc.stdout
    listing = json.loads(subprocess.run([*curator_cmd(), "stages", "--json"], capture_output=True, text=True,
                                        env=cli_env(), timeout=120).stdout)
    warc = next(s for s in listing if s["name"] == "io.warc")
    assert {p["name"] for p in warc["params"]} == {"max_body_mb", "batch_records"}


def test_run_sample_then_rerun_then_report(tmp_path: Path, lid_model: Path, gguf_model: Path,
                                          quality_models: Path) -> None:
    cmd = [*curator_cmd(), "run", str(REPO / "pipelines" / "sample.yaml"), "--workers", "2",
           "--run-dir", str(tmp_path / "run"), "--dashboard-address", ":0"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "curator: Dask dashboard at http://" in first.stderr
    assert "Traceback" not in first.stderr and "Error" not in first.stderr, first.stderr
    sys.stderr.write(first.stderr)  # pytest shows it in full if a check below fails
    for stage in SAMPLE_STAGES:
        # Workers (llama.cpp from C) write to the same stderr, and may leave a line unfinished just before one
        # of ours; so a progress line may follow any character that cannot be part of a stage name.
        assert re.search(rf"(?<![\w]){stage}\s+1/1\b.*done", first.stderr), stage
    second = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert second.returncode == 0
    assert second.stderr.count("1 already done") == len(SAMPLE_STAGES)
    report = subprocess.run([*curator_cmd(), "report", str(tmp_path / "run")], capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert report.returncode == 0
    page = Path(report.stdout.strip()).read_text()
    # three funnels, drops, two timing plots, fuzzy_dedup's cluster sizes, synth's requests and latency, the quality
    # labels and three 0-19 bucket histograms
    assert "Funnel" in page and page.count("<svg") == 13 and "<h2>Quality buckets</h2>" in page
    for stage in SAMPLE_STAGES:
        assert f"<td>{stage}</td>" in page


def test_report_of_a_non_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([*curator_cmd(), "report", str(tmp_path)], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert proc.returncode == 2
    assert "no run.json" in proc.stderr
