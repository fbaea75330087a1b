"""The Dask runner on a real LocalCluster: outputs, stats, resume, bad records, failed shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from tests.conftest import TEST_STAGES, read_dataset, write_dataset


def _pipeline_file(tmp_path: Path, stages_yaml: str, dataset: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [{TEST_STAGES}]
run_dir: run
inputs:
  docs: {{dataset: {dataset}}}
stages:
{stages_yaml}
outputs:
  final: {{from: last, path: out}}
""")
    return path


def _run(path: Path, client, overrides: list[str] | None = None):
    pipeline = load_pipeline(str(path), overrides or [])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run(), pipeline


def _docs(n_shards: int, per_shard: int, dup_every: int = 0) -> list[list[dict]]:
    shards = []
    for s in range(n_shards):
        rows = []
        for r in range(per_shard):
            k = s * per_shard + r
            text = f"document number {k} with some words"
            if dup_every and k % dup_every == 0:
                text = "a shared boilerplate text that appears   many times"
            rows.append({"id": f"d{k:06d}", "text": text})
        shards.append(rows)
    return shards


def test_map_chain_and_global_stage(tmp_path: Path, dask_client) -> None:
    dataset = write_dataset(tmp_path / "in", _docs(6, 50, dup_every=7))
    path = _pipeline_file(tmp_path, """
  - {id: copy, uses: test.slow_copy, from: docs, with: {seconds: 0}}
  - {id: short, uses: test.drop_short, from: copy, with: {min_chars: 5}}
  - {id: last, uses: dedup.exact, from: short}
""", dataset)
    result, pipeline = _run(path, dask_client)
    assert result.ok, result.failures
    out = read_dataset(tmp_path / "out")
    n_dups = len([k for k in range(300) if k % 7 == 0])
    assert out.num_rows == 300 - (n_dups - 1)
    # The kept copy of the duplicated text is the one with the smallest id, with its count.
    shared = [r for r in out.to_pylist() if r["text"].startswith("a shared")]
    assert [(r["id"], r["exact_dup_count"]) for r in shared] == [("d000000", n_dups)]
    assert set(out.column("exact_dup_count").to_pylist()) == {1, n_dups}
    manifest = json.loads((tmp_path / "run" / "last" / "_manifest.json").read_text())
    assert manifest["totals"]["drops"] == {"exact_duplicate": n_dups - 1}
    assert manifest["totals"]["docs_in"] == 300
    assert len(manifest["shards"]) == 6
    # Ids are kept in shard order: the output is the input minus the drops, row for row.
    ids = [r["id"] for r in out.to_pylist()]
    assert ids == sorted(ids)


def test_rerun_skips_done_shards_and_config_change_redoes(tmp_path: Path, dask_client) -> None:
    dataset = write_dataset(tmp_path / "in", _docs(4, 20))
    path = _pipeline_file(tmp_path, """
  - {id: copy, uses: test.slow_copy, from: docs, with: {seconds: 0}}
  - {id: last, uses: test.drop_short, from: copy, with: {min_chars: 5}}
""", dataset)
    first, _ = _run(path, dask_client)
    assert first.ok
    stat_file = tmp_path / "run" / "last" / "_stats" / "part-00000.json"
    before = json.loads(stat_file.read_text())["finished_at"]
    second, _ = _run(path, dask_client)
    assert second.ok
    assert json.loads(stat_file.read_text())["finished_at"] == before  # nothing recomputed
    copy_before = json.loads((tmp_path / "run" / "copy" / "_stats" / "part-00000.json").read_text())["finished_at"]
    third, _ = _run(path, dask_client, ["stages.last.with.min_chars=30"])
    assert third.ok
    assert json.loads(stat_file.read_text())["finished_at"] != before  # changed stage redone
    copy_after = json.loads((tmp_path / "run" / "copy" / "_stats" / "part-00000.json").read_text())["finished_at"]
    assert copy_after == copy_before  # its upstream was not
    out = read_dataset(tmp_path / "out")
    assert all(len(t) >= 30 for t in out.column("text").to_pylist())


