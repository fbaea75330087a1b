"""Large-Star / Small-Star connected components against a union-find reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from stages.connected_components import connected_components, write_edges_both_ways


class InProcessRun:
    """Runs phases one item at a time in this process (the GlobalRun interface the rounds use).

    The real Dask GlobalRun is exercised by tests/test_fuzzy_dedup.py; here many random graphs
    run quickly.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = str(work_dir)
        self.phases: list[str] = []

    def map(self, phase: str, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> list[Any]:
        self.phases.append(phase)
        return [fn(item, *args) for item in items]


def _reference(n: int, u: np.ndarray, v: np.ndarray) -> dict[int, int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    touched = set(u.tolist()) | set(v.tolist())
    return {x: find(x) for x in touched}


def _components(tmp_path: Path, u: np.ndarray, v: np.ndarray, parts: int) -> tuple[dict[int, int], InProcessRun]:
    run = InProcessRun(tmp_path / "work")
    paths, indexes = [], []
    # Edges arrive from several files, as they do from the candidate phase.
    for i, (cu, cv) in enumerate(zip(np.array_split(u, 3), np.array_split(v, 3))):
        path = str(tmp_path / "in" / f"part-{i}.parquet")
        indexes.append(write_edges_both_ways(path, cu.astype(np.uint64), cv.astype(np.uint64), parts))
        paths.append(path)
    final, final_index, rounds = connected_components(run, paths, indexes, parts)  # type: ignore[arg-type]
    labels: dict[int, int] = {}
    for path, index in zip(final, final_index):
        pf = pq.ParquetFile(path)
        for q, group in enumerate(index):
            if group < 0:
                continue
            table = pf.read_row_group(group)
            for node, label in zip(table.column("u").to_pylist(), table.column("v").to_pylist()):
                assert node not in labels, f"node {node} appears twice in the final stars"
                assert label < node
                labels[node] = label
                labels.setdefault(label, label)
    for label in set(labels.values()):
        labels[label] = label
    return labels, run


@pytest.mark.parametrize("seed,nodes,edges,parts", [(0, 200, 150, 4), (1, 1000, 900, 7), (2, 50, 400, 3),
                                                    (3, 5000, 2000, 16)])
def test_random_graphs_match_union_find(tmp_path: Path, seed: int, nodes: int, edges: int, parts: int) -> None:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nodes, edges)
    v = rng.integers(0, nodes, edges)
    keep = u != v
    labels, _ = _components(tmp_path, u[keep], v[keep], parts)
    assert labels == _reference(nodes, u[keep], v[keep])


def test_long_path_needs_several_rounds_and_settles(tmp_path: Path) -> None:
    # A path visited in a shuffled order is the slow case for label propagation.
    rng = np.random.default_rng(5)
    order = rng.permutation(3000)
    u, v = order[:-1], order[1:]
    labels, run = _components(tmp_path, u, v, 5)
    assert set(labels.values()) == {0} and len(labels) == 3000
    assert sum(p.startswith("cc-large") for p in run.phases) > 2


def test_large_node_ids_and_duplicate_edges(tmp_path: Path) -> None:
    base = np.uint64(7) << np.uint64(32)
    u = np.array([base + 5, base + 5, base + 9, 3, 3], dtype=np.uint64)
    v = np.array([base + 1, base + 1, base + 5, 4, 4], dtype=np.uint64)
    labels, run = _components(tmp_path, u, v, 2)
    assert labels == {int(base) + 1: int(base) + 1, int(base) + 5: int(base) + 1, int(base) + 9: int(base) + 1,
                      3: 3, 4: 3}


def test_no_edges(tmp_path: Path) -> None:
    labels, run = _components(tmp_path, np.zeros(0, np.uint64), np.zeros(0, np.uint64), 3)
    assert labels == {} and run.phases == ["cc-large-000"]
