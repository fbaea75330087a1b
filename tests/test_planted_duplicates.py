"""benchmarks/planted_duplicates.py: deterministic, the cluster sizes asked for, true Jaccards right."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.minhash import MinHashSignatures
from tests.conftest import load_script

gen = load_script("benchmarks/planted_duplicates.py")

CFG = gen.PlantedConfig(docs=3000, seed=7, shard_rows=700, planted_fraction=0.3, min_size=2, max_size=6)


def _jaccard_of_strings(a: str, b: str) -> float:
    hasher = MinHashSignatures(num_perm=1)
    sa, sb = set(hasher.shingles(a)), set(hasher.shingles(b))
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("planted") / "set"
    gen.generate(out, CFG, workers=1)
    return out


def _texts(out: Path) -> dict[str, str]:
    table = pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").glob("part-*.parquet")))
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def test_deterministic_for_a_seed(planted: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    gen.generate(again, CFG, workers=1)
    shards = sorted(p.name for p in (planted / "data").glob("part-*.parquet"))
    assert shards == [f"part-{s:05d}.parquet" for s in range(5)]
    for name in shards + ["../truth/members.parquet", "../truth/pairs.parquet"]:
        assert pq.read_table(planted / "data" / name).equals(pq.read_table(again / "data" / name)), name
    # One shard computed alone equals the written one; another seed gives other texts.
    assert gen.shard_table(CFG, 3).equals(pq.read_table(planted / "data" / "part-00003.parquet"))
    other = gen.shard_table(gen.PlantedConfig(**{**CFG.__dict__, "seed": 8}), 3)
    assert other.column("text").to_pylist() != gen.shard_table(CFG, 3).column("text").to_pylist()
    # A finished set is reused, not rewritten.
    before = (planted / "meta.json").stat().st_mtime_ns
    gen.generate(planted, CFG, workers=1)
    assert (planted / "meta.json").stat().st_mtime_ns == before


def test_cluster_sizes_and_layout(planted: Path) -> None:
    members, pairs = gen.read_truth(planted)
    texts = _texts(planted)
    assert len(texts) == CFG.docs
    sizes = Counter(members.column("cluster").to_pylist())
    assert set(sizes.values()) <= set(range(CFG.min_size, CFG.max_size + 1))
    assert len(set(sizes.values())) == CFG.max_size - CFG.min_size + 1  # every size occurs
    assert 0.25 * CFG.docs < members.num_rows <= 0.3 * CFG.docs
    assert pairs.num_rows == sum(s * (s - 1) // 2 for s in sizes.values())
    # Exactly one source (member 0) per cluster, and ids/nodes point at the right rows.
    assert Counter(members.column("member").to_pylist())[0] == len(sizes)
    for row in members.slice(0, 50).to_pylist():
        shard, r = row["node"] >> 32, row["node"] & 0xFFFFFFFF
        table = pq.read_table(planted / "data" / f"part-{shard:05d}.parquet")
        assert table.column("id")[r].as_py() == row["id"]
    # Documents are about 2 KB.
    lengths = np.array([len(t.encode()) for t in texts.values()])
    assert 1500 < lengths.mean() < 2500 and lengths.min() > 1000

    fixed = gen.PlantedConfig(docs=1000, shard_rows=1000, planted_fraction=0.5, min_size=4, max_size=4)
    plan = gen.Plan(fixed)
    assert set(plan.sizes.tolist()) == {4} and plan.sizes.sum() == 500


def test_recorded_jaccard_equals_shingle_sets(planted: Path) -> None:
    _, pairs = gen.read_truth(planted)
    texts = _texts(planted)
    jac = pairs.column("jaccard").to_numpy()
    with_source = pairs.column("member_a").to_numpy() == 0
    # Copies of the source span the target range (0.5..1.0), and a few are exact copies.
    assert jac[with_source].min() < 0.6 and jac[with_source].max() == 1.0
    assert np.median(jac[with_source]) == pytest.approx(0.75, abs=0.06)
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(with_source), 5, replace=False),
                            rng.choice(np.flatnonzero(~with_source), 3, replace=False)])
    for i in picks.tolist():
        a, b = pairs.column("a")[i].as_py(), pairs.column("b")[i].as_py()
        assert jac[i] == pytest.approx(_jaccard_of_strings(texts[a], texts[b]), abs=1e-12), (a, b)
    # Documents that are not planted are mutually dissimilar.
    members, _ = gen.read_truth(planted)
    planted_ids = set(members.column("id").to_pylist())
    free = [k for k in texts if k not in planted_ids]
    for k in range(5):
        assert _jaccard_of_strings(texts[free[2 * k]], texts[free[2 * k + 1]]) < 0.05
