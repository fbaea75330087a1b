"""Near-duplicate removal with MinHash LSH, out of core on any Dask cluster (``dedup.fuzzy``).

The Nemotron-CC recipe: 24-character shingles, 260 hashes in 20 bands of 13 rows (a Jaccard
threshold near 0.8), documents sharing a band joined into connected components, one kept per
component. Phases, each a set of resumable Dask tasks that pass data through partitioned Parquet
files in the stage's ``_work`` folder (see :mod:`curator.partitioned`):

1. ``signatures`` (per input shard): MinHash signatures (:mod:`stages.minhash`) and one 64-bit key
   per band, written partitioned by key. Documents are numbered ``node = shard << 32 | row``.
2. ``candidates`` (per key partition): documents with equal band keys are candidates; each is
   linked to the smallest node of its bucket (a star, not all pairs: components are transitive).
3. optional ``gather`` + ``verify``: candidate pairs (all pairs of a bucket of up to
   ``verify_all_pairs_up_to`` documents, else each document with the bucket's first two) are
   re-partitioned by pair, the texts of their documents shuffled to them, and a pair is kept only
   if the true Jaccard of its shingle sets reaches ``verify_threshold``.
4. ``cc-*``: connected components (:mod:`stages.connected_components`).
5. ``labels``, ``members``, ``survivors``: each component's documents meet in one task, which
   picks the survivor (highest ``score_column`` if named, then smallest ``id``) and the size.
6. output (per input shard): the shard with ``cluster_id`` (the survivor's id) and
   ``cluster_size`` (1 for a document with no near-duplicate); the others dropped as
   ``fuzzy_duplicate`` (kept in ``_rejected`` with their ``cluster_id`` under ``keep_rejected``).

A summary (documents, candidate pairs, components, rounds, cluster sizes) is written to
``_fuzzy_dedup.json`` in the stage folder.
"""

from __future__ import annotations

from typing import Any, Literal

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from curator.global_run import GlobalRun
from curator.partitioned import Source, mix64, partition_of, read_sources, sources_for, write_partitioned
from curator.plan import DEDUP_SUMMARY, ShardTask
from curator.stage import DROP_REASON, GlobalStage, ShardStats, split_counted
from curator.storage import filesystem, join, read_batches, write_json_atomic
from curator.tasks import write_shard
from stages.connected_components import EDGE_SCHEMA, connected_components, write_edges_both_ways
from stages.minhash import EMPTY, MinHashSignatures, band_keys, lsh_bands

ROW_BITS = np.uint64(32)
ROW_MASK = np.uint64((1 << 32) - 1)
BAND_SCHEMA = pa.schema([("key", pa.uint64()), ("node", pa.uint64())])
PAIR_SCHEMA = pa.schema([("a", pa.uint64()), ("b", pa.uint64())])
NEED_SCHEMA = pa.schema([("node", pa.uint64()), ("part", pa.int32())])
TEXT_SCHEMA = pa.schema([("node", pa.uint64()), ("part", pa.int32()), ("text", pa.string())])
VERIFIED_SCHEMA = pa.schema([("a", pa.uint64()), ("b", pa.uint64()), ("jaccard", pa.float32())])
LABEL_SCHEMA = pa.schema([("node", pa.uint64()), ("label", pa.uint64())])
MEMBER_SCHEMA = pa.schema([("label", pa.uint64()), ("node", pa.uint64()), ("id", pa.string()),
                           ("score", pa.float64())])
CLUSTER_SCHEMA = pa.schema([("row", pa.int64()), ("cluster_id", pa.string()), ("cluster_size", pa.int64()),
                            ("keep", pa.bool_())])
PARTITION_DOCS = 250_000
"""Default shuffle partition size: 250k documents are 5M band keys (80 MB) at 20 bands."""
VERIFY_ANCHORS = 2
"""With verification, nodes of a bucket too big for all pairs are checked against its first two."""


def _shard_of(nodes: np.ndarray) -> np.ndarray:
    return (nodes >> ROW_BITS).astype(np.int64)


