"""The Nemotron-CC classifier ensemble: each classifier's score to a 0-19 bucket by that classifier's
own weighted percentiles over the whole dataset, the maximum over classifiers, and five labels.

Phases (each a set of Dask tasks, each resumable):

1. ``weigh``: per input shard, each document's weight (tokens, UTF-8 bytes or 1) and its scores,
   written to a small Parquet file under ``_work/scores`` (so text is read and tokenised once),
   with per-classifier counts, total weight and min/max;
2. ``refine-1``, ``refine-2``, ...: the exact weighted 5th..95th percentiles of each classifier,
   found by narrowing key ranges over the score files (see :mod:`classifiers.percentiles`: usually
   two rounds, never more than ``ceil(64 / log2(search_bins)) + 1``). Skipped when
   ``thresholds_path`` gives a saved calibration;
3. ``buckets``: per shard, histograms of each classifier's buckets, of ``quality_bucket`` and of
   the labels (documents and weight), merged into the stage summary ``_ensemble.json``;
4. output: per input shard, its rows with ``<column>_bucket`` per classifier, ``quality_bucket``
   and ``quality_label``. No row is ever dropped.

The thresholds are saved as a versioned JSON artifact (``_quality_thresholds.json`` in the stage
folder, and at ``thresholds_out`` if given); a later snapshot is bucketed on the same scale by
passing that file as ``thresholds_path``.

Definitions: a classifier's thresholds are its weighted percentiles ``p = 5, 10, ..., 95``, each
the smallest score ``s`` with ``100 * weight(score <= s) >= p * total weight``; its bucket is the
number of thresholds ``<= score`` (ties at a threshold go up; equal scores get equal buckets).
This is what Nemotron-CC's reference code does with an inverted-CDF percentile and
``np.digitize``, computed here exactly over every document rather than on a sample.

Null scores: a null or NaN score does not enter its classifier's calibration (it is counted as
``null_scores``), gets a null ``<column>_bucket``, and takes no part in the maximum; a document no
classifier scored gets null ``quality_bucket`` and ``quality_label`` and is counted as unscored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from classifiers.percentiles import PERCENTILES, SortedScores, ThresholdSearch, bucketize
from classifiers.quality_labels import LABEL_BUCKETS, NUM_BUCKETS, label_counts, labels_of
from curator.columns import put_column
from curator.global_run import GlobalRun
from curator.plan import ENSEMBLE_SUMMARY, ShardTask
from curator.stage import GlobalStage, PathParam, ShardStats, split_counted
from curator.storage import ShardWriter, filesystem, join, read_batches, read_json, read_schema, write_json_atomic
from curator.tasks import write_shard

log = logging.getLogger("classifiers.ensemble")

ARTIFACT_FORMAT = "curator.quality_thresholds"
ARTIFACT_VERSION = 1
ARTIFACT_FILE = "_quality_thresholds.json"
"""The calibration artifact, beside the stage's shards (``_``: not read as part of the dataset)."""

TOKEN_PATTERN = r"[\pL\pM\pN_]+|[^\pL\pM\pN_\s\p{Z}]"
"""Approximate tokens when no tokenizer is given: each run of letters, marks, digits and ``_``, and
each other non-space character. Proportional enough to BPE counts on English text for weighting
(a constant ratio does not move a percentile); it counts a run of CJK characters as one token."""

TOKENIZE_CHUNK = 1000
"""Documents per ``encode_batch`` call (bounds the memory of the encodings)."""

PERCENTILE_DEFINITION = "smallest score s with 100 * weight(score <= s) >= p * total weight"
BUCKET_DEFINITION = "number of thresholds <= score (invert: number of thresholds >= score)"

WeightKind = Literal["tokens", "bytes", "documents"]


class ClassifierScore(BaseModel):
    """One classifier's score column in the ensemble."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(..., min_length=1, description="Column holding the classifier's score (a number).")
    name: str | None = Field(None, description="Display name (default: the column).")
    invert: bool = Field(False, description="Lower scores are better (the default: higher is better).")

    @property
    def display(self) -> str:
        """The classifier's name in the artifact, the summary and the report."""
        return self.name or self.column

    @property
    def bucket_column(self) -> str:
        """The output column holding this classifier's bucket."""
        return f"{self.column}_bucket"


