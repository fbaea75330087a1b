"""classify.ensemble on a real LocalCluster: exact token-weighted thresholds against a plain numpy
reference, buckets, max and labels, nulls kept, the summary and the report's label shares, resume,
and reuse of saved thresholds on a second dataset; plus the stage's parts without a cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from classifiers.ensemble import (
    ARTIFACT_FILE, ClassifierScore, QualityEnsemble, ThresholdArtifact, add_quality_columns, document_weights,
    load_artifact, load_tokenizer, oriented_scores,
)
from classifiers.percentiles import bucketize, weighted_thresholds
from classifiers.quality_labels import LABEL_BUCKETS, labels_of
from curator.pipeline import PipelineError, load_pipeline
from curator.plan import ENSEMBLE_SUMMARY
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner, RunResult
from tests.conftest import read_dataset

WORDS = ["the", "data", "model", "score", "web", "page", "text", "token", "quality", "crawl"]
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("ft", pa.float64()), ("edu", pa.float32()),
                    ("ppl", pa.float64())])
CLASSIFIERS = "[ft, {column: edu, name: edu_score}, {column: ppl, invert: true}]"


def make_rows(seed: int, n: int, shift: float = 0.0) -> list[dict]:
    """Documents of 0-80 words with punctuation (some with null text: weight 0) and three scores:
    ``ft`` with 40 % exact ties at 0.0, ``edu`` rounded to 0.1 (float32) with nulls, ``ppl`` (lower is
    better) with NaN; a few documents have no score at all."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = [str(w) for w in rng.choice(WORDS, int(rng.integers(0, 80)))]
        text = None if rng.random() < 0.03 else " ".join(words) + rng.choice([".", "!", ", ok.", ""])
        ft = 0.0 if rng.random() < 0.4 else float(min(1.0, rng.random() + shift))
        edu = None if rng.random() < 0.1 else round(float(rng.normal(2.0 + shift, 0.8)), 1)
        ppl = float("nan") if rng.random() < 0.05 else float(rng.lognormal(3.0 - shift, 0.5))
        if rng.random() < 0.03:
            ft, edu, ppl = None, None, None
        rows.append({"id": f"s{seed}-{i:04d}", "text": text, "ft": ft, "edu": edu, "ppl": ppl})
    return rows


def write_shards(directory: Path, rows: list[dict], shards: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[s::shards], schema=SCHEMA), directory / f"part-{s:05d}.parquet")
    return directory


def approx_tokens(text: str | None) -> int:
    """The stage's approximate token count, for ASCII text: words and punctuation marks."""
    return len(re.findall(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\s]", text or ""))


def column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)