def _signatures(item: tuple[int, str], stage: FuzzyDedup, work_dir: str, num_parts: int,
                batch_rows: int) -> dict[str, Any]:
    """Phase 1: band keys of one input shard, partitioned by key."""
    shard, path = item
    hasher = stage.hasher()
    keys, nodes = [], []
    docs = empty = 0
    for batch in read_batches(path, batch_rows, columns=[stage.column]):
        sig = hasher.compute(batch.column(stage.column))
        has_shingles = (sig != EMPTY).any(axis=1)
        rows = np.arange(docs, docs + batch.num_rows, dtype=np.uint64)
        docs += batch.num_rows
        empty += int(np.count_nonzero(~has_shingles))
        k = band_keys(sig[has_shingles], stage.bands, stage.rows)
        keys.append(k.reshape(-1))
        node = (np.uint64(shard) << ROW_BITS) | rows[has_shingles]
        nodes.append(np.repeat(node, stage.bands))
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    node = np.concatenate(nodes) if nodes else np.zeros(0, np.uint64)
    table = pa.table({"key": key, "node": node}, schema=BAND_SCHEMA)
    index = write_partitioned(join(work_dir, "bands", f"part-{shard:05d}.parquet"), table,
                              partition_of(key, num_parts), num_parts, BAND_SCHEMA)
    return {"index": index, "docs": docs, "empty": empty}