class CalibratedClassifier(BaseModel):
    """One classifier's entry in the thresholds artifact."""

    model_config = ConfigDict(extra="forbid")

    column: str
    invert: bool = False
    thresholds: list[float] = Field(..., min_length=len(PERCENTILES), max_length=len(PERCENTILES))
    documents: int = Field(..., ge=0)
    null_scores: int = Field(..., ge=0)
    total_weight: int = Field(..., ge=0)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CalibratedClassifier:
        internal = self.internal_thresholds()
        if any(b < a for a, b in zip(internal, internal[1:])):
            raise ValueError("thresholds must be non-decreasing (non-increasing with invert: true)")
        return self

    def internal_thresholds(self) -> list[float]:
        """The thresholds on the oriented scale (scores negated when ``invert``), ascending."""
        return [-t for t in self.thresholds] if self.invert else list(self.thresholds)


class ThresholdArtifact(BaseModel):
    """The saved calibration: per classifier, the scores at the 5th..95th weighted percentiles."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["curator.quality_thresholds"]
    version: Literal[1]
    created: str
    weight: WeightKind
    tokenizer: dict[str, Any] | None = None
    percentiles: list[int]
    percentile_definition: str = PERCENTILE_DEFINITION
    bucket_definition: str = BUCKET_DEFINITION
    classifiers: dict[str, CalibratedClassifier]
    labels: dict[str, list[int]] = Field(default_factory=lambda: {k: list(v) for k, v in LABEL_BUCKETS.items()})

    def for_column(self, column: str) -> CalibratedClassifier:
        """The entry calibrating ``column`` (KeyError if none)."""
        for entry in self.classifiers.values():
            if entry.column == column:
                return entry
        raise KeyError(column)

    @field_validator("percentiles")
    @classmethod
    def _standard_percentiles(cls, value: list[int]) -> list[int]:
        if value != list(PERCENTILES):
            raise ValueError(f"percentiles must be {list(PERCENTILES)}")
        return value


def load_artifact(path: str) -> ThresholdArtifact:
    """Read and validate a thresholds artifact; errors name the file."""
    fs, fs_path = filesystem(path)
    try:
        with fs.open(fs_path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"quality thresholds file not found: {path}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: not a quality thresholds file (format is not {ARTIFACT_FORMAT!r})")
    if data.get("version") != ARTIFACT_VERSION:
        raise ValueError(f"{path}: unknown quality thresholds version {data.get('version')!r} "
                         f"(this curator reads version {ARTIFACT_VERSION})")
    try:
        return ThresholdArtifact.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid quality thresholds file: {exc}") from None


def document_weights(batch: pa.Table, kind: WeightKind, text_column: str, tokenizer: Any = None) -> np.ndarray:
    """Each row's weight (int64): tokens (with ``tokenizer``, else :data:`TOKEN_PATTERN` matches),
    UTF-8 bytes of the text, or 1. A null text weighs 0."""
    if kind == "documents":
        return np.ones(batch.num_rows, dtype=np.int64)
    texts = batch.column(text_column)
    if kind == "bytes":
        counts = pc.binary_length(texts)
    elif tokenizer is None:
        counts = pc.count_substring_regex(texts, TOKEN_PATTERN)
    else:
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # _fast: no offsets kept
        strings = [t or "" for t in texts.to_pylist()]
        lengths = [len(e.ids) for i in range(0, len(strings), TOKENIZE_CHUNK)
                   for e in encode(strings[i:i + TOKENIZE_CHUNK], add_special_tokens=False)]
        return np.array(lengths, dtype=np.int64)
    return pc.fill_null(counts, 0).to_numpy(zero_copy_only=False).astype(np.int64)


def oriented_scores(column: pa.ChunkedArray | pa.Array, invert: bool, name: str) -> np.ndarray:
    """A score column as float64 with NaN for null, negated when ``invert`` (so higher is better)."""
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
            or pa.types.is_boolean(column.type) or pa.types.is_null(column.type)):
        raise TypeError(f"score column {name!r} has type {column.type}; scores must be numbers")
    values = pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    return -values if invert else values + 0.0


def load_tokenizer(path: str) -> Any:
    """A ``tokenizers`` tokenizer from a tokenizer.json (local or fsspec URL), without truncation."""
    from tokenizers import Tokenizer

    fs, fs_path = filesystem(path)
    if not fs.isfile(fs_path):
        raise FileNotFoundError(f"stage classify.ensemble: tokenizer file not found: {path}")
    with fs.open(fs_path, "rb") as fh:
        tokenizer = Tokenizer.from_str(fh.read().decode("utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def add_quality_columns(batch: pa.Table, classifiers: list[ClassifierScore], artifact: ThresholdArtifact) -> pa.Table:
    """``batch`` with ``<column>_bucket`` per classifier, ``quality_bucket`` and ``quality_label``
    (replacing columns of those names), bucketed on ``artifact``'s thresholds."""
    per_classifier = []
    out = batch
    for c in classifiers:
        entry = artifact.for_column(c.column)
        buckets = bucketize(oriented_scores(batch.column(c.column), c.invert, c.column),
                            entry.internal_thresholds())
        per_classifier.append(buckets)
        out = put_column(out, c.bucket_column, pa.array(buckets, pa.int8(), mask=buckets < 0))
    best = np.max(np.stack(per_classifier), axis=0) if batch.num_rows else np.zeros(0, np.int8)
    out = put_column(out, "quality_bucket", pa.array(best, pa.int8(), mask=best < 0))
    return put_column(out, "quality_label", labels_of(best))


