"""pipelines/nemotron_cc.yaml end to end on the reference Common Crawl WARC, on a 2-worker cluster."""

from __future__ import annotations

import json
from pathlib import Path

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import REPO, read_dataset


def test_nemotron_cc_pipeline_on_real_crawl(tmp_path: Path, dask_client, lid_model: Path) -> None:
    pipeline = load_pipeline(str(REPO / "pipelines" / "nemotron_cc.yaml"), run_dir=str(tmp_path / "run"),
                             overrides=[f"stages.langid.with.model_path={lid_model}"])
    result = PipelineRunner(pipeline, dask_client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures
    totals = {s: json.loads((tmp_path / "run" / s / "manifest.json").read_text())["totals"]
              for s in ("warc", "decode", "extract", "langid", "ftfy", "dedup")}
    assert totals["warc"]["docs_out"] == 16
    # The crawl excerpt holds zh and ru pages among others: only English survives language ID.
    docs = read_dataset(tmp_path / "run" / "outputs" / "documents")
    assert docs.num_rows == totals["dedup"]["docs_out"] > 0
    assert set(docs.column("lang").to_pylist()) == {"en"}
    assert totals["langid"]["drops"].get("lang_not_allowed", 0) >= 2
    assert all(len(t) >= 50 for t in docs.column("text").to_pylist())
    # Every document that went in is accounted for: out, or dropped under a reason.
    for stage, t in totals.items():
        assert t["docs_in"] == t["docs_out"] + sum(t["drops"].values()), stage
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    for stage in totals:
        assert f"<td>{stage}</td>" in page