def reference_buckets(rows: list[dict], thresholds: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Buckets computed in plain numpy from the rows and the saved thresholds (ppl inverted)."""
    out = {"ft": bucketize(column(rows, "ft"), thresholds["ft"]),
           "edu": bucketize(column(rows, "edu").astype(np.float32).astype(np.float64), thresholds["edu_score"]),
           "ppl": bucketize(-column(rows, "ppl"), [-t for t in thresholds["ppl"]])}
    out["quality"] = np.max(np.stack([out["ft"], out["edu"], out["ppl"]]), axis=0)
    return out


def run_pipeline(tmp: Path, client, dataset: Path, params: str, name: str) -> tuple[RunResult, Path]:
    path = tmp / f"{name}.yaml"
    path.write_text(f"""
name: ens
run_dir: run-{name}
imports: [classifiers.ensemble]
inputs:
  docs: {{dataset: {dataset}}}
stages:
  - {{id: ensemble, uses: classify.ensemble, from: docs, with: {{{params}}}}}
outputs:
  final: {{from: ensemble, path: out-{name}}}
""")
    result = PipelineRunner(load_pipeline(str(path), []), client, ProgressBoard(interactive=False)).run()
    return result, tmp / f"run-{name}"


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, dask_client) -> dict:
    """One calibration run: 5 shards, tokens approximated, 8 bins per round (several search rounds)."""
    tmp = tmp_path_factory.mktemp("ensemble")
    rows = make_rows(seed=1, n=1200)
    dataset = write_shards(tmp / "in", rows, shards=5)
    params = f"classifiers: {CLASSIFIERS}, search_bins: 8, thresholds_out: saved/thresholds.json"
    result, run_dir = run_pipeline(tmp, dask_client, dataset, params, "cal")
    assert result.ok, result.failures
    return {"tmp": tmp, "rows": rows, "dataset": dataset, "params": params, "run_dir": run_dir,
            "stage_dir": run_dir / "ensemble", "out": tmp / "out-cal"}


def test_thresholds_are_the_exact_token_weighted_percentiles(calibrated) -> None:
    rows = calibrated["rows"]
    artifact = json.loads((calibrated["stage_dir"] / ARTIFACT_FILE).read_text())
    assert artifact["format"] == "curator.quality_thresholds" and artifact["version"] == 1
    assert artifact["weight"] == "tokens" and artifact["tokenizer"]["kind"] == "approximate"
    weights = np.array([approx_tokens(r["text"]) for r in rows])
    got = {name: entry["thresholds"] for name, entry in artifact["classifiers"].items()}
    assert got["ft"] == weighted_thresholds(column(rows, "ft"), weights).tolist()
    assert got["ft"][:8] == [0.0] * 8          # the tied zeros (40 % of documents) hold the low percentiles
    edu = column(rows, "edu").astype(np.float32).astype(np.float64)
    assert got["edu_score"] == weighted_thresholds(edu, weights).tolist()
    # Lower is better: thresholds on the score's own scale, in bucket order (descending).
    assert got["ppl"] == (-weighted_thresholds(-column(rows, "ppl"), weights)).tolist()
    assert got["ppl"] == sorted(got["ppl"], reverse=True)
    edu_entry = artifact["classifiers"]["edu_score"]
    assert edu_entry["column"] == "edu"
    assert edu_entry["null_scores"] == int(np.isnan(edu).sum())
    assert edu_entry["total_weight"] == int(weights[~np.isnan(edu)].sum())
    assert artifact["classifiers"]["ppl"]["min"] == float(np.nanmin(column(rows, "ppl")))
    # The search took several rounds (8 bins), each a resumable phase; saved also at thresholds_out.
    summary = json.loads((calibrated["stage_dir"] / ENSEMBLE_SUMMARY).read_text())
    assert summary["thresholds"]["search_rounds"] >= 2
    assert (calibrated["stage_dir"] / "_work" / "refine-2").is_dir()
    assert json.loads((calibrated["tmp"] / "saved" / "thresholds.json").read_text()) == artifact


def test_buckets_max_and_labels_with_no_row_dropped(calibrated) -> None:
    rows = calibrated["rows"]
    out = read_dataset(calibrated["out"])
    assert out.num_rows == len(rows)
    by_id = {r["id"]: r for r in out.to_pylist()}
    assert set(by_id) == {r["id"] for r in rows}
    assert out.schema.field("quality_bucket").type == pa.int8() and out.schema.field("ft_bucket").type == pa.int8()
    artifact = load_artifact(str(calibrated["stage_dir"] / ARTIFACT_FILE))
    want = reference_buckets(rows, {k: v.thresholds for k, v in artifact.classifiers.items()})
    labels = labels_of(want["quality"]).to_pylist()
    for i, r in enumerate(rows):
        got = by_id[r["id"]]
        for col, key in (("ft_bucket", "ft"), ("edu_bucket", "edu"), ("ppl_bucket", "ppl")):
            assert got[col] == (None if want[key][i] < 0 else int(want[key][i])), (r, col)
        assert got["quality_bucket"] == (None if want["quality"][i] < 0 else int(want["quality"][i]))
        assert got["quality_label"] == labels[i]
    unscored = [r for r in rows if r["ft"] is None and r["edu"] is None and r["ppl"] is None]
    assert unscored and all(by_id[r["id"]]["quality_label"] is None for r in unscored)
    # Equal scores always share a bucket: every tied 0.0 of ft has one bucket.
    assert len({by_id[r["id"]]["ft_bucket"] for r in rows if r["ft"] == 0.0}) == 1


def test_summary_and_report_show_histograms_and_label_shares(calibrated) -> None:
    rows = calibrated["rows"]
    summary = json.loads((calibrated["stage_dir"] / ENSEMBLE_SUMMARY).read_text())
    artifact = load_artifact(str(calibrated["stage_dir"] / ARTIFACT_FILE))
    want = reference_buckets(rows, {k: v.thresholds for k, v in artifact.classifiers.items()})
    weights = np.array([approx_tokens(r["text"]) for r in rows])
    scored = want["quality"] >= 0
    assert summary["documents"] == len(rows) and summary["total_weight"] == int(weights.sum())
    assert summary["quality_bucket"]["documents"] == np.bincount(want["quality"][scored], minlength=20).tolist()
    assert summary["classifiers"]["edu_score"]["buckets"]["documents"] == \
        np.bincount(want["edu"][want["edu"] >= 0], minlength=20).tolist()
    assert summary["unscored"]["documents"] == int((~scored).sum())
    for label, (lo, hi) in LABEL_BUCKETS.items():
        in_label = scored & (want["quality"] >= lo) & (want["quality"] <= hi)
        assert summary["labels"][label]["documents"] == int(in_label.sum())
        assert summary["labels"][label]["weight"] == int(weights[in_label].sum())
        assert summary["labels"][label]["weight_share"] == pytest.approx(weights[in_label].sum() / weights.sum())
    page = Path(write_report(str(calibrated["run_dir"]))).read_text()
    section = page[page.index("<h2>Quality buckets</h2>"):]
    for label, entry in summary["labels"].items():
        assert f"<td>{label}</td><td>{entry['buckets'][0]}-{entry['buckets'][1]}</td>" \
               f"<td>{entry['documents']:,}</td><td>{entry['document_share']:.1%}</td>" in section
    assert "ensemble: edu_score buckets (documents)" in section and "calibrated on this data" in section


def test_saved_thresholds_bucket_a_later_snapshot_without_calibrating(calibrated, dask_client, tmp_path) -> None:
    rows = make_rows(seed=2, n=500, shift=0.3)            # a "later snapshot": better scores
    dataset = write_shards(tmp_path / "in2", rows, shards=3)
    tokenizer = tmp_path / "tokenizer.json"
    word_level_tokenizer().save(str(tokenizer))
    saved = calibrated["tmp"] / "saved" / "thresholds.json"
    params = f"classifiers: {CLASSIFIERS}, thresholds_path: {saved}, tokenizer_path: {tokenizer}"
    result, run_dir = run_pipeline(tmp_path, dask_client, dataset, params, "reuse")
    assert result.ok, result.failures
    stage_dir = run_dir / "ensemble"
    assert sorted(p.name for p in (stage_dir / "_work").iterdir()) == ["buckets", "scores", "weigh"]
    artifact = load_artifact(str(saved))
    assert json.loads((stage_dir / ARTIFACT_FILE).read_text()) == json.loads(saved.read_text())
    want = reference_buckets(rows, {k: v.thresholds for k, v in artifact.classifiers.items()})
    by_id = {r["id"]: r for r in read_dataset(tmp_path / "out-reuse").to_pylist()}
    got = np.array([-1 if by_id[r["id"]]["quality_bucket"] is None else by_id[r["id"]]["quality_bucket"]
                    for r in rows])
    assert np.array_equal(got, want["quality"])
    assert [by_id[r["id"]]["ft_bucket"] for r in rows] == [None if b < 0 else int(b) for b in want["ft"]]
    summary = json.loads((stage_dir / ENSEMBLE_SUMMARY).read_text())
    assert summary["thresholds"]["source"] == "loaded" and summary["thresholds"]["search_rounds"] == 0
    # The summary weighs this snapshot with the given tokenizer (whitespace + punctuation pieces).
    assert summary["tokenizer"]["kind"] == "tokenizer.json"
    pieces = sum(len(re.findall(r"\w+|[^\w\s]+", r["text"] or "")) for r in rows)
    assert summary["total_weight"] == pieces
    # Better scores on the old scale: more of the later snapshot is labelled high than in the first.
    first = json.loads((calibrated["stage_dir"] / ENSEMBLE_SUMMARY).read_text())
    assert summary["labels"]["high"]["document_share"] > first["labels"]["high"]["document_share"]


def test_saved_thresholds_must_name_the_same_columns(calibrated, dask_client, tmp_path) -> None:
    saved = calibrated["tmp"] / "saved" / "thresholds.json"
    params = f"classifiers: [ft, {{column: edu, name: edu_score}}], thresholds_path: {saved}"
    result, run_dir = run_pipeline(tmp_path, dask_client, calibrated["dataset"], params, "mismatch")
    assert not result.ok
    message = " ".join(result.failures)
    assert str(saved) in message and "extra ['ppl']" in message
    assert not (run_dir / "ensemble" / "_work").exists()       # failed before any phase ran


def test_rerun_skips_every_phase_and_resumes_a_killed_run(calibrated, dask_client) -> None:
    stage_dir, out = calibrated["stage_dir"], calibrated["out"]
    markers = sorted((stage_dir / "_work").glob("*/_done/*.json"))
    assert {m.parent.parent.name for m in markers} >= {"weigh", "refine-1", "refine-2", "buckets"}
    stamps = {m: m.stat().st_mtime_ns for m in markers}
    artifact_before = (stage_dir / ARTIFACT_FILE).read_text()
    shard_before = (stage_dir / "part-00002.parquet").read_bytes()
    want = json.dumps(read_dataset(out).to_pylist())       # NaN scores: Table.equals would say False
    result, _ = run_pipeline(calibrated["tmp"], dask_client, calibrated["dataset"], calibrated["params"], "cal")
    assert result.ok, result.failures
    assert {m: m.stat().st_mtime_ns for m in markers} == stamps
    # Killed after the search's first round: later rounds, the histograms and one output shard are redone.
    redo = [m for m in markers if m.parent.parent.name not in ("weigh", "refine-1")]
    for m in redo + [stage_dir / "_stats" / "part-00002.json", stage_dir / "part-00002.parquet",
                     stage_dir / "_manifest.json"]:
        m.unlink()
    result, _ = run_pipeline(calibrated["tmp"], dask_client, calibrated["dataset"], calibrated["params"], "cal")
    assert result.ok, result.failures
    kept = {m: t for m, t in stamps.items() if m not in redo}
    assert {m: m.stat().st_mtime_ns for m in kept} == kept
    assert all(m.exists() for m in redo)
    assert (stage_dir / "part-00002.parquet").read_bytes() == shard_before
    assert json.dumps(read_dataset(out).to_pylist()) == want
    assert (stage_dir / ARTIFACT_FILE).read_text() == artifact_before    # same calibration, same file


# -- without a cluster -------------------------------------------------------------------------


def word_level_tokenizer() -> Tokenizer:
    """A real ``tokenizers`` tokenizer built offline: whitespace/punctuation pieces, truncated at 4."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_truncation(4)
    return tokenizer


def test_document_weights(tmp_path: Path) -> None:
    batch = pa.table({"text": ["Hello, world! It's 3.14 café", "", None, "naïve\u00a0text —ok"]})
    assert document_weights(batch, "tokens", "text").tolist() == [11, 0, 0, 4]
    assert document_weights(batch, "bytes", "text").tolist() == [29, 0, 0, 18]
    assert document_weights(batch, "documents", "text").tolist() == [1, 1, 1, 1]
    path = tmp_path / "tokenizer.json"
    word_level_tokenizer().save(str(path))
    tokenizer = load_tokenizer(str(path))          # truncation (at 4 here) is turned off for counting
    assert document_weights(batch, "tokens", "text", tokenizer).tolist() == [11, 0, 0, 4]
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        load_tokenizer(str(tmp_path / "missing.json"))


def small_artifact() -> ThresholdArtifact:
    """Thresholds 0, 1, ..., 18 for column ``a``; -0, -1, ..., -18 for ``b`` (lower is better)."""
    thresholds = [float(t) for t in range(19)]
    return ThresholdArtifact.model_validate({
        "format": "curator.quality_thresholds", "version": 1, "created": "2026-01-01T00:00:00+00:00",
        "weight": "documents", "percentiles": list(range(5, 100, 5)),
        "classifiers": {"a": {"column": "a", "thresholds": thresholds, "documents": 1, "null_scores": 0,
                              "total_weight": 1},
                        "b": {"column": "b", "invert": True, "thresholds": [-t for t in thresholds],
                              "documents": 1, "null_scores": 0, "total_weight": 1}}})


def test_quality_columns_keep_nulls_and_replace_old_columns() -> None:
    stage = QualityEnsemble(classifiers=["a", {"column": "b", "invert": True}], weight="documents")
    artifact = small_artifact()
    batch = pa.table({"a": [18.0, None, 3.0, None], "b": [-2.5, -19.0, None, float("nan")],
                      "quality_bucket": pa.array([7, 7, 7, 7], pa.int8())})
    out = add_quality_columns(batch, stage.classifiers, artifact)
    assert out.column("a_bucket").to_pylist() == [19, None, 4, None]
    assert out.column("b_bucket").to_pylist() == [3, 19, None, None]       # -2.5 >= thresholds 0, -1, -2
    assert out.column("quality_bucket").to_pylist() == [19, 19, 4, None]
    assert out.column("quality_label").to_pylist() == ["high", "high", "low", None]
    assert out.column_names == ["a", "b", "quality_bucket", "a_bucket", "b_bucket", "quality_label"]


def test_saved_thresholds_match_by_column_and_direction() -> None:
    artifact = small_artifact()
    renamed = QualityEnsemble(classifiers=[{"column": "a", "name": "fasttext"}, {"column": "b", "invert": True}])
    renamed.check_artifact(artifact, "t.json")             # display names may differ
    with pytest.raises(ValueError, match=r"t.json: column 'b' is saved with invert: True"):
        QualityEnsemble(classifiers=["a", "b"]).check_artifact(artifact, "t.json")
    with pytest.raises(ValueError, match=r"t.json calibrates columns \['a', 'b'\].*missing \['c'\]"):
        QualityEnsemble(classifiers=["a", {"column": "b", "invert": True}, "c"]).check_artifact(artifact, "t.json")
    with pytest.raises(ValueError, match="non-decreasing"):
        ThresholdArtifact.model_validate({**small_artifact().model_dump(), "classifiers": {
            "a": {"column": "a", "thresholds": [1.0, 0.0] + [2.0] * 17, "documents": 1, "null_scores": 0,
                  "total_weight": 1}}})


def test_artifact_validation_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "curator.quality_thresholds", "version": 2}))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: unknown quality thresholds version 2"):
        load_artifact(str(path))
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a quality thresholds file"):
        load_artifact(str(path))
    path.write_text(json.dumps({"format": "curator.quality_thresholds", "version": 1, "created": "x",
                                "weight": "tokens", "percentiles": [5, 10], "classifiers": {}}))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: invalid quality thresholds file"):
        load_artifact(str(path))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_artifact(str(tmp_path / "missing.json"))