def _score_file(work_dir: str, shard: int) -> str:
    return join(work_dir, "scores", f"part-{shard:05d}.parquet")


def _read_scores(path: str, count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A score file's weights and oriented scores per classifier."""
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        table = pq.read_table(fh)
    weights = table.column("weight").to_numpy().astype(np.int64)
    return weights, [table.column(f"s{i}").to_numpy(zero_copy_only=False).astype(np.float64) for i in range(count)]


def _weigh_shard(item: tuple[int, str], classifiers: list[ClassifierScore], kind: WeightKind, text_column: str,
                 tokenizer_path: str | None, work_dir: str, batch_rows: int) -> dict[str, Any]:
    """Phase 1: write one shard's weights and oriented scores; return its counts and score ranges."""
    shard, path = item
    needed = [c.column for c in classifiers] + ([text_column] if kind != "documents" else [])
    present = set(read_schema(path).names)
    missing = [c for c in needed if c not in present]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}, which the ensemble's classifiers or weight need")
    tokenizer = load_tokenizer(tokenizer_path) if kind == "tokens" and tokenizer_path else None
    schema = pa.schema([("weight", pa.int64())] + [(f"s{i}", pa.float64()) for i in range(len(classifiers))])
    writer = ShardWriter(_score_file(work_dir, shard), schema)
    rows = total = 0
    stats = [{"documents": 0, "null_scores": 0, "weight": 0, "min": None, "max": None} for _ in classifiers]
    try:
        for batch in read_batches(path, batch_rows, columns=list(dict.fromkeys(needed))):
            weights = document_weights(batch, kind, text_column, tokenizer)
            columns: dict[str, Any] = {"weight": weights}
            for i, c in enumerate(classifiers):
                scores = oriented_scores(batch.column(c.column), c.invert, c.column)
                columns[f"s{i}"] = scores
                scored = ~np.isnan(scores)
                st = stats[i]
                st["documents"] += int(scored.sum())
                st["null_scores"] += int((~scored).sum())
                st["weight"] += int(weights[scored].sum())
                if scored.any():
                    lo, hi = float(scores[scored].min()), float(scores[scored].max())
                    st["min"] = lo if st["min"] is None else min(st["min"], lo)
                    st["max"] = hi if st["max"] is None else max(st["max"], hi)
            writer.write(pa.table(columns, schema=schema))
            rows += batch.num_rows
            total += int(weights.sum())
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"rows": rows, "weight": total, "classifiers": stats}


def _summarize_shard(item: tuple[int, str], ranges: list[list[tuple[int, int]]], bins: int,
                     count: int) -> list[list[dict[str, Any]]]:
    """A refine round: per classifier, this shard's summary of each open key range."""
    _, path = item
    weights, scores = _read_scores(path, count)
    out = []
    for i, classifier_ranges in enumerate(ranges):
        if not classifier_ranges:
            out.append([])
            continue
        sorted_scores = SortedScores(scores[i], weights)
        out.append([sorted_scores.summarize_range(lo, hi, bins) for lo, hi in classifier_ranges])
    return out


def _histogram(buckets: np.ndarray, weights: np.ndarray) -> dict[str, list[int]]:
    ok = buckets >= 0
    docs = np.bincount(buckets[ok].astype(np.int64), minlength=NUM_BUCKETS)
    weight = np.zeros(NUM_BUCKETS, dtype=np.int64)
    np.add.at(weight, buckets[ok].astype(np.int64), weights[ok])  # exact, unlike bincount's float sums
    return {"documents": docs.tolist(), "weight": weight.tolist()}


