"""The bundled sample job, end to end on a real LocalCluster with 2 workers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import REPO, read_dataset

MANIFEST = json.loads((REPO / "sample_data" / "pages" / "MANIFEST.json").read_text())


def test_sample_pipeline_end_to_end(tmp_path: Path, dask_client) -> None:
    pipeline = load_pipeline(str(REPO / "pipelines" / "sample.yaml"), run_dir=str(tmp_path / "run"))
    result = PipelineRunner(pipeline, dask_client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures
    records = MANIFEST["records"] if isinstance(MANIFEST, dict) else MANIFEST
    n_responses = len(records)

    warc = read_dataset(tmp_path / "run" / "warc")
    assert warc.num_rows == n_responses
    assert len(set(warc.column("id").to_pylist())) == n_responses
    assert all(s.endswith(".warc.gz@" + s.rsplit("@", 1)[1]) for s in warc.column("source").to_pylist())

    docs = read_dataset(tmp_path / "run" / "outputs" / "documents")
    urls = set(docs.column("url").to_pylist())
    by_kind = {r["kind"]: r["url"] for r in records}
    # Non-HTML records are dropped as not_html. (The plain extractor keeps boilerplate, so even the
    # stub page's header and footer make it long enough to keep.)
    text_rejected = pq.read_table(tmp_path / "run" / "text" / "_rejected" / "part-00000.parquet")
    reasons = dict(zip(text_rejected.column("url").to_pylist(), text_rejected.column("drop_reason").to_pylist()))
    not_html = [r["url"] for r in records if r["kind"] == "not_html"]
    assert all(reasons[u] == "not_html" for u in not_html)
    assert set(reasons) == set(not_html)
    # Of the exact duplicate pair one copy is kept, with the count of copies.
    dup_of = next(r for r in records if r["kind"].startswith("exact_duplicate_of:"))
    original = dup_of["kind"].split(":", 1)[1]
    kept = [u for u in (dup_of["url"], original) if u in urls]
    assert len(kept) == 1
    row = docs.filter(pc.equal(docs.column("url"), kept[0]))
    assert row.column("exact_dup_count").to_pylist() == [2]
    # The near duplicate is not an exact duplicate: both survive exact dedup.
    near = next(r for r in records if r["kind"].startswith("near_duplicate_of:"))
    assert near["url"] in urls and near["kind"].split(":", 1)[1] in urls
    # Non-English and Latin-1 pages are decoded correctly.
    latin = docs.filter(pc.equal(docs.column("url"), by_kind["latin1"])).column("text")[0].as_py()
    assert any(ch in latin for ch in "éèàç") and "\ufffd" not in latin
    assert docs.num_rows == n_responses - len(not_html) - 1

    report = Path(write_report(str(tmp_path / "run")))
    html = report.read_text()
    assert html.count("<svg") == 2 and "Documents out of each stage" in html
    for stage in ("warc", "text", "dedup"):
        assert f"<td>{stage}</td>" in html