def test_bad_record_is_dropped_with_reason_not_the_shard(tmp_path: Path, dask_client) -> None:
    shards = _docs(3, 10)
    shards[1][4]["text"] = "this one is POISON for the stage"
    dataset = write_dataset(tmp_path / "in", shards)
    path = _pipeline_file(tmp_path, """
  - {id: last, uses: test.fail_on_text, from: docs, keep_rejected: true}
""", dataset)
    result, _ = _run(path, dask_client)
    assert result.ok, result.failures
    out = read_dataset(tmp_path / "out")
    assert out.num_rows == 29
    rejected = pq.read_table(tmp_path / "run" / "last" / "_rejected" / "part-00001.parquet")
    assert rejected.column("id").to_pylist() == ["d000014"]
    assert rejected.column("drop_reason").to_pylist() == ["error:ValueError"]
    manifest = json.loads((tmp_path / "run" / "last" / "_manifest.json").read_text())
    assert manifest["totals"]["drops"] == {"error:ValueError": 1}


def test_failed_shard_is_retried_reported_and_others_finish(tmp_path: Path, dask_client) -> None:
    dataset = write_dataset(tmp_path / "in", _docs(3, 10))
    (dataset / "part-00001.parquet").write_bytes(b"PAR1 this is not a parquet file")
    path = _pipeline_file(tmp_path, """
  - {id: copy, uses: test.slow_copy, from: docs, with: {seconds: 0}}
  - {id: last, uses: test.drop_short, from: copy}
""", dataset)
    result, _ = _run(path, dask_client)
    assert not result.ok
    assert len(result.failures) == 2
    assert result.failures[0].startswith("stage copy, shard part-00001 (input ")
    assert "part-00001.parquet" in result.failures[0]
    assert result.failures[1].startswith("stage last, shard part-00001: not run because stage copy, shard part-00001")
    # The other shards went all the way through.
    done = sorted(p.name for p in (tmp_path / "run" / "last").glob("part-*.parquet"))
    assert done == ["part-00000.parquet", "part-00002.parquet"]
    assert not (tmp_path / "out").exists()
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed"


def test_every_record_failing_fails_the_shard(tmp_path: Path, dask_client) -> None:
    shards = [[{"id": f"x{i}", "text": "POISON"} for i in range(3)]]
    dataset = write_dataset(tmp_path / "in", shards)
    path = _pipeline_file(tmp_path, "  - {id: last, uses: test.fail_on_text, from: docs}\n", dataset)
    result, _ = _run(path, dask_client)
    assert not result.ok
    assert "ValueError: bad record" in result.failures[0]


@pytest.mark.parametrize("n_shards", [1, 5])
def test_exact_dedup_keeps_smallest_id_across_shards(tmp_path: Path, dask_client, n_shards: int) -> None:
    rows = [
        {"id": "b", "text": "same text"},
        {"id": "a", "text": "  same   text "},   # equal after whitespace normalisation; smallest id
        {"id": "c", "text": "other"},
        {"id": "d", "text": "Same text"},         # differs in case: kept under 'whitespace'
        {"id": "e", "text": "other"},
    ]
    shards = [rows[i::n_shards] for i in range(n_shards)]
    dataset = write_dataset(tmp_path / "in", shards)
    path = _pipeline_file(tmp_path, "  - {id: last, uses: dedup.exact, from: docs, keep_rejected: true}\n", dataset)
    result, _ = _run(path, dask_client)
    assert result.ok, result.failures
    out = {r["id"]: r["exact_dup_count"] for r in read_dataset(tmp_path / "out").to_pylist()}
    assert out == {"a": 2, "c": 2, "d": 1}
    rejected = read_dataset(tmp_path / "run" / "last" / "_rejected")
    assert sorted(rejected.column("id").to_pylist()) == ["b", "e"]
    assert set(rejected.column("drop_reason").to_pylist()) == {"exact_duplicate"}


def test_temp_files_left_by_a_killed_run_are_removed_at_any_depth(tmp_path: Path) -> None:
    from curator.storage import remove_temp_files

    deep = tmp_path / "stage" / "_work" / "hash" / "_done"
    deep.mkdir(parents=True)
    (deep / ".tmp-abc-item-00002.json").write_text("{}")
    (tmp_path / "stage" / ".tmp-def-part-00000.parquet").write_text("x")
    (deep / "item-00001.json").write_text("{}")
    assert remove_temp_files(str(tmp_path / "stage")) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["item-00001.json"]