def _bucket_shard(item: tuple[int, str], thresholds: list[list[float]]) -> dict[str, Any]:
    """Phase 3: histograms of one shard's buckets per classifier and of ``quality_bucket``."""
    _, path = item
    weights, scores = _read_scores(path, len(thresholds))
    per_classifier = [bucketize(s, t) for s, t in zip(scores, thresholds)]
    best = np.max(np.stack(per_classifier), axis=0) if len(weights) else np.zeros(0, np.int8)
    unscored = best < 0
    return {
        "rows": int(len(weights)),
        "weight": int(weights.sum()),
        "classifiers": [_histogram(b, weights) for b in per_classifier],
        "quality": _histogram(best, weights),
        "unscored": {"documents": int(unscored.sum()), "weight": int(weights[unscored].sum())},
    }


def _write_output(task: ShardTask, input_path: str, classifiers: list[ClassifierScore],
                  artifact: ThresholdArtifact, batch_rows: int) -> dict[str, Any]:
    """Phase 4: one output shard: the input rows with the bucket and label columns."""
    stats = ShardStats()

    def results():
        for batch in read_batches(input_path, batch_rows):
            res = split_counted(batch, add_quality_columns(batch, classifiers, artifact), stats)
            yield res.kept, res.rejected

    return write_shard(task, results(), stats)


def _sum_lists(lists: list[list[int]]) -> list[int]:
    return [int(sum(values)) for values in zip(*lists)] if lists else [0] * NUM_BUCKETS