def test_parameters_are_validated(tmp_path: Path) -> None:
    stage = QualityEnsemble(classifiers=["ft", {"column": "edu", "name": "edu_score"}])
    assert stage.classifiers[0] == ClassifierScore(column="ft")
    assert stage.required_columns() == ("ft", "edu", "text")
    assert stage.output_columns(["id", "text", "ft", "edu"])[-4:] == \
        ["ft_bucket", "edu_bucket", "quality_bucket", "quality_label"]
    with pytest.raises(ValueError, match="each column must appear once"):
        QualityEnsemble(classifiers=["ft", {"column": "ft", "name": "again"}])
    with pytest.raises(ValueError, match="would overwrite an input column"):
        QualityEnsemble(classifiers=["ft", "ft_bucket"])
    with pytest.raises(ValueError):
        QualityEnsemble(classifiers=[])
    with pytest.raises(TypeError, match="score column 'x' has type string"):
        oriented_scores(pa.array(["0.5"]), False, "x")
    dataset = write_shards(tmp_path / "in", make_rows(seed=3, n=10), shards=1)
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: ens
imports: [classifiers.ensemble]
inputs: {{docs: {{dataset: {dataset}}}}}
stages:
  - {{id: ensemble, uses: classify.ensemble, from: docs, with: {{classifiers: [ft, missing_score]}}}}
""")
    with pytest.raises(PipelineError, match="missing_score"):
        load_pipeline(str(path), [])
