"""Synthetic documents with planted near-duplicate clusters of known true Jaccard, for dedup benchmarks.

Documents are ~2 KB of words drawn at random from the word frequencies of real article text
(``../shared/data/extraction/aeb-dev/ground-truth.json``: 16.8 K distinct tokens, Zipfian counts,
punctuation and case kept), so 24-character shingle statistics resemble text; documents that are not
planted are independent draws and mutually dissimilar (Jaccard ~0).

A fraction of the documents (``planted_fraction``) form clusters of ``min_size``..``max_size``
documents (sizes uniform): a random source document and ``size - 1`` copies of it, each made
independently from the source by random word substitutions, insertions and deletions. The number of
edits of a copy is chosen so that its expected Jaccard to the source (24-character shingles) is a
target drawn uniformly from ``[min_jaccard, max_jaccard]``; the realised value is noisy, so the
TRUE Jaccard of every planted pair (source-copy and copy-copy) is computed from the shingle sets
and recorded. Cluster members are scattered over the whole dataset.

Layout of ``OUT``::

    data/part-00000.parquet ...   id, text (zstd, ``shard_rows`` rows each): the dataset
    truth/members.parquet         id, node, cluster, member (0 = source), target_jaccard, edits
    truth/pairs.parquet           cluster, a, b (ids), node_a, node_b, member_a < member_b, jaccard
    meta.json                     the configuration and counts (written last: marks a complete set)

``node = shard << 32 | row`` as ``dedup.fuzzy`` numbers documents (shards in sorted name order).
Jaccard is that of the sets of shingles ``MinHashSignatures(ngram=24).shingles()`` gives (whitespace
normalised, 24 code points), computed on their 64-bit hashes. Everything is a pure function of the
configuration (the seed included), whatever the number of worker processes.

    python benchmarks/planted_duplicates.py OUT --docs 100000 [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.minhash import MinHashSignatures  # noqa: E402

GENERATOR_VERSION = 1
VOCAB_SOURCE = REPO.parent / "shared" / "data" / "extraction" / "aeb-dev" / "ground-truth.json"
MAX_TOKEN_CHARS = 30
NGRAM = 24
COMPRESSION = "zstd"
_SPACE = 32


@dataclass(frozen=True)
class PlantedConfig:
    """What to generate. Two equal configurations give byte-identical datasets and truth files."""

    docs: int
    seed: int = 0
    shard_rows: int = 10_000
    planted_fraction: float = 0.1
    min_size: int = 2
    max_size: int = 10
    min_jaccard: float = 0.5
    max_jaccard: float = 1.0
    doc_bytes: int = 2000
    ngram: int = NGRAM

    def __post_init__(self) -> None:
        if self.docs < 1 or self.shard_rows < 1:
            raise ValueError("docs and shard_rows must be >= 1")
        if not 2 <= self.min_size <= self.max_size:
            raise ValueError("need 2 <= min_size <= max_size")
        if not 0.0 <= self.planted_fraction <= 1.0:
            raise ValueError("planted_fraction must be in [0, 1]")
        if not 0.0 < self.min_jaccard <= self.max_jaccard <= 1.0:
            raise ValueError("need 0 < min_jaccard <= max_jaccard <= 1")

    @property
    def shards(self) -> int:
        return -(-self.docs // self.shard_rows)


# --------------------------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Tokens of real text with their counts; sampling follows the counts (a Zipfian law)."""

    TABLE = 1 << 22

    def __init__(self, tokens: list[str], counts: np.ndarray) -> None:
        encoded = [t.encode("utf-8") for t in tokens]
        self.size = len(tokens)
        self.lengths = np.array([len(e) for e in encoded], np.int64)            # bytes
        self.chars = np.array([len(t) for t in tokens], np.int64)               # code points
        self.offsets = np.zeros(self.size + 1, np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.buf = np.frombuffer(b"".join(encoded), np.uint8).copy()
        p = counts.astype(np.float64) / counts.sum()
        # Inverse-CDF lookup table: token t owns about p[t] * 2^22 of its slots (at least one).
        ends = np.maximum(np.round(np.cumsum(p) * self.TABLE), np.arange(1, self.size + 1)).astype(np.int64)
        ends = np.minimum(ends, self.TABLE - self.size + np.arange(1, self.size + 1))
        self.table = np.repeat(np.arange(self.size, dtype=np.int32), np.diff(ends, prepend=0))
        self.mean_bytes = float((p * self.lengths).sum())
        self.mean_chars = float((p * self.chars).sum())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.table[rng.integers(0, self.TABLE, n)]


def load_vocabulary(path: Path = VOCAB_SOURCE) -> Vocabulary:
    """Whitespace tokens of the aeb-dev article bodies (at most 30 characters), ordered by count.

    Without the shared data (it should be there), a synthetic Zipfian vocabulary of random
    lower-case words stands in, and the datasets differ from those made with it.
    """
    if path.is_file():
        from collections import Counter

        bodies = json.loads(path.read_text(encoding="utf-8"))
        counter = Counter(w for v in bodies.values() for w in v["articleBody"].split()
                          if len(w) <= MAX_TOKEN_CHARS)
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return Vocabulary([t for t, _ in ranked], np.array([c for _, c in ranked], np.float64))
    rng = np.random.default_rng(12345)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    words = sorted({"".join(rng.choice(letters, rng.integers(1, 11))) for _ in range(20_000)})
    return Vocabulary(words, 1.0 / (np.arange(len(words)) + 2.7))


# ------------------------------------------------------------------------------------------------- plan


class Plan:
    """Which positions of the dataset are planted, in which cluster, as which member, with which
    target Jaccard. Position ``p`` is row ``p % shard_rows`` of shard ``p // shard_rows``."""

    def __init__(self, cfg: PlantedConfig) -> None:
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 0])
        want = int(round(cfg.docs * cfg.planted_fraction))
        mean = (cfg.min_size + cfg.max_size) / 2
        draws = rng.integers(cfg.min_size, cfg.max_size + 1, size=int(want / mean * 1.5) + 8)
        k = int(np.searchsorted(np.cumsum(draws), want, side="right"))
        self.sizes = draws[:k].astype(np.int64)
        self.clusters = len(self.sizes)
        self.cluster_start = np.zeros(self.clusters + 1, np.int64)
        np.cumsum(self.sizes, out=self.cluster_start[1:])
        planted = int(self.cluster_start[-1])
        # Planted document i (cluster-major order) sits at position positions[i].
        self.positions = rng.permutation(cfg.docs)[:planted].astype(np.int64)
        self.targets = rng.uniform(cfg.min_jaccard, cfg.max_jaccard, size=planted)
        member = np.arange(planted) - np.repeat(self.cluster_start[:-1], self.sizes)
        self.targets[member == 0] = 1.0
        self.cluster_of = np.full(cfg.docs, -1, np.int32)
        self.member_of = np.full(cfg.docs, -1, np.int32)
        self.cluster_of[self.positions] = np.repeat(np.arange(self.clusters, dtype=np.int32), self.sizes)
        self.member_of[self.positions] = member

    def target(self, cluster: int, member: int) -> float:
        return float(self.targets[self.cluster_start[cluster] + member])

    def position(self, cluster: int, member: int) -> int:
        return int(self.positions[self.cluster_start[cluster] + member])