@nb.njit(cache=True)
def _bucket_links(key: np.ndarray, node: np.ndarray, all_pairs_up_to: int,
                  anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Links within each run of equal keys (``key``/``node`` sorted by key, then node).

    A bucket of at most ``all_pairs_up_to`` nodes gives all its pairs; a larger one links every
    node to each of its first ``anchors`` nodes.
    """
    n = key.shape[0]
    total = 0
    start = 0
    for i in range(1, n + 1):
        if i == n or key[i] != key[start]:
            size = i - start
            if size <= all_pairs_up_to:
                total += size * (size - 1) // 2
            else:
                total += anchors * size
            start = i
    a = np.empty(total, np.uint64)
    b = np.empty(total, np.uint64)
    pos = 0
    start = 0
    for i in range(1, n + 1):
        if i == n or key[i] != key[start]:
            size = i - start
            first = size if size <= all_pairs_up_to else min(anchors, size)
            for x in range(start, start + first):
                for y in range(x + 1, i):
                    if node[x] != node[y]:
                        a[pos] = node[x]
                        b[pos] = node[y]
                        pos += 1
            start = i
    return a[:pos], b[:pos]


def _bucket_pairs(key: np.ndarray, node: np.ndarray, all_pairs_up_to: int = 1,
                  anchors: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate pairs ``(a < b)`` of documents sharing a band key.

    By default each node is linked to its bucket's smallest node (a star: enough for the
    components, which are transitive anyway). Verification needs the pairs themselves, since a
    pair of near-duplicates can both fall short of their bucket's first document.
    """
    if not len(key):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    order = np.lexsort((node, key))
    a, b = _bucket_links(key[order], node[order], all_pairs_up_to, anchors)
    return _distinct_pairs(a, b)


def _candidates(item: tuple[int, list[Source]], work_dir: str, num_parts: int, num_shards: int,
                verify: bool, all_pairs_up_to: int) -> dict[str, Any]:
    """Phase 2: candidate pairs of one key partition (edges for the components, or pairs to verify).

    A pair that shares several bands can come from several key partitions; the components do not
    mind, and for verification the pairs are re-partitioned by pair so each is checked once.
    """
    part, sources = item
    table = read_sources(sources, BAND_SCHEMA)
    key, node = table.column("key").to_numpy(), table.column("node").to_numpy()
    a, b = _bucket_pairs(key, node, all_pairs_up_to, VERIFY_ANCHORS) if verify else _bucket_pairs(key, node)
    if not verify:
        index = write_edges_both_ways(join(work_dir, "edges", f"part-{part:05d}.parquet"), a, b, num_parts)
        return {"index": index, "links": int(len(a))}
    pair_part = partition_of(a ^ mix64(b), num_parts)
    pairs = pa.table({"a": a, "b": b}, schema=PAIR_SCHEMA)
    pair_index = write_partitioned(join(work_dir, "pairs", f"part-{part:05d}.parquet"), pairs, pair_part, num_parts)
    # The texts each pair partition needs, asked of the shards that hold them.
    node = np.concatenate([a, b])
    need_part = np.concatenate([pair_part, pair_part])
    if len(node):
        order = np.lexsort((need_part, node))
        node, need_part = node[order], need_part[order]
        distinct = np.ones(len(node), bool)
        distinct[1:] = (node[1:] != node[:-1]) | (need_part[1:] != need_part[:-1])
        node, need_part = node[distinct], need_part[distinct]
    needs = pa.table({"node": node, "part": need_part.astype(np.int32)}, schema=NEED_SCHEMA)
    need_index = write_partitioned(join(work_dir, "needs", f"part-{part:05d}.parquet"), needs,
                                   _shard_of(node), num_shards, NEED_SCHEMA)
    return {"index": need_index, "pair_index": pair_index, "links": int(len(a))}


def _gather(item: tuple[int, str, list[Source]], column: str, work_dir: str, num_parts: int,
            batch_rows: int) -> list[int]:
    """Phase 3a: the texts of one input shard's documents that are in candidate pairs, sent to the
    partitions of their pairs."""
    shard, path, sources = item
    needs = read_sources(sources, NEED_SCHEMA)
    rows = (needs.column("node").to_numpy() & ROW_MASK).astype(np.int64)
    order = np.argsort(rows, kind="stable")
    needs, rows = needs.take(order), rows[order]
    texts: list[pa.Array] = []
    offset = 0
    for batch in read_batches(path, batch_rows, columns=[column]):
        lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
        if hi > lo:
            texts.append(batch.column(column).take(pa.array(rows[lo:hi] - offset)).combine_chunks())
        offset += batch.num_rows
    text = pa.concat_arrays(texts).cast(pa.string()) if texts else pa.array([], pa.string())
    table = pa.table({"node": needs.column("node"), "part": needs.column("part"), "text": text}, schema=TEXT_SCHEMA)
    return write_partitioned(join(work_dir, "gathered", f"part-{shard:05d}.parquet"), table,
                             needs.column("part").to_numpy().astype(np.int64), num_parts, TEXT_SCHEMA)


@nb.njit(cache=True)
def _pair_jaccard(sets: np.ndarray, offsets: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard of sorted distinct hash sets ``left[i]`` and ``right[i]`` (indices into ``offsets``)."""
    out = np.empty(left.shape[0], np.float32)
    for p in range(left.shape[0]):
        i, i_end = offsets[left[p]], offsets[left[p] + 1]
        j, j_end = offsets[right[p]], offsets[right[p] + 1]
        n_a, n_b = i_end - i, j_end - j
        common = 0
        while i < i_end and j < j_end:
            if sets[i] == sets[j]:
                common += 1
                i += 1
                j += 1
            elif sets[i] < sets[j]:
                i += 1
            else:
                j += 1
        union = n_a + n_b - common
        out[p] = common / union if union else 1.0
    return out


@nb.njit(cache=True)
def _distinct_sorted(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty_like(hashes)
    new_offsets = np.zeros_like(offsets)
    pos = 0
    for d in range(offsets.shape[0] - 1):
        part = np.sort(hashes[offsets[d]:offsets[d + 1]])
        for k in range(part.shape[0]):
            if k == 0 or part[k] != part[k - 1]:
                out[pos] = part[k]
                pos += 1
        new_offsets[d + 1] = pos
    return out[:pos], new_offsets


def _verify(item: tuple[int, list[Source], list[Source]], stage: FuzzyDedup, work_dir: str,
            num_parts: int) -> dict[str, Any]:
    """Phase 3b: the pairs of one partition whose shingle sets' Jaccard reaches the threshold."""
    part, pair_sources, text_sources = item
    pairs = read_sources(pair_sources, PAIR_SCHEMA)
    a, b = _distinct_pairs(pairs.column("a").to_numpy(), pairs.column("b").to_numpy())
    texts = read_sources(text_sources, TEXT_SCHEMA)
    nodes = texts.column("node").to_numpy()
    nodes, first = np.unique(nodes, return_index=True)  # a text can arrive from several candidate tasks
    hashes, offsets = stage.hasher().shingle_hashes(texts.column("text").take(pa.array(first)))
    sets, offsets = _distinct_sorted(hashes, offsets)
    jac = _pair_jaccard(sets, offsets, np.searchsorted(nodes, a), np.searchsorted(nodes, b)) if len(a) \
        else np.zeros(0, np.float32)
    keep = jac >= stage.verify_threshold_value()
    write_partitioned(join(work_dir, "verified", f"part-{part:05d}.parquet"),
                      pa.table({"a": a, "b": b, "jaccard": jac}, schema=VERIFIED_SCHEMA),
                      np.zeros(len(a), np.int64), 1, VERIFIED_SCHEMA)
    index = write_edges_both_ways(join(work_dir, "edges", f"part-{part:05d}.parquet"), a[keep], b[keep], num_parts)
    return {"index": index, "checked": int(len(a)), "kept": int(np.count_nonzero(keep))}


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(a, b)`` pairs, sorted."""
    if not len(a):
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    distinct = np.ones(len(a), bool)
    distinct[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[distinct], b[distinct]


def _labels(item: tuple[int, list[Source]], work_dir: str, num_shards: int) -> list[int]:
    """Phase 5a: ``(node, label)`` for the nodes of one partition's stars, sent to their shard."""
    part, sources = item
    edges = read_sources(sources, EDGE_SCHEMA)
    leaf = edges.column("u").to_numpy()
    centre = np.unique(edges.column("v").to_numpy())
    node = np.concatenate([leaf, centre])
    label = np.concatenate([edges.column("v").to_numpy(), centre])
    table = pa.table({"node": node, "label": label}, schema=LABEL_SCHEMA)
    return write_partitioned(join(work_dir, "labels", f"part-{part:05d}.parquet"), table, _shard_of(node),
                             num_shards, LABEL_SCHEMA)


def _members(item: tuple[int, str, list[Source]], stage: FuzzyDedup, work_dir: str, num_parts: int) -> list[int]:
    """Phase 5b: one shard's documents that are in a component, with their id and score, sent to
    their component's partition."""
    shard, path, sources = item
    labels = read_sources(sources, LABEL_SCHEMA)
    node = labels.column("node").to_numpy()
    node, first = np.unique(node, return_index=True)  # a centre can arrive from several partitions
    label = labels.column("label").to_numpy()[first]
    rows = (node & ROW_MASK).astype(np.int64)
    columns = ["id"] + ([stage.score_column] if stage.score_column else [])
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        meta_table = pq.read_table(fh, columns=columns)
    take = pa.array(rows)
    ids = meta_table.column("id").take(take).cast(pa.string())
    if stage.score_column:
        score = meta_table.column(stage.score_column).take(take).cast(pa.float64())
        score = pc.fill_null(score, -np.inf)
    else:
        score = pa.array(np.zeros(len(rows)), pa.float64())
    table = pa.table({"label": label, "node": node, "id": ids, "score": score}, schema=MEMBER_SCHEMA)
    return write_partitioned(join(work_dir, "members", f"part-{shard:05d}.parquet"), table,
                             partition_of(label, num_parts), num_parts, MEMBER_SCHEMA)


def _survivors(item: tuple[int, list[Source]], work_dir: str, num_shards: int) -> dict[str, Any]:
    """Phase 5c: per component, its size and its survivor; rows sent back to their shards."""
    part, sources = item
    members = read_sources(sources, MEMBER_SCHEMA)
    n = members.num_rows
    path = join(work_dir, "survivors", f"part-{part:05d}.parquet")
    if not n:
        return {"index": write_partitioned(path, CLUSTER_SCHEMA.empty_table(), np.zeros(0, np.int64), num_shards,
                                           CLUSTER_SCHEMA), "sizes": {}}
    label = members.column("label").to_numpy()
    node = members.column("node").to_numpy()
    score = members.column("score").to_numpy()
    ids = members.column("id")
    id_rank = pc.rank(ids, sort_keys="ascending", tiebreaker="first").to_numpy()
    # Within each component: highest score first, then smallest id.
    order = np.lexsort((id_rank, -score, label))
    label, node, ids = label[order], node[order], ids.take(pa.array(order))
    new = np.ones(n, bool)
    new[1:] = label[1:] != label[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    sizes = np.diff(np.append(starts, n))
    cluster_id = ids.take(pa.array(starts[group]))
    table = pa.table({"row": (node & ROW_MASK).astype(np.int64), "cluster_id": cluster_id,
                      "cluster_size": sizes[group].astype(np.int64), "keep": new}, schema=CLUSTER_SCHEMA)
    size_counts = np.unique(sizes, return_counts=True)
    return {"index": write_partitioned(path, table, _shard_of(node), num_shards, CLUSTER_SCHEMA),
            "sizes": {str(int(s)): int(c) for s, c in zip(*size_counts)}}


def _write_output(task: ShardTask, input_path: str, sources: list[Source], batch_rows: int) -> dict[str, Any]:
    """Phase 6: one output shard, without its near-duplicates, with ``cluster_id`` and ``cluster_size``."""
    clusters = read_sources(sources, CLUSTER_SCHEMA)
    rows = clusters.column("row").to_numpy()
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    clusters = clusters.take(pa.array(order))
    stats = ShardStats()

    def results():
        offset = 0
        for batch in read_batches(input_path, batch_rows):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            local = rows[lo:hi] - offset
            cluster_id = batch.column("id").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
            size = np.ones(n, np.int64)
            keep = np.ones(n, bool)
            if hi > lo:
                part = clusters.slice(lo, hi - lo)
                cluster_id[local] = part.column("cluster_id").to_numpy(zero_copy_only=False)
                size[local] = part.column("cluster_size").to_numpy()
                keep[local] = part.column("keep").to_numpy(zero_copy_only=False)
            out = batch.append_column("cluster_id", pa.array(cluster_id, pa.string()))
            out = out.append_column("cluster_size", pa.array(size, pa.int64()))
            reasons = pa.array(np.where(keep, None, "fuzzy_duplicate"), pa.string())
            res = split_counted(batch, out.append_column(DROP_REASON, reasons), stats)
            offset += n
            yield res.kept, res.rejected

    return write_shard(task, results(), stats)


def _default_partitions(inputs: list[str]) -> int:
    """Enough shuffle partitions for about PARTITION_DOCS documents each (estimated from the first
    shard's row count), so a phase opens shards x partitions files, not shards^2."""
    if not inputs:
        return 1
    fs, fs_path = filesystem(inputs[0])
    with fs.open(fs_path, "rb") as fh:
        rows = pq.ParquetFile(fh).metadata.num_rows
    return int(min(1024, max(1, -(-rows * len(inputs) // PARTITION_DOCS))))


class FuzzyDedup(GlobalStage):
    """Near-duplicate removal by MinHash LSH and connected components; keeps one document per
    component and records ``cluster_id`` and ``cluster_size``."""

    name = "dedup.fuzzy"
    requires = ("id", "text")
    adds = ("cluster_id", "cluster_size")

    column: str = Field("text", description="Column whose text is shingled.")
    shingle: Literal["chars", "words"] = Field("chars", description="Character or word n-grams.")
    ngram: int = Field(24, ge=1, description="Shingle length in characters or words (Nemotron-CC: 24 characters).")
    normalize: list[Literal["lowercase", "whitespace", "punctuation", "digits", "numbers"]] = Field(
        default_factory=lambda: ["whitespace"], description="Normalisation before shingling.")
    num_perm: int = Field(260, ge=1, description="MinHash permutations.")
    seed: int = Field(1, description="Seed of the permutations (datasketch's default is 1).")
    bands: int | None = Field(20, ge=1, description="LSH bands (Nemotron-CC: 20). Null: derived from threshold.")
    rows: int | None = Field(13, ge=1, description="Rows per band (Nemotron-CC: 13). Null: derived from threshold.")
    threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Target Jaccard; picks bands and rows when they are null (datasketch's optimiser).")
    verify: bool = Field(
        False, description="Keep only candidate pairs whose true shingle Jaccard reaches verify_threshold.")
    verify_threshold: float | None = Field(None, gt=0.0, le=1.0, description="Default: threshold.")
    verify_all_pairs_up_to: int = Field(
        32, ge=2, description="With verify: buckets up to this size have all their pairs checked; "
                              "in larger ones every document is checked against the bucket's first two.")
    score_column: str | None = Field(None, description="Survivor = highest score in the component (then smallest id).")
    partitions: int | None = Field(None, ge=1, description="Shuffle partitions (default: one per 250k documents, at most 1024).")
    max_cc_rounds: int = Field(64, ge=1, description="Give up if components have not settled after this many rounds.")

    @model_validator(mode="after")
    def _bands_and_rows(self) -> FuzzyDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then they come from threshold)")
        if self.bands is None:
            self.bands, self.rows = lsh_bands(self.threshold, self.num_perm)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def required_columns(self) -> tuple[str, ...]:
        columns = ["id", self.column]
        if self.score_column:
            columns.append(self.score_column)
        return tuple(columns)

    def hasher(self) -> MinHashSignatures:
        """The signature computer for this configuration."""
        return MinHashSignatures(self.num_perm, self.seed, self.ngram, self.shingle, self.normalize)

    def verify_threshold_value(self) -> float:
        """The Jaccard a verified pair must reach."""
        return self.verify_threshold if self.verify_threshold is not None else self.threshold

    def run(self, ctx: GlobalRun) -> None:
        inputs = ctx.input_shards
        num_shards = len(inputs)
        num_parts = self.partitions or _default_partitions(inputs)
        work = ctx.work_dir
        sig = ctx.map("signatures", _signatures, list(enumerate(inputs)), self, work, num_parts, ctx.batch_rows)
        band_files = [join(work, "bands", f"part-{s:05d}.parquet") for s in range(num_shards)]
        band_index = [r["index"] for r in sig]
        items = [(p, sources_for(band_files, band_index, p)) for p in range(num_parts)]
        cand = ctx.map("candidates", _candidates, items, work, num_parts, num_shards, self.verify,
                       self.verify_all_pairs_up_to)
        summary: dict[str, Any] = {
            "documents": sum(r["docs"] for r in sig), "documents_without_shingles": sum(r["empty"] for r in sig),
            "bands": self.bands, "rows": self.rows, "num_perm": self.num_perm,
            # Links from each document to its bucket's first document; a pair sharing several
            # bands in different key partitions counts once per partition.
            "candidate_links": sum(r["links"] for r in cand),
        }
        if self.verify:
            need_files = [join(work, "needs", f"part-{p:05d}.parquet") for p in range(num_parts)]
            need_index = [r["index"] for r in cand]
            items = [(s, inputs[s], sources_for(need_files, need_index, s)) for s in range(num_shards)]
            gathered = ctx.map("gather", _gather, items, self.column, work, num_parts, ctx.batch_rows)
            text_files = [join(work, "gathered", f"part-{s:05d}.parquet") for s in range(num_shards)]
            pair_files = [join(work, "pairs", f"part-{p:05d}.parquet") for p in range(num_parts)]
            pair_index = [r["pair_index"] for r in cand]
            items = [(p, sources_for(pair_files, pair_index, p), sources_for(text_files, gathered, p))
                     for p in range(num_parts)]
            checked = ctx.map("verify", _verify, items, self, work, num_parts)
            edge_index = [r["index"] for r in checked]
            summary["pairs_checked"] = sum(r["checked"] for r in checked)
            summary["verified_pairs"] = sum(r["kept"] for r in checked)
        else:
            edge_index = [r["index"] for r in cand]
        edge_files = [join(work, "edges", f"part-{p:05d}.parquet") for p in range(num_parts)]
        star_files, star_index, rounds = connected_components(ctx, edge_files, edge_index, num_parts,
                                                              self.max_cc_rounds)
        items = [(p, sources_for(star_files, star_index, p)) for p in range(num_parts)]
        label_index = ctx.map("labels", _labels, items, work, num_shards)
        label_files = [join(work, "labels", f"part-{p:05d}.parquet") for p in range(num_parts)]
        items = [(s, inputs[s], sources_for(label_files, label_index, s)) for s in range(num_shards)]
        member_index = ctx.map("members", _members, items, self, work, num_parts)
        member_files = [join(work, "members", f"part-{s:05d}.parquet") for s in range(num_shards)]
        items = [(p, sources_for(member_files, member_index, p)) for p in range(num_parts)]
        surv = ctx.map("survivors", _survivors, items, work, num_shards)
        surv_files = [join(work, "survivors", f"part-{p:05d}.parquet") for p in range(num_parts)]
        surv_index = [r["index"] for r in surv]
        sizes: dict[int, int] = {}
        for r in surv:
            for size, count in r["sizes"].items():
                sizes[int(size)] = sizes.get(int(size), 0) + count
        summary.update({
            "cc_rounds": rounds,
            "clusters": sum(sizes.values()),
            "documents_in_clusters": sum(s * c for s, c in sizes.items()),
            "duplicates_removed": sum((s - 1) * c for s, c in sizes.items()),
            "cluster_sizes": {str(s): sizes[s] for s in sorted(sizes)},
        })
        ctx.map_outputs(_write_output, ctx.batch_rows,
                        per_task=lambda task: (inputs[task.index], sources_for(surv_files, surv_index, task.index)))
        write_json_atomic(join(ctx.plan.directory, DEDUP_SUMMARY), summary)