class QualityEnsemble(GlobalStage):
    """Bucket each classifier's score 0-19 by its weighted percentiles, take the max, label it."""

    name = "classify.ensemble"
    adds = ("quality_bucket", "quality_label")

    classifiers: list[ClassifierScore] = Field(..., min_length=1, description=(
        "The classifiers' score columns: entries {column, name (optional display name), invert "
        "(optional: lower is better)}, or bare column names. Scores are numbers, higher = better."))
    weight: WeightKind = Field("tokens", description=(
        "What each document weighs in the percentiles: tokens (Nemotron-CC), UTF-8 bytes of the "
        "text, or documents (1 each)."))
    tokenizer_path: PathParam | None = Field(None, description=(
        "A tokenizer.json (Hugging Face tokenizers) counting tokens for weight: tokens. Without "
        f"it, tokens are approximated as matches of {TOKEN_PATTERN} (words and punctuation); "
        "the artifact records which."))
    text_column: str = Field("text", description="The column whose tokens or bytes weigh each document.")
    thresholds_path: PathParam | None = Field(None, description=(
        "A saved thresholds artifact (an earlier run's _quality_thresholds.json): bucket on its "
        "scale and skip calibration, e.g. for a later crawl snapshot. It must name the same "
        "classifier columns."))
    thresholds_out: PathParam | None = Field(None, description=(
        "Also save the thresholds artifact here (it is always saved as _quality_thresholds.json "
        "in the stage's folder)."))
    search_bins: int = Field(16384, ge=2, le=1 << 20, description=(
        "Histogram bins per round of the distributed percentile search. The result is exact "
        "whatever the value; more bins mean fewer rounds and larger messages."))

    @field_validator("classifiers", mode="before")
    @classmethod
    def _bare_columns(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"column": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _distinct(self) -> QualityEnsemble:
        names = [c.display for c in self.classifiers]
        columns = [c.column for c in self.classifiers]
        for what, values in (("name", names), ("column", columns)):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(f"classifiers: each {what} must appear once; repeated: {dup}")
        outputs = {c.bucket_column for c in self.classifiers} | set(self.adds)
        clash = sorted(outputs & set(columns + [self.text_column]))
        if clash:
            raise ValueError(f"classifiers: output column(s) {clash} would overwrite an input column")
        return self

    def required_columns(self) -> tuple[str, ...]:
        """The score columns, and the text column unless weighing documents."""
        columns = tuple(c.column for c in self.classifiers)
        return columns + ((self.text_column,) if self.weight != "documents" else ())

    def output_columns(self, input_columns: list[str]) -> list[str]:
        """The input columns plus one bucket column per classifier, ``quality_bucket`` and ``quality_label``."""
        out = list(input_columns)
        out += [c for c in [x.bucket_column for x in self.classifiers] + list(self.adds) if c not in out]
        return out

    def check_artifact(self, artifact: ThresholdArtifact, path: str) -> None:
        """Raise ``ValueError`` naming ``path`` unless the artifact calibrates exactly this stage's
        classifier columns, each in the same direction (display names may differ)."""
        saved = {entry.column: entry.invert for entry in artifact.classifiers.values()}
        wanted = {c.column: c.invert for c in self.classifiers}
        if set(saved) != set(wanted):
            raise ValueError(
                f"stage {self.name}: thresholds file {path} calibrates columns {sorted(saved)}, but the "
                f"stage's classifiers are {sorted(wanted)} (missing {sorted(set(wanted) - set(saved))}, "
                f"extra {sorted(set(saved) - set(wanted))})")
        for column, invert in wanted.items():
            if saved[column] != invert:
                raise ValueError(f"stage {self.name}: thresholds file {path}: column {column!r} is saved with "
                                 f"invert: {saved[column]}, but configured with invert: {invert}")
        if artifact.weight != self.weight:
            log.warning("stage %s: thresholds file %s was calibrated with weight %s; this stage weighs %s "
                        "(used only for its summary)", self.name, path, artifact.weight, self.weight)

    def run(self, ctx: GlobalRun) -> None:
        """Weigh, calibrate (unless ``thresholds_path``), save the artifact and summary, write the shards."""
        saved = None
        if self.thresholds_path:
            saved = load_artifact(self.thresholds_path)
            self.check_artifact(saved, self.thresholds_path)
        tokenizer = self._tokenizer_record()
        inputs = ctx.input_shards
        items = list(enumerate(inputs))
        weighed = ctx.map("weigh", _weigh_shard, items, self.classifiers, self.weight, self.text_column,
                          self.tokenizer_path, ctx.work_dir, ctx.batch_rows)
        profiles = [self._profile(i, weighed) for i in range(len(self.classifiers))]
        score_items = [(i, _score_file(ctx.work_dir, i)) for i in range(len(inputs))]
        rounds = 0
        if saved is None:
            artifact, rounds = self._calibrate(ctx, score_items, profiles, tokenizer)
        else:
            artifact = saved
        self._save_artifact(join(ctx.plan.directory, ARTIFACT_FILE), artifact)
        if self.thresholds_out:
            self._save_artifact(self.thresholds_out, artifact)
        internal = [artifact.for_column(c.column).internal_thresholds() for c in self.classifiers]
        histograms = ctx.map("buckets", _bucket_shard, score_items, internal)
        summary = self._summary(artifact, profiles, histograms, rounds, tokenizer, ctx)
        write_json_atomic(join(ctx.plan.directory, ENSEMBLE_SUMMARY), summary)
        ctx.map_outputs(_write_output, self.classifiers, artifact, ctx.batch_rows,
                        per_task=lambda task: (inputs[task.index],))

    def _tokenizer_record(self) -> dict[str, Any] | None:
        if self.weight != "tokens":
            return None
        if not self.tokenizer_path:
            return {"kind": "approximate", "pattern": TOKEN_PATTERN,
                    "note": "no tokenizer given: words and punctuation marks counted as tokens"}
        fs, fs_path = filesystem(self.tokenizer_path)
        if not fs.isfile(fs_path):
            raise FileNotFoundError(f"stage {self.name}: tokenizer file not found: {self.tokenizer_path}")
        with fs.open(fs_path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        return {"kind": "tokenizer.json", "path": self.tokenizer_path, "sha256": sha}

    def _profile(self, i: int, weighed: list[dict[str, Any]]) -> dict[str, Any]:
        """One classifier's dataset-wide counts, total weight and (oriented) min/max."""
        parts = [w["classifiers"][i] for w in weighed]
        mins = [p["min"] for p in parts if p["min"] is not None]
        maxs = [p["max"] for p in parts if p["max"] is not None]
        return {"documents": sum(p["documents"] for p in parts), "null_scores": sum(p["null_scores"] for p in parts),
                "weight": sum(p["weight"] for p in parts),
                "min": min(mins) if mins else None, "max": max(maxs) if maxs else None}

    def _calibrate(self, ctx: GlobalRun, score_items: list[tuple[int, str]], profiles: list[dict[str, Any]],
                   tokenizer: dict[str, Any] | None) -> tuple[ThresholdArtifact, int]:
        """The artifact of this dataset's exact thresholds, and the search rounds it took."""
        searches = []
        for c, p in zip(self.classifiers, profiles):
            if p["weight"] <= 0:
                raise ValueError(f"stage {self.name}: classifier {c.display!r} (column {c.column!r}) has no scored "
                                 f"document with a positive weight ({p['documents']} scored, {p['null_scores']} "
                                 "null): its percentiles are undefined")
            searches.append(ThresholdSearch(p["weight"], p["min"], p["max"], self.search_bins))
        rounds = 0
        while not all(s.done for s in searches):
            rounds += 1
            ranges = [[] if s.done else s.ranges() for s in searches]
            results = ctx.map(f"refine-{rounds}", _summarize_shard, score_items, ranges, self.search_bins,
                              len(self.classifiers))
            for i, s in enumerate(searches):
                if ranges[i]:
                    s.update([r[i] for r in results])
        log.info("stage %s: thresholds of %d classifiers found in %d rounds", self.name, len(searches), rounds)
        entries = {}
        for c, p, s in zip(self.classifiers, profiles, searches):
            thresholds = s.thresholds()
            entries[c.display] = CalibratedClassifier(
                column=c.column, invert=c.invert, thresholds=[-t for t in thresholds] if c.invert else thresholds,
                documents=p["documents"], null_scores=p["null_scores"], total_weight=p["weight"],
                **self._display_range(c, p))
        artifact = ThresholdArtifact(
            format=ARTIFACT_FORMAT, version=ARTIFACT_VERSION,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            weight=self.weight, tokenizer=tokenizer, percentiles=list(PERCENTILES), classifiers=entries)
        return artifact, rounds

    @staticmethod
    def _display_range(c: ClassifierScore, p: dict[str, Any]) -> dict[str, float | None]:
        """min/max on the classifier's own scale (the oriented ones flipped back for ``invert``)."""
        if not c.invert:
            return {"min": p["min"], "max": p["max"]}
        return {"min": None if p["max"] is None else -p["max"], "max": None if p["min"] is None else -p["min"]}

    @staticmethod
    def _save_artifact(path: str, artifact: ThresholdArtifact) -> None:
        """Write the artifact unless the same calibration is there already (a resumed run keeps its date)."""
        data = artifact.model_dump(mode="json")
        existing = read_json(path)
        if isinstance(existing, dict) and {k: v for k, v in existing.items() if k != "created"} == \
                {k: v for k, v in data.items() if k != "created"}:
            return
        write_json_atomic(path, data)

    def _summary(self, artifact: ThresholdArtifact, profiles: list[dict[str, Any]],
                 histograms: list[dict[str, Any]], rounds: int, tokenizer: dict[str, Any] | None,
                 ctx: GlobalRun) -> dict[str, Any]:
        """The stage summary (``_ensemble.json``) the report shows."""
        documents = sum(h["rows"] for h in histograms)
        total_weight = sum(h["weight"] for h in histograms)
        classifiers = {}
        for i, (c, p) in enumerate(zip(self.classifiers, profiles)):
            entry = artifact.for_column(c.column)
            classifiers[c.display] = {
                "column": c.column, "invert": c.invert, "thresholds": entry.thresholds,
                "documents": p["documents"], "null_scores": p["null_scores"], "total_weight": p["weight"],
                **self._display_range(c, p),
                "buckets": {key: _sum_lists([h["classifiers"][i][key] for h in histograms])
                            for key in ("documents", "weight")},
            }
        quality = {key: _sum_lists([h["quality"][key] for h in histograms]) for key in ("documents", "weight")}
        unscored = {key: sum(h["unscored"][key] for h in histograms) for key in ("documents", "weight")}
        doc_labels, weight_labels = label_counts(quality["documents"]), label_counts(quality["weight"])
        labels = {
            label: {"buckets": list(LABEL_BUCKETS[label]),
                    "documents": doc_labels[label], "weight": weight_labels[label],
                    "document_share": doc_labels[label] / documents if documents else 0.0,
                    "weight_share": weight_labels[label] / total_weight if total_weight else 0.0}
            for label in LABEL_BUCKETS
        }
        return {
            "stage": self.name, "documents": documents, "weight": self.weight, "total_weight": total_weight,
            "tokenizer": tokenizer,
            "thresholds": {"source": "loaded" if self.thresholds_path else "calibrated",
                           "loaded_from": self.thresholds_path, "calibrated_weight": artifact.weight,
                           "artifact": join(ctx.plan.directory, ARTIFACT_FILE), "saved_to": self.thresholds_out,
                           "search_rounds": rounds, "created": artifact.created},
            "percentiles": list(PERCENTILES),
            "classifiers": classifiers,
            "quality_bucket": quality,
            "unscored": {**unscored, "document_share": unscored["documents"] / documents if documents else 0.0,
                         "weight_share": unscored["weight"] / total_weight if total_weight else 0.0},
            "labels": labels,
        }
