"""pipelines/nemotron_cc.yaml end to end on a 2-worker cluster: the real crawl excerpt and the sample."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import REPO, read_dataset

STAGES = ("warc", "decode", "extract", "langid", "ftfy", "dedup", "fuzzy_dedup", "decontaminate",
          "quality_fasttext", "quality_encoder", "quality", "gopher_quality", "gopher_repetition", "c4", "fineweb",
          "perplexity", "perplexity_filter")
LOWER_LABELS = ("low", "medium_low", "medium")


def _run(tmp_path: Path, client, lid_model: Path, warc: Path, extra: tuple[str, ...] = ()) -> dict[str, dict]:
    pipeline = load_pipeline(str(REPO / "pipelines" / "nemotron_cc.yaml"), run_dir=str(tmp_path / "run"),
                             overrides=[f"stages.langid.with.model_path={lid_model}", f"inputs.crawl.files={warc}",
                                        *extra])
    result = PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures
    totals = {s: json.loads((tmp_path / "run" / s / "_manifest.json").read_text())["totals"] for s in STAGES}
    for stage, t in totals.items():  # every document is out, or dropped under a reason
        assert t["docs_in"] == t["docs_out"] + sum(t["drops"].values()), stage
    for upstream, downstream in zip(STAGES, STAGES[1:]):
        assert totals[upstream]["docs_out"] == totals[downstream]["docs_in"]
    return totals


def test_on_the_real_crawl_excerpt(tmp_path: Path, shared_data: Path, dask_client, lid_model: Path,
                                   gguf_model: Path, quality_models: Path) -> None:
    # Only the wikipedia task, which takes low documents: the one English page comes out high (below).
    totals = _run(tmp_path, dask_client, lid_model, shared_data / "warc" / "warcfile.warc.gz",
                  ("stages.synth.with.tasks=[wikipedia]",))
    assert totals["warc"]["docs_out"] == 16
    # Mostly Chinese pages: jusText (word-based) finds no main text in them; Russian and Dutch
    # pages are extracted and then dropped by language ID.
    assert totals["extract"]["drops"]["extract_empty"] >= 10
    assert totals["langid"]["drops"]["lang_not_allowed"] >= 2
    langid_out = read_dataset(tmp_path / "run" / "langid")
    assert set(langid_out.column("lang").to_pylist()) == {"en"}
    # The one English page is the whole dataset, so it is every percentile of each classifier: bucket 19,
    # label high. Heuristic filters apply only to the lower three labels, so C4 (which would drop this
    # company blurb for too few sentences) lets it through, as the recipe wants for high-quality text.
    quality = read_dataset(tmp_path / "run" / "quality").to_pylist()
    assert [(r["quality_bucket"], r["quality_label"]) for r in quality] == [(19, "high")]
    assert totals["c4"]["drops"] == {} and totals["fineweb"]["docs_out"] == 1
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    for stage in STAGES:
        assert f"<td>{stage}</td>" in page
    assert "Deduplication and decontamination" in page and "<td>gsm8k</td>" in page


def test_on_the_sample_warc(tmp_path: Path, dask_client, lid_model: Path, gguf_model: Path,
        quality_models: Path) -> None:
    # Every label to one task, briefly, to run the branch.
    synth = ("stages.synth.with.tasks=[wikipedia]",
             "stages.synth.with.routes={wikipedia: [low, medium_low, medium, medium_high, high]}",
             "stages.synth.with.max_segments_per_document=1", "stages.synth.with.max_tokens={wikipedia: 16}")
    totals = _run(tmp_path, dask_client, lid_model, REPO / "sample_data" / "sample.warc.gz", synth)
    docs = read_dataset(tmp_path / "run" / "outputs" / "documents")
    urls = set(docs.column("url").to_pylist())
    for article in ("https://coastalhistory.example.org/articles/keepers-of-the-light",
                    "https://www.kitchen-notes.example.com/baking/sourdough-starter-to-loaf"):
        assert article in urls
    assert set(docs.column("lang").to_pylist()) == {"en"}
    assert totals["decode"]["drops"] == {"not_html": 2}
    assert totals["dedup"]["drops"] == {"exact_duplicate": 1}
    assert docs.num_rows == totals["perplexity_filter"]["docs_out"]
    # Every document has a perplexity; the filter dropped only low / medium_low ones above its threshold.
    assert all(p is not None and p > 1 for p in docs.column("perplexity").to_pylist())
    ppl_rejected = tmp_path / "run" / "perplexity_filter" / "_rejected"
    for row in (pq.read_table(ppl_rejected).to_pylist() if ppl_rejected.exists() else []):
        assert row["quality_label"] in ("low", "medium_low") and row["perplexity"] > 1500
    # The filters judged only the documents of the lower three labels.
    labels = dict(zip(read_dataset(tmp_path / "run" / "quality").column("id").to_pylist(),
                      read_dataset(tmp_path / "run" / "quality").column("quality_label").to_pylist()))
    for stage in ("gopher_quality", "gopher_repetition", "c4", "fineweb"):
        rejected_dir = tmp_path / "run" / stage / "_rejected"
        for row in (pq.read_table(rejected_dir).to_pylist() if rejected_dir.exists() else []):
            assert labels[row["id"]] in LOWER_LABELS, (stage, row["id"], labels[row["id"]])
    llm = json.loads((tmp_path / "run" / "synth" / "_llm_stats.json").read_text())
    assert llm["requests"] == llm["successes"] == docs.num_rows and list(llm["tasks"]) == ["wikipedia"]
    synthetic = pq.read_table(tmp_path / "run" / "synth", columns=["source_id", "task"]).to_pylist()
    rejected_dir = tmp_path / "run" / "synth" / "_rejected"
    rejected = pq.read_table(rejected_dir, columns=["source_id", "task"]).to_pylist() if rejected_dir.exists() else []
    assert sorted(r["source_id"] for r in synthetic + rejected) == sorted(docs.column("id").to_pylist())
