"""dedup.fuzzy end to end on a real LocalCluster: planted near-duplicate clusters collapse to one
document each, with cluster ids and sizes; survivors, verification, resume, parameters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.pipeline import PipelineError, load_pipeline
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from stages.fuzzy_dedup import FuzzyDedup
from stages.minhash import MinHashSignatures
from tests.conftest import read_dataset

VOCAB_SEED = 11


def _vocab() -> list[str]:
    rng = random.Random(VOCAB_SEED)
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]


def _planted(seed: int, clusters: int, singles: int, edit_rate: float) -> tuple[list[dict], dict[str, list[str]]]:
    """Documents of 300 random words; clusters of 2-5 copies with a few words replaced."""
    rng = random.Random(seed)
    vocab = _vocab()
    rows, members = [], {}
    for c in range(clusters):
        base = [rng.choice(vocab) for _ in range(300)]
        ids = []
        for j in range(rng.randint(2, 5)):
            words = [w if j == 0 or rng.random() >= edit_rate else rng.choice(vocab) for w in base]
            ids.append(f"c{c:03d}-{j}")
            rows.append({"id": ids[-1], "text": " ".join(words), "score": float(rng.random())})
        members[f"c{c:03d}"] = ids
    for i in range(singles):
        rows.append({"id": f"u{i:04d}", "text": " ".join(rng.choice(vocab) for _ in range(300)),
                     "score": float(rng.random())})
    rows += [{"id": "e0", "text": "", "score": 0.0}, {"id": "e1", "text": None, "score": 0.0}]
    rng.shuffle(rows)
    return rows, members


def _write(directory: Path, rows: list[dict], shards: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("score", pa.float64())])
    for s in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[s::shards], schema=schema), directory / f"part-{s:05d}.parquet")
    return directory


def _run(tmp_path: Path, client, dataset: Path, params: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: t
run_dir: run-{name}
inputs:
  docs: {{dataset: {dataset}}}
stages:
  - {{id: fuzzy, uses: dedup.fuzzy, from: docs, keep_rejected: true, with: {{{params}}}}}
outputs:
  final: {{from: fuzzy, path: out-{name}}}
""")
    result = PipelineRunner(load_pipeline(str(path), []), client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures
    return tmp_path / f"run-{name}"


def test_planted_clusters_collapse_to_smallest_id(tmp_path: Path, dask_client) -> None:
    rows, members = _planted(seed=1, clusters=40, singles=300, edit_rate=0.004)
    dataset = _write(tmp_path / "in", rows, shards=4)
    run_dir = _run(tmp_path, dask_client, dataset, "partitions: 3")
    out = read_dataset(tmp_path / "out-p").to_pylist()
    kept = {r["id"]: r for r in out}
    for cluster, ids in members.items():
        assert [i for i in ids if i in kept] == [ids[0]], f"cluster {cluster}: kept {[i for i in ids if i in kept]}"
        assert kept[ids[0]]["cluster_size"] == len(ids) and kept[ids[0]]["cluster_id"] == ids[0]
    singles = [r for r in out if r["id"][0] in "ue"]
    assert len(singles) == 302 and all(r["cluster_size"] == 1 and r["cluster_id"] == r["id"] for r in singles)
    # The dropped copies are kept aside with their reason and their cluster.
    rejected = pq.read_table(run_dir / "fuzzy" / "_rejected").to_pylist()
    n_dups = sum(len(ids) - 1 for ids in members.values())
    assert len(rejected) == n_dups
    assert all(r["drop_reason"] == "fuzzy_duplicate" and r["cluster_id"] == r["id"].split("-")[0] + "-0"
               for r in rejected)
    summary = json.loads((run_dir / "fuzzy" / "_fuzzy_dedup.json").read_text())
    assert summary["documents"] == len(rows) and summary["documents_without_shingles"] == 2
    assert summary["clusters"] == 40 and summary["duplicates_removed"] == n_dups
    assert summary["bands"] == 20 and summary["rows"] == 13 and summary["num_perm"] == 260
    manifest = json.loads((run_dir / "fuzzy" / "_manifest.json").read_text())
    assert manifest["totals"]["drops"] == {"fuzzy_duplicate": n_dups}
    # The output keeps the input's order within each shard.
    first = pq.read_table(tmp_path / "out-p" / "part-00000.parquet").column("id").to_pylist()
    assert first == [r["id"] for r in rows[0::4] if r["id"] in kept]


def test_score_column_picks_survivor_and_rerun_is_a_no_op(tmp_path: Path, dask_client) -> None:
    rows, members = _planted(seed=2, clusters=15, singles=60, edit_rate=0.003)
    dataset = _write(tmp_path / "in", rows, shards=3)
    run_dir = _run(tmp_path, dask_client, dataset, "score_column: score", name="s")
    score = {r["id"]: r["score"] for r in rows}
    kept = {r["id"] for r in read_dataset(tmp_path / "out-s").to_pylist()}
    for ids in members.values():
        assert [i for i in ids if i in kept] == [max(ids, key=lambda i: (score[i], [-ord(c) for c in i]))]
    markers = sorted((run_dir / "fuzzy" / "_work").glob("*/_done/*.json"))
    assert {m.parent.parent.name for m in markers} >= {"signatures", "candidates", "labels", "members", "survivors"}
    stamps = {m: m.stat().st_mtime_ns for m in markers}
    before = (tmp_path / "out-s" / "part-00000.parquet").read_bytes()
    _run(tmp_path, dask_client, dataset, "score_column: score", name="s")
    assert {m: m.stat().st_mtime_ns for m in markers} == stamps  # no phase ran again
    assert (tmp_path / "out-s" / "part-00000.parquet").read_bytes() == before
    # A run killed mid-stage: later phases' markers and one output shard missing. The rerun
    # redoes only those and writes the same output.
    want = read_dataset(tmp_path / "out-s")
    stage_dir = run_dir / "fuzzy"
    redo = [m for m in markers if m.parent.parent.name in ("labels", "members", "survivors")]
    for m in redo + [stage_dir / "_stats" / "part-00001.json", stage_dir / "part-00001.parquet",
                     stage_dir / "_manifest.json"]:
        m.unlink()
    _run(tmp_path, dask_client, dataset, "score_column: score", name="s")
    kept_stamps = {m: t for m, t in stamps.items() if m not in redo}
    assert {m: m.stat().st_mtime_ns for m in kept_stamps} == kept_stamps
    assert all(m.exists() for m in redo)
    assert read_dataset(tmp_path / "out-s").equals(want)


def test_verification_rejects_candidates_below_threshold(tmp_path: Path, dask_client) -> None:
    """With a loose banding (80 x 3), pairs of Jaccard 0.3-0.8 become candidates (p > 0.9);
    verification at 0.8 removes them while keeping the close copies."""
    rng = random.Random(3)
    vocab = _vocab()
    rows = []
    for c in range(12):
        base = [rng.choice(vocab) for _ in range(300)]
        close = [w if rng.random() >= 0.003 else rng.choice(vocab) for w in base]
        far = [w if rng.random() >= 0.05 else rng.choice(vocab) for w in base]
        rows += [{"id": f"c{c:02d}-a", "text": " ".join(base)}, {"id": f"c{c:02d}-b", "text": " ".join(close)},
                 {"id": f"c{c:02d}-c", "text": " ".join(far)}]
    hasher = MinHashSignatures()
    jac = []
    for c in range(12):
        a, far = (set(hasher.shingles(rows[3 * c + k]["text"])) for k in (0, 2))
        jac.append(len(a & far) / len(a | far))
    assert max(jac) < 0.8 and min(jac) > 0.3
    for r in rows:
        r["score"] = 0.0
    dataset = _write(tmp_path / "in", rows, shards=2)
    loose = "bands: 80, rows: 3"
    _run(tmp_path, dask_client, dataset, loose, name="loose")
    run_dir = _run(tmp_path, dask_client, dataset, loose + ", verify: true, verify_threshold: 0.8", name="verified")
    unverified = {r["id"] for r in read_dataset(tmp_path / "out-loose").to_pylist()}
    verified = {r["id"] for r in read_dataset(tmp_path / "out-verified").to_pylist()}
    assert unverified == {f"c{c:02d}-a" for c in range(12)}
    assert verified == {f"c{c:02d}-{k}" for c in range(12) for k in "ac"}
    checked = pq.read_table(run_dir / "fuzzy" / "_work" / "verified").to_pylist()
    assert len(checked) >= 24 and all((r["jaccard"] >= 0.8) == (r["jaccard"] > 0.85) for r in checked)
    summary = json.loads((run_dir / "fuzzy" / "_fuzzy_dedup.json").read_text())
    assert summary["verified_pairs"] == 12


def test_bands_from_threshold_and_invalid_parameters() -> None:
    stage = FuzzyDedup(bands=None, rows=None, threshold=0.7)
    assert (stage.bands, stage.rows) == (17, 12) or stage.bands * stage.rows <= 260
    with pytest.raises(ValueError, match="both bands and rows"):
        FuzzyDedup(bands=10, rows=None)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        FuzzyDedup(bands=30, rows=13)


def test_pipeline_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("""
name: t
inputs:
  docs: {dataset: in}
stages:
  - id: fuzzy
    uses: dedup.fuzzy
    from: docs
    with:
      shingle: letters
outputs:
  final: {from: fuzzy}
""")
    (tmp_path / "in").mkdir()
    with pytest.raises(PipelineError) as err:
        load_pipeline(str(path), [])
    assert "bad.yaml:10: stages.0.with.shingle" in str(err.value)


def test_verification_checks_all_pairs_of_small_buckets() -> None:
    """Near-duplicates B and C can both be far from their bucket's first document A: without
    verification a star around A is enough (components are transitive), with it B-C must be
    checked itself."""
    from stages.fuzzy_dedup import _bucket_pairs

    key = np.array([5, 5, 5, 9, 9], np.uint64)
    node = np.array([30, 10, 20, 7, 7], np.uint64)
    star = _bucket_pairs(key, node)
    assert list(zip(*(x.tolist() for x in star))) == [(10, 20), (10, 30)]
    every = _bucket_pairs(key, node, all_pairs_up_to=32, anchors=2)
    assert list(zip(*(x.tolist() for x in every))) == [(10, 20), (10, 30), (20, 30)]
    # A bucket larger than the limit: every node against the first two.
    big = _bucket_pairs(np.zeros(40, np.uint64), np.arange(40, dtype=np.uint64), all_pairs_up_to=32, anchors=2)
    assert len(big[0]) == 39 + 38 and set(big[0].tolist()) == {0, 1}
