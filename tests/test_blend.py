"""pipelines/blend.yaml on a real cluster: token counts, the plan, Megatron blend files, materialised phases."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from stages.blend import choose_rows
from tests.conftest import REPO, read_dataset

WORDS = ("river light keeper storm harbour lamp signal coast stone tower bread flour water salt oven crust "
         "budget council vote road school trail ridge granite summit prime number proof triangle square").split()


def _docs(prefix: str, n: int, rng: random.Random, **columns: list) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"id": f"{prefix}-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 300)))}
        row.update({k: v[i % len(v)] for k, v in columns.items()})
        rows.append(row)
    return rows


def _write(directory: Path, shards: list[list[dict]]) -> Path:
    directory.mkdir(parents=True)
    for i, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(rows), directory / f"part-{i:05d}.parquet")
    return directory


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blend_inputs")
    rng = random.Random(7)
    labels = ["high", "medium_high", "medium", "medium", "low"]
    crawl = _docs("c", 400, rng, quality_label=labels)
    synthetic = _docs("s", 200, rng, task=["diverse_qa", "distill", "knowledge_list"])
    math = _docs("m", 60, rng)
    return {"crawl": _write(root / "crawl", [crawl[:250], crawl[250:]]),
            "synthetic": _write(root / "synthetic", [synthetic]),
            "math": _write(root / "math", [math[:30], math[30:]])}


def _run(run_dir: Path, client, datasets: dict[str, Path], gguf_model: Path, *extra: str):
    overrides = [f"inputs.{name}.dataset={path}" for name, path in datasets.items()]
    overrides += [f"stages.{s}.with.tokenizer_path={gguf_model}" for s in ("crawl_tokens", "synthetic_tokens",
                                                                           "math_tokens")]
    pipeline = load_pipeline(str(REPO / "pipelines" / "blend.yaml"), run_dir=str(run_dir),
                             overrides=[*overrides, "stages.blend.with.budget_tokens=200000",
                                        "stages.blend.with.shard_tokens=30000", *extra])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()


def test_blend_plan_files_and_materialised_phases(tmp_path: Path, dask_client, datasets: dict[str, Path],
                                                  gguf_model: Path) -> None:
    result = _run(tmp_path / "run", dask_client, datasets, gguf_model)
    assert result.ok, result.failures
    stage_dir = tmp_path / "run" / "blend"
    manifest = json.loads((stage_dir / "_blend.json").read_text())
    counts = json.loads((tmp_path / "run" / "crawl_tokens" / "_token_counts.json").read_text())
    # Supplies are the token counts of the rows each condition selects.
    crawl = read_dataset(tmp_path / "run" / "crawl_tokens").to_pylist()
    high = sum(r["tokens"] for r in crawl if r["quality_label"] == "high")
    assert manifest["sources"]["crawl_high"]["tokens"] == high
    assert counts["tokens"] == sum(r["tokens"] for r in crawl)
    # The plan: phases add up to the budget, weights to 1, no source over its cap.
    assert sum(p["tokens"] for p in manifest["phases"]) == 200000
    assert [p["tokens"] for p in manifest["phases"]] == [120000, 80000]
    for phase in manifest["phases"]:
        assert sum(v["tokens"] for v in phase["sources"].values()) == phase["tokens"]
        assert abs(sum(v["weight"] for v in phase["sources"].values()) - 1) < 1e-6
    for name, source in manifest["sources"].items():
        assert source["epochs"] <= source["max_epochs"] + 1e-9, name
    assert "crawl_medium_high" not in manifest["phases"][1]["sources"]
    # Megatron's --data-path: weight prefix pairs, the weights of the manifest.
    pairs = (stage_dir / "phase2.blend.txt").read_text().split()
    weights = dict(zip(pairs[1::2], map(float, pairs[0::2])))
    assert {Path(p).name for p in weights} == {f"{n}_text_document" for n, v in
                                               manifest["phases"][1]["sources"].items() if v["tokens"]}
    # Materialised shards: per source within 0.5% of the plan, shuffled across sources, sized by tokens.
    for phase in manifest["phases"]:
        table = read_dataset(stage_dir / "phases" / phase["name"])
        by_source: dict[str, int] = {}
        for source, tokens in zip(table.column("blend_source").to_pylist(), table.column("tokens").to_pylist()):
            by_source[source] = by_source.get(source, 0) + tokens
        for name, planned in phase["sources"].items():
            if planned["tokens"]:
                assert abs(by_source[name] - planned["tokens"]) <= 0.005 * planned["tokens"], (phase["name"], name)
                assert planned["materialized_tokens"] == by_source[name]
        parts = sorted((stage_dir / "phases" / phase["name"]).glob("part-*.parquet"))
        assert len(parts) == round(phase["tokens"] / 30000)
        first = read_dataset(stage_dir / "phases" / phase["name"]).column("blend_source").to_pylist()[:50]
        assert len(set(first)) > 1  # sources interleaved, not one after the other
    plan_rows = read_dataset(tmp_path / "run" / "outputs" / "blend_plan").to_pylist()
    assert {(r["phase"], r["source"]) for r in plan_rows} == {
        (p["name"], s) for p in manifest["phases"] for s in p["sources"]}
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    assert "<td>blend</td>" in page


def test_same_seed_same_shards_other_seed_other_order(tmp_path: Path, dask_client, datasets: dict[str, Path],
                                                       gguf_model: Path) -> None:
    def ids(run: str, *extra: str) -> list[str]:
        result = _run(tmp_path / run, dask_client, datasets, gguf_model, *extra)
        assert result.ok, result.failures
        return read_dataset(tmp_path / run / "blend" / "phases" / "phase1").column("id").to_pylist()

    first = ids("a")
    assert ids("b") == first
    assert ids("c", "stages.blend.with.seed=1") != first


def test_infeasible_budget_names_the_phase_and_the_sources(tmp_path: Path, dask_client, datasets: dict[str, Path],
                                                           gguf_model: Path) -> None:
    result = _run(tmp_path / "run", dask_client, datasets, gguf_model, "stages.blend.with.budget_tokens=50000000")
    assert not result.ok
    message = str(result.failures)
    assert "phase1" in message and "short by" in message and "crawl_high" in message


def test_choose_rows_whole_epochs_then_a_greedy_fill() -> None:
    sizes = np.array([100, 50, 30, 0, 20])
    chosen = choose_rows(sizes, 2 * 200 + 70, np.random.default_rng(0))
    assert sorted(i for i, e in chosen if e < 2) == sorted([0, 1, 2, 4] * 2)
    rest = sum(int(sizes[i]) for i, e in chosen if e == 2)
    assert 20 <= rest <= 90  # greedy: close, not exact, with few documents (many make it close: see above)
    assert choose_rows(sizes, 0, np.random.default_rng(0)) == []
    assert choose_rows(np.array([0, 0]), 10, np.random.default_rng(0)) == []