def doc_id(position: int | np.ndarray) -> str | list[str]:
    """The id of the document at a position: ``d`` and nine digits."""
    if isinstance(position, (int, np.integer)):
        return f"d{int(position):09d}"
    return [f"d{int(p):09d}" for p in position]


def node_of(position: np.ndarray | int, shard_rows: int) -> np.ndarray:
    """``dedup.fuzzy``'s node number of the document at a position."""
    p = np.asarray(position, np.uint64)
    return ((p // np.uint64(shard_rows)) << np.uint64(32)) | (p % np.uint64(shard_rows))


# ---------------------------------------------------------------------------------------------- words


class Generator:
    """Word-id arrays of documents: random, cluster sources, and edited copies."""

    def __init__(self, cfg: PlantedConfig, vocab: Vocabulary | None = None, plan: Plan | None = None) -> None:
        self.cfg = cfg
        self.vocab = vocab or load_vocabulary()
        self.plan = plan or Plan(cfg)
        words = cfg.doc_bytes / (self.vocab.mean_bytes + 1)
        self.min_words = max(1, int(0.75 * words))
        self.max_words = max(self.min_words, int(1.25 * words))
        # Shingles one edit changes, on average: those overlapping the edited word (ngram - 1 +
        # its length, plus the separator's), less 10% for edits that overlap or change nothing
        # (measured: realised Jaccards then centre on their targets).
        self.shingles_per_edit = 0.9 * (cfg.ngram - 1 + self.vocab.mean_chars + 0.33)

    def random_doc(self, rng: np.random.Generator) -> np.ndarray:
        return self.vocab.sample(rng, int(rng.integers(self.min_words, self.max_words + 1)))

    def source(self, cluster: int) -> np.ndarray:
        return self.random_doc(np.random.default_rng([self.cfg.seed, 2, cluster]))

    def edits_for(self, words: np.ndarray, target: float) -> int:
        """Edits expected to bring a copy's Jaccard to ``target``: each edit removes about
        ``shingles_per_edit`` of the ``n`` shingles, at random places, so a fraction
        ``exp(-edits * shingles_per_edit / n)`` survives; ``J = x / (2 - x)`` for a surviving
        fraction ``x`` of two sets of equal size."""
        if target >= 1.0:
            return 0
        n = max(1.0, float(self.vocab.chars[words].sum() + len(words) - 1 - (self.cfg.ngram - 1)))
        x = 2 * target / (1 + target)
        return int(round(-np.log(x) * n / self.shingles_per_edit))

    def copy(self, source: np.ndarray, cluster: int, member: int) -> tuple[np.ndarray, int]:
        """Copy ``member`` (>= 1) of a cluster: random substitutions, insertions and deletions of
        words, one third each."""
        target = self.plan.target(cluster, member)
        edits = self.edits_for(source, target)
        if not edits:
            return source.copy(), 0
        rng = np.random.default_rng([self.cfg.seed, 3, cluster, member])
        n = len(source)
        pos = rng.integers(0, n, edits)
        kind = rng.integers(0, 3, edits)
        new = self.vocab.sample(rng, edits)
        words = source.copy()
        sub = kind == 0
        words[pos[sub]] = new[sub]
        keep = np.ones(n, bool)
        keep[pos[kind == 1]] = False
        ins = kind == 2
        words = np.insert(words, pos[ins], new[ins])
        keep = np.insert(keep, pos[ins], True)
        words = words[keep]
        if not len(words):
            words = source[:1].copy()
        return words, edits

    def member(self, cluster: int, member: int) -> tuple[np.ndarray, int]:
        src = self.source(cluster)
        return (src, 0) if member == 0 else self.copy(src, cluster, member)

    def cluster_docs(self, cluster: int) -> tuple[list[np.ndarray], list[int]]:
        src = self.source(cluster)
        docs, edits = [src], [0]
        for m in range(1, int(self.plan.sizes[cluster])):
            w, e = self.copy(src, cluster, m)
            docs.append(w)
            edits.append(e)
        return docs, edits

    def render(self, docs: list[np.ndarray]) -> pa.Array:
        """Texts of word-id arrays: words joined by single spaces."""
        lengths = np.array([len(d) for d in docs], np.int64)
        ids = np.concatenate(docs) if docs else np.zeros(0, np.int32)
        data, offsets = _render(ids.astype(np.int32), lengths, self.vocab.buf, self.vocab.offsets)
        return pa.StringArray.from_buffers(len(docs), pa.py_buffer(offsets), pa.py_buffer(data))


@nb.njit(cache=False)  # no cache: a cache written under one module name breaks the others
def _render(ids: np.ndarray, lengths: np.ndarray, buf: np.ndarray, voff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = 0
    for i in range(ids.shape[0]):
        total += voff[ids[i] + 1] - voff[ids[i]] + 1
    out = np.empty(max(total, 1), np.uint8)
    offsets = np.zeros(lengths.shape[0] + 1, np.int32)
    pos = 0
    w = 0
    for d in range(lengths.shape[0]):
        for k in range(lengths[d]):
            if k:
                out[pos] = 32
                pos += 1
            t = ids[w]
            for j in range(voff[t], voff[t + 1]):
                out[pos] = buf[j]
                pos += 1
            w += 1
        offsets[d + 1] = pos
    return out[:max(pos, 1)], offsets


# ------------------------------------------------------------------------------------------- jaccard


@nb.njit(cache=False)  # no cache: a cache written under one module name breaks the others
def _sorted_sets(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


@nb.njit(cache=False)  # no cache: a cache written under one module name breaks the others
def _jaccard(sets: np.ndarray, offsets: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    out = np.empty(left.shape[0], np.float64)
    for p in range(left.shape[0]):
        i, i_end = offsets[left[p]], offsets[left[p] + 1]
        j, j_end = offsets[right[p]], offsets[right[p] + 1]
        union = (i_end - i) + (j_end - j)
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
        union -= common
        out[p] = common / union if union else 1.0
    return out


def shingle_sets(texts: pa.Array, ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct 64-bit hashes of each text's shingles (as ``MinHashSignatures`` shingles
    them) and per-text offsets into them."""
    hashes, offsets = MinHashSignatures(num_perm=1, ngram=ngram).shingle_hashes(texts)
    return _sorted_sets(hashes, offsets)


def jaccard_pairs(texts: pa.Array, left: np.ndarray, right: np.ndarray, ngram: int = NGRAM) -> np.ndarray:
    """Exact Jaccard of the shingle sets of ``texts[left[i]]`` and ``texts[right[i]]``."""
    sets, offsets = shingle_sets(texts, ngram)
    return _jaccard(sets, offsets, np.asarray(left, np.int64), np.asarray(right, np.int64))


# ------------------------------------------------------------------------------------------- writing

_STATE: dict[str, object] = {}


def _generator(cfg: PlantedConfig) -> Generator:
    gen = _STATE.get("gen")
    if not isinstance(gen, Generator) or gen.cfg != cfg:
        gen = Generator(cfg)
        _STATE["gen"] = gen
    return gen


def shard_table(cfg: PlantedConfig, shard: int) -> pa.Table:
    """Shard ``shard`` of the dataset: columns id, text."""
    gen = _generator(cfg)
    plan = gen.plan
    lo, hi = shard * cfg.shard_rows, min((shard + 1) * cfg.shard_rows, cfg.docs)
    cluster, member = plan.cluster_of[lo:hi], plan.member_of[lo:hi]
    rng = np.random.default_rng([cfg.seed, 1, shard])
    free = np.flatnonzero(cluster < 0)
    lengths = rng.integers(gen.min_words, gen.max_words + 1, len(free))
    words = gen.vocab.sample(rng, int(lengths.sum()))
    docs: list[np.ndarray] = [None] * (hi - lo)  # type: ignore[list-item]
    for r, w in zip(free.tolist(), np.split(words, np.cumsum(lengths)[:-1])):
        docs[r] = w
    for r in np.flatnonzero(cluster >= 0).tolist():
        docs[r] = gen.member(int(cluster[r]), int(member[r]))[0]
    ids = pa.array(doc_id(np.arange(lo, hi)), pa.string())
    return pa.table({"id": ids, "text": gen.render(docs)})


def _write_shard(args: tuple[PlantedConfig, int, str]) -> int:
    cfg, shard, folder = args
    table = shard_table(cfg, shard)
    path = Path(folder) / f"part-{shard:05d}.parquet"
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression=COMPRESSION)
    os.replace(tmp, path)
    return table.num_rows


MEMBER_SCHEMA = pa.schema([("id", pa.string()), ("node", pa.uint64()), ("cluster", pa.int32()),
                           ("member", pa.int32()), ("target_jaccard", pa.float64()), ("edits", pa.int32())])
PAIR_SCHEMA = pa.schema([("cluster", pa.int32()), ("a", pa.string()), ("b", pa.string()), ("node_a", pa.uint64()),
                         ("node_b", pa.uint64()), ("member_a", pa.int32()), ("member_b", pa.int32()),
                         ("jaccard", pa.float64())])


def truth_tables(cfg: PlantedConfig, first: int, last: int) -> tuple[pa.Table, pa.Table]:
    """Members and all within-cluster pairs (with their true Jaccard) of clusters ``first..last-1``."""
    gen = _generator(cfg)
    plan = gen.plan
    docs: list[np.ndarray] = []
    edits: list[int] = []
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    pair_cluster: list[np.ndarray] = []
    for c in range(first, last):
        d, e = gen.cluster_docs(c)
        base = len(docs)
        docs.extend(d)
        edits.extend(e)
        i, j = np.triu_indices(len(d), 1)
        left.append(i + base)
        right.append(j + base)
        pair_cluster.append(np.full(len(i), c, np.int32))
    lo, hi = plan.cluster_start[first], plan.cluster_start[last]
    pos = plan.positions[lo:hi]
    nodes = node_of(pos, cfg.shard_rows)
    ids = np.array(doc_id(pos), dtype=object)
    member = (np.arange(lo, hi) - np.repeat(plan.cluster_start[first:last], plan.sizes[first:last])).astype(np.int32)
    cluster = np.repeat(np.arange(first, last, dtype=np.int32), plan.sizes[first:last])
    members = pa.table({"id": pa.array(ids, pa.string()), "node": nodes, "cluster": cluster, "member": member,
                        "target_jaccard": plan.targets[lo:hi], "edits": np.array(edits, np.int32)},
                       schema=MEMBER_SCHEMA)
    left_a = np.concatenate(left) if left else np.zeros(0, np.int64)
    right_a = np.concatenate(right) if right else np.zeros(0, np.int64)
    jac = jaccard_pairs(gen.render(docs), left_a, right_a, cfg.ngram) if len(left_a) else np.zeros(0)
    pairs = pa.table({"cluster": np.concatenate(pair_cluster) if pair_cluster else np.zeros(0, np.int32),
                      "a": pa.array(ids[left_a], pa.string()), "b": pa.array(ids[right_a], pa.string()),
                      "node_a": nodes[left_a], "node_b": nodes[right_a],
                      "member_a": member[left_a], "member_b": member[right_a], "jaccard": jac},
                     schema=PAIR_SCHEMA)
    return members, pairs


def _truth_chunk(args: tuple[PlantedConfig, int, int]) -> tuple[pa.Table, pa.Table]:
    return truth_tables(*args)


def _config_dict(cfg: PlantedConfig) -> dict:
    return {"generator_version": GENERATOR_VERSION, **asdict(cfg)}


def is_complete(out: Path, cfg: PlantedConfig) -> bool:
    """Whether ``out`` holds a finished set made from ``cfg``."""
    meta = out / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("config") == _config_dict(cfg)
    except (OSError, ValueError):
        return False


def generate(out: str | Path, cfg: PlantedConfig, workers: int | None = None, force: bool = False,
             verbose: bool = False) -> dict:
    """Write the dataset and truth files of ``cfg`` under ``out`` (reused if already complete);
    returns the meta record."""
    out = Path(out)
    if not force and is_complete(out, cfg):
        return json.loads((out / "meta.json").read_text())
    if out.exists():
        foreign = {p.name for p in out.iterdir()} - {"data", "truth", "meta.json", ".meta.json.tmp"}
        if foreign:
            raise FileExistsError(f"{out} holds other files ({sorted(foreign)[:3]}...); not overwriting it")
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    (out / "truth").mkdir()
    start = time.perf_counter()
    gen = _generator(cfg)  # built and compiled before the fork, so the workers inherit both
    warm = gen.render([np.zeros(3, np.int32)])
    jaccard_pairs(warm, np.zeros(1, np.int64), np.zeros(1, np.int64), cfg.ngram)
    workers = workers or len(os.sched_getaffinity(0))
    chunk = 500
    truth_items = [(cfg, c, min(c + chunk, gen.plan.clusters)) for c in range(0, gen.plan.clusters, chunk)]
    shard_items = [(cfg, s, str(out / "data")) for s in range(cfg.shards)]
    timings = {"setup": time.perf_counter() - start}
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            truth = pool.map(_truth_chunk, truth_items, chunksize=1)
            timings["truth"] = time.perf_counter() - start - sum(timings.values())
            rows = pool.map(_write_shard, shard_items, chunksize=1)
    else:
        truth = [_truth_chunk(i) for i in truth_items]
        timings["truth"] = time.perf_counter() - start - sum(timings.values())
        rows = [_write_shard(i) for i in shard_items]
    timings["shards"] = time.perf_counter() - start - sum(timings.values())
    members = pa.concat_tables([m for m, _ in truth]) if truth else MEMBER_SCHEMA.empty_table()
    pairs = pa.concat_tables([p for _, p in truth]) if truth else PAIR_SCHEMA.empty_table()
    pq.write_table(members, out / "truth" / "members.parquet", compression=COMPRESSION)
    pq.write_table(pairs, out / "truth" / "pairs.parquet", compression=COMPRESSION)
    jac = pairs.column("jaccard").to_numpy()
    with_source = pairs.column("member_a").to_numpy() == 0
    meta = {
        "config": _config_dict(cfg),
        "documents": int(sum(rows)),
        "shards": cfg.shards,
        "clusters": gen.plan.clusters,
        "planted_documents": int(members.num_rows),
        "copies": int(members.num_rows - gen.plan.clusters),
        "pairs": int(pairs.num_rows),
        "source_copy_jaccard_quantiles": [round(float(q), 4) for q in np.quantile(jac[with_source], [0, .1, .5, .9, 1])]
        if with_source.any() else [],
        "cluster_sizes": {str(int(s)): int(c) for s, c in zip(*np.unique(gen.plan.sizes, return_counts=True))},
    }
    first = pq.read_table(out / "data" / "part-00000.parquet", columns=["text"]).column("text").slice(0, 1000)
    meta["mean_text_bytes"] = round(float(np.mean(pc.binary_length(first).to_numpy())), 1)
    meta["parquet_mb"] = round(sum(p.stat().st_size for p in (out / "data").glob("part-*.parquet")) / 1e6, 1)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    meta["phase_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "meta.json")
    if verbose:
        print(json.dumps(meta, indent=1))
    return meta


def read_truth(out: str | Path) -> tuple[pa.Table, pa.Table]:
    """(members, pairs) of a generated set."""
    out = Path(out)
    return pq.read_table(out / "truth" / "members.parquet"), pq.read_table(out / "truth" / "pairs.parquet")


def default_dir(cfg: PlantedConfig, root: Path = REPO / "benchmarks" / "_data") -> Path:
    """A cache folder named after the configuration (benchmarks/_data is git-ignored)."""
    d = PlantedConfig(docs=cfg.docs)
    extra = "".join(f"-{f.name}{getattr(cfg, f.name)}" for f in fields(cfg)
                    if f.name not in ("docs",) and getattr(cfg, f.name) != getattr(d, f.name))
    return root / f"planted-{cfg.docs}{extra}"


def _range(text: str, kind: type) -> tuple:
    lo, _, hi = text.partition("-") if kind is int else text.partition(":")
    return kind(lo), kind(hi or lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", help="Output folder (default: benchmarks/_data/planted-DOCS...).")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--planted-fraction", type=float, default=0.1)
    parser.add_argument("--sizes", default="2-10", help="Cluster sizes MIN-MAX (uniform).")
    parser.add_argument("--jaccard", default="0.5:1.0", help="Target Jaccard range MIN:MAX of copy vs source.")
    parser.add_argument("--doc-bytes", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="Regenerate even if the folder is complete.")
    args = parser.parse_args()
    min_size, max_size = _range(args.sizes, int)
    min_j, max_j = _range(args.jaccard, float)
    cfg = PlantedConfig(docs=args.docs, seed=args.seed, shard_rows=args.shard_rows,
                        planted_fraction=args.planted_fraction, min_size=min_size, max_size=max_size,
                        min_jaccard=min_j, max_jaccard=max_j, doc_bytes=args.doc_bytes)
    out = Path(args.out) if args.out else default_dir(cfg)
    generate(out, cfg, args.workers, args.force, verbose=True)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
