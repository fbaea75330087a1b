"""The bundled sample job, end to end on a real LocalCluster with 2 workers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import REPO, read_dataset

MANIFEST = json.loads((REPO / "sample_data" / "pages" / "MANIFEST.json").read_text())["records"]


def _urls(kind_prefix: str) -> list[str]:
    return [r["url"] for r in MANIFEST if r["kind"].startswith(kind_prefix)]


def _reasons(run: Path, stage: str) -> dict[str, str]:
    rejected = read_dataset(run / stage / "_rejected")
    return dict(zip(rejected.column("url").to_pylist(), rejected.column("drop_reason").to_pylist()))


def test_sample_pipeline_end_to_end(tmp_path: Path, dask_client, lid_model: Path, gguf_model: Path,
        quality_models: Path) -> None:
    run = tmp_path / "run"
    pipeline = load_pipeline(str(REPO / "pipelines" / "sample.yaml"), run_dir=str(run),
                             overrides=[f"stages.langid.with.model_path={lid_model}"])
    result = PipelineRunner(pipeline, dask_client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures

    warc = read_dataset(run / "warc")
    assert warc.num_rows == len(MANIFEST)
    assert len(set(warc.column("id").to_pylist())) == len(MANIFEST)
    assert all("sample.warc.gz@" in s for s in warc.column("source").to_pylist())

    # The PNG and the PDF are not HTML; the Latin-1 page is decoded by its declared charset.
    assert _reasons(run, "decode") == {u: "not_html" for u in _urls("not_html")}
    decoded = read_dataset(run / "decode")
    latin = decoded.filter(pc.equal(decoded.column("url"), _urls("latin1")[0]))
    assert latin.column("charset").to_pylist() == ["cp1252"] and "é" in latin.column("html")[0].as_py()
    # jusText finds no main text in the link-listing page and the stub.
    extract_drops = _reasons(run, "extract")
    assert extract_drops == {u: "extract_empty" for u in
                             ["https://www.dailyfinds.example.com/category/home-garden/page/3/", _urls("stub")[0]]}
    # Only English is kept.
    assert set(_reasons(run, "langid").values()) == {"lang_not_allowed"}
    assert set(_reasons(run, "langid")) == set(_urls("non_english") + _urls("latin1"))

    docs = read_dataset(run / "outputs" / "documents")
    urls = set(docs.column("url").to_pylist())
    assert set(docs.column("lang").to_pylist()) == {"en"}
    # Of the exact duplicate pair one copy is kept, with the count of copies; the near duplicate
    # is not an exact one, so both of that pair survive exact dedup.
    dup = next(r for r in MANIFEST if r["kind"].startswith("exact_duplicate_of:"))
    pair = [dup["url"], dup["kind"].split(":", 1)[1]]
    kept = [u for u in pair if u in urls]
    assert len(kept) == 1
    assert docs.filter(pc.equal(docs.column("url"), kept[0])).column("exact_dup_count").to_pylist() == [2]
    # The near duplicate (an updated version of the budget story, shingle Jaccard 0.89) survives
    # exact dedup and is removed by MinHash dedup, which keeps the copy with the smaller id.
    near = next(r for r in MANIFEST if r["kind"].startswith("near_duplicate_of:"))
    near_pair = {near["url"], near["kind"].split(":", 1)[1]}
    exact_out = set(read_dataset(run / "dedup").column("url").to_pylist())
    assert near_pair <= exact_out
    assert len(near_pair & urls) == 1
    fuzzy_rejected = pq.read_table(run / "fuzzy_dedup" / "_rejected").to_pylist()
    assert [r["url"] in near_pair and r["drop_reason"] == "fuzzy_duplicate" for r in fuzzy_rejected] == [True]
    survivor = docs.filter(pc.is_in(docs.column("url"), pa.array(sorted(near_pair)))).to_pylist()[0]
    assert survivor["cluster_size"] == 2 and survivor["cluster_id"] == survivor["id"]
    assert survivor["id"] < fuzzy_rejected[0]["id"] and fuzzy_rejected[0]["cluster_id"] == survivor["id"]
    assert docs.num_rows == 8

    # The synthetic branch: the five tasks on every document, through the embedded llama.cpp model.
    synth = read_dataset(run / "outputs" / "synthetic").to_pylist()
    synth_rejected = pq.read_table(run / "synth" / "_rejected").to_pylist()
    rows = synth + synth_rejected
    tasks = {"wikipedia", "diverse_qa", "distill", "extract_knowledge", "knowledge_list"}
    assert sorted((r["source_id"], r["task"]) for r in rows) == sorted(
        (doc_id, task) for doc_id in docs.column("id").to_pylist() for task in tasks)
    assert synth, "the base model kept nothing: the sample shows no output"
    for row in rows:
        assert row["id"] == f"{row['source_id']}/{row['task']}/0" and row["model"] == "gemma-3-270m-q4_k_m.gguf"
        assert json.loads(row["sampling"]) == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64, "stop": ["\n\n"]}
        assert row["prompt_tokens"] > 0
    for row in synth:
        assert row["text"] and not row["text"].startswith("Here ") and len(row["text"].split()) >= 10
    assert {r["drop_reason"] for r in synth_rejected} <= {"length_cap", "too_short", "missing_prefix", "no_qa_pairs"}
    llm = json.loads((run / "synth" / "_llm_stats.json").read_text())
    assert llm["requests"] == len(rows) == 40 and llm["successes"] == 40 and llm["failures"] == {}
    assert llm["segments_skipped"] > 0 and llm["tokens_out"] > 0
    assert {t: c["segments"] for t, c in llm["tasks"].items()} == {t: 8 for t in tasks}
    assert sum(c["kept"] for c in llm["tasks"].values()) == len(synth)

    html = Path(write_report(str(run))).read_text()
    # Quality: two classifiers, each document bucketed 0-19 by each one's percentiles, the maximum labelled.
    labels = docs.column("quality_label").to_pylist()
    assert set(labels) <= {"high", "medium_high", "medium", "medium_low", "low"} and len(labels) == 8
    assert docs.column("quality_bucket").to_pylist() == [
        max(a, b) for a, b in zip(docs.column("fasttext_quality_bucket").to_pylist(),
                                  docs.column("quality_minilm_bucket").to_pylist())]
    thresholds = json.loads((run / "quality" / "_quality_thresholds.json").read_text())
    assert thresholds["format"] == "curator.quality_thresholds" and len(thresholds["percentiles"]) == 19
    assert html_has_quality(Path(write_report(str(run))).read_text(), labels)

    html = Path(write_report(str(run))).read_text()
    assert html.count("<svg") == 13 and "Documents out of each stage" in html
    assert "fuzzy_dedup: clusters by size" in html and "1 clusters of near-duplicates holding 2 documents" in html
    for stage in ("warc", "decode", "extract", "langid", "ftfy", "dedup", "fuzzy_dedup", "quality_fasttext",
                  "quality_encoder", "quality", "synth"):
        assert f"<td>{stage}</td>" in html
    assert "LLM requests" in html and "40 requests sent" in html and "(max_segments_per_document)" in html


def html_has_quality(html: str, labels: list[str]) -> bool:
    """The report's quality section shows each label's document count and share."""
    if "<h2>Quality buckets</h2>" not in html:
        return False
    return all(f"<tr><td>{label}</td>" in html
               and f"<td>{labels.count(label)}</td><td>{labels.count(label) / 8:.1%}</td>" in html
               for label in set(labels))
