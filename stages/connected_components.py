"""Connected components of an edge list too big for one machine: alternating Large-Star and
Small-Star rounds (Kiveris et al., "Connected Components in MapReduce and Beyond", SoCC 2014).

Nodes are uint64. Each round is one Dask phase over ``num_parts`` partitions of edges, and every
partition task reads its edges from the partitioned files of the previous phase (see
:mod:`curator.partitioned`), so no step holds more than one partition in memory.

- Large-Star, at node ``u`` with all its neighbours: ``m`` = the smallest of ``u`` and its
  neighbours; every neighbour ``v > u`` is linked to ``m`` instead.
- Small-Star, at node ``u`` with its smaller neighbours ``N``: ``m`` = the smallest of ``N``; ``u``
  and every node of ``N`` are linked to ``m``.

The number of rounds is O(log^2 n) in the worst case; candidate graphs of near-duplicates, made of
stars already, settle in a few. The loop stops when the graph is a forest of stars whose centres
are their components' smallest nodes: then every node but a centre has exactly one neighbour, the
centre, and the centre labels the component. Large-Star checks that while it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from curator.global_run import GlobalRun
from curator.partitioned import Source, partition_of, read_sources, sources_for, write_partitioned
from curator.storage import join

EDGE_SCHEMA = pa.schema([("u", pa.uint64()), ("v", pa.uint64())])


def _edges(u: np.ndarray, v: np.ndarray) -> pa.Table:
    return pa.table({"u": pa.array(u, pa.uint64()), "v": pa.array(v, pa.uint64())}, schema=EDGE_SCHEMA)


def write_edges_both_ways(path: str, u: np.ndarray, v: np.ndarray, num_parts: int) -> list[int]:
    """Write undirected edges routed for Large-Star: ``(u, v)`` to ``u``'s partition and ``(v, u)``
    to ``v``'s."""
    uu = np.concatenate([u, v]).astype(np.uint64)
    vv = np.concatenate([v, u]).astype(np.uint64)
    return write_partitioned(path, _edges(uu, vv), partition_of(uu, num_parts), num_parts, EDGE_SCHEMA)


def write_edges_larger_first(path: str, u: np.ndarray, v: np.ndarray, num_parts: int) -> list[int]:
    """Write undirected edges routed for Small-Star: ``(max, min)`` to the larger node's partition."""
    hi = np.maximum(u, v).astype(np.uint64)
    lo = np.minimum(u, v).astype(np.uint64)
    return write_partitioned(path, _edges(hi, lo), partition_of(hi, num_parts), num_parts, EDGE_SCHEMA)


def _unique_edges(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(u, v)`` rows, sorted by ``u`` then ``v``, without self-loops."""
    u = table.column("u").to_numpy()
    v = table.column("v").to_numpy()
    keep = u != v
    u, v = u[keep], v[keep]
    if not len(u):
        return u, v
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    distinct = np.ones(len(u), bool)
    distinct[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[distinct], v[distinct]


def _groups(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets of each run of equal values in sorted ``u``, and each row's run number."""
    new = np.ones(len(u), bool)
    new[1:] = u[1:] != u[:-1]
    starts = np.flatnonzero(new)
    return starts, np.cumsum(new) - 1


def large_star(item: tuple[int, list[Source]], out_dir: str, num_parts: int) -> dict[str, object]:
    """One Large-Star partition; returns the output file's index, its edge count and how many
    nodes still break the star-forest condition."""
    part, sources = item
    u, v = _unique_edges(read_sources(sources, EDGE_SCHEMA))
    path = join(out_dir, f"part-{part:05d}.parquet")
    if not len(u):
        return {"index": write_edges_larger_first(path, u, v, num_parts), "edges": 0, "unsettled": 0}
    starts, group = _groups(u)
    nodes = u[starts]
    smallest = np.minimum(nodes, np.minimum.reduceat(v, starts))
    degree = np.diff(np.append(starts, len(u)))
    unsettled = int(np.count_nonzero((smallest < nodes) & (degree > 1)))
    m = smallest[group]
    emit = v > u
    out_u, out_v = v[emit], m[emit]
    return {"index": write_edges_larger_first(path, out_u, out_v, num_parts), "edges": int(len(out_u)),
            "unsettled": unsettled}


def small_star(item: tuple[int, list[Source]], out_dir: str, num_parts: int) -> dict[str, object]:
    """One Small-Star partition (edges arrive as ``(larger, smaller)``)."""
    part, sources = item
    u, v = _unique_edges(read_sources(sources, EDGE_SCHEMA))
    path = join(out_dir, f"part-{part:05d}.parquet")
    if not len(u):
        return {"index": write_edges_both_ways(path, u, v, num_parts), "edges": 0}
    starts, group = _groups(u)
    nodes = u[starts]
    smallest = np.minimum(nodes, np.minimum.reduceat(v, starts))
    # Every smaller neighbour, and the node itself, linked to the smallest.
    m = smallest[group]
    linked = v != m
    out_u = np.concatenate([v[linked], nodes[smallest != nodes]])
    out_v = np.concatenate([m[linked], smallest[smallest != nodes]])
    return {"index": write_edges_both_ways(path, out_u, out_v, num_parts), "edges": int(len(out_u))}


def connected_components(ctx: GlobalRun, paths: Sequence[str], indexes: Sequence[Sequence[int]], num_parts: int,
                         max_rounds: int = 64, phase_prefix: str = "cc") -> tuple[list[str], list[list[int]], int]:
    """Run the rounds on edges written by :func:`write_edges_both_ways` (files ``paths`` with
    their ``indexes``). Returns the final files, their indexes and the number of rounds.

    In the final files each row is ``(node, label)`` with ``label`` the smallest node of the
    component, routed to ``node``'s partition; each node that is not a label appears exactly once.
    """
    paths, indexes = list(paths), [list(i) for i in indexes]
    for round_no in range(max_rounds):
        out_dir = join(ctx.work_dir, phase_prefix, f"large-{round_no:03d}")
        items = [(q, sources_for(paths, indexes, q)) for q in range(num_parts)]
        results = ctx.map(f"{phase_prefix}-large-{round_no:03d}", large_star, items, out_dir, num_parts)
        paths = [join(out_dir, f"part-{q:05d}.parquet") for q in range(num_parts)]
        indexes = [r["index"] for r in results]
        if sum(r["unsettled"] for r in results) == 0:
            return paths, indexes, round_no + 1
        out_dir = join(ctx.work_dir, phase_prefix, f"small-{round_no:03d}")
        items = [(q, sources_for(paths, indexes, q)) for q in range(num_parts)]
        results = ctx.map(f"{phase_prefix}-small-{round_no:03d}", small_star, items, out_dir, num_parts)
        paths = [join(out_dir, f"part-{q:05d}.parquet") for q in range(num_parts)]
        indexes = [r["index"] for r in results]
    raise RuntimeError(f"connected components did not settle in {max_rounds} rounds (raise max_cc_rounds)")
