"""What ``curator report`` reads of a run directory: the run record, shard stats, side files, token counts.

Nothing here fails on a missing or damaged input: what cannot be read becomes a note that the page
shows (and a warning in the log), so a report of a half-finished or damaged run still opens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.plan import (BLEND_MANIFEST, CONTAMINATION_REPORT, DEDUP_SUMMARY, ENSEMBLE_SUMMARY, LLM_STATS, MANIFEST,
                          STATS_DIR, TOKEN_COUNTS)
from curator.runner import RUN_RECORD
from curator.stage import ShardStats
from curator.storage import filesystem, join, read_json

log = logging.getLogger("curator.report")

TOKENS_COLUMN = "tokens"
"""The integer column a token counting stage adds (``tokens.count``'s default ``output``); the report sums it."""
TEXT_COLUMN = "text"
DEFAULT_BYTES_PER_TOKEN = 4.0
"""UTF-8 bytes of text per token when no stage of the run counted tokens (typical of BPE tokenizers on
English web text); estimates made with it are marked as such on the page."""

SIDE_FILES = (("dedup", DEDUP_SUMMARY), ("contamination", CONTAMINATION_REPORT), ("llm", LLM_STATS),
              ("ensemble", ENSEMBLE_SUMMARY), ("token_counts", TOKEN_COUNTS), ("blend", BLEND_MANIFEST))
"""StageSummary attribute and the side file beside a stage's shards it is read from."""


@dataclass
class StageSummary:
    """What the report shows of one stage."""

    stage_id: str
    uses: str
    kind: str
    shards_total: int
    upstream: list[str] = field(default_factory=list)
    shards_done: int = 0
    stats: ShardStats = field(default_factory=ShardStats)
    complete: bool = False
    shard_names: list[str] = field(default_factory=list)  # current shards (stats with the expected fingerprint)
    first_start: float | None = None                      # earliest shard start (finished_at - task seconds)
    last_finish: float | None = None                      # latest shard finished_at
    tokens_out: int | None = None                         # sum of the output's ``tokens`` column, if it has one
    has_text: bool = False                                # the output has a ``text`` column
    dedup: dict[str, Any] | None = None            # _fuzzy_dedup.json of a dedup.fuzzy stage
    contamination: dict[str, Any] | None = None    # _contamination.json of a dedup.decontaminate stage
    llm: dict[str, Any] | None = None              # _llm_stats.json of a stage that calls an LLM
    ensemble: dict[str, Any] | None = None         # _ensemble.json of a classify.ensemble stage
    token_counts: dict[str, Any] | None = None     # _token_counts.json of a token counting stage
    blend: dict[str, Any] | None = None            # _blend.json of a blend stage


@dataclass
class RunReport:
    """A run as the report sees it: its record, its stages, and notes on what could not be read."""

    run: dict[str, Any]
    stages: list[StageSummary]
    notes: list[str] = field(default_factory=list)


def collect_run(run_dir: str) -> RunReport:
    """Read a run directory's run record, every stage's shard stats, side files and token counts."""
    run = read_json(join(run_dir, RUN_RECORD))
    if not isinstance(run, dict):
        raise FileNotFoundError(f"{run_dir}: no {RUN_RECORD} (is this a curator run directory?)")
    report = RunReport(run, [])
    for stage in run.get("stages", []):
        try:
            summary = StageSummary(str(stage["id"]), str(stage.get("uses", "?")), str(stage.get("kind", "?")),
                                   int(stage.get("shards", 0)), list(stage.get("from") or []))
        except (KeyError, TypeError, ValueError) as exc:
            _note(report, f"{run_dir}/{RUN_RECORD}: a stage entry without a usable id or shard count ({exc!r})")
            continue
        _read_stage(join(run_dir, summary.stage_id), summary, report)
        report.stages.append(summary)
    return report


def collect(run_dir: str) -> tuple[dict[str, Any], list[StageSummary]]:
    """The run record and stage summaries of :func:`collect_run` (without its notes)."""
    report = collect_run(run_dir)
    return report.run, report.stages


def _note(report: RunReport, text: str) -> None:
    log.warning("report: %s", text)
    report.notes.append(text)


def _read_stage(stage_dir: str, summary: StageSummary, report: RunReport) -> None:
    manifest = read_json(join(stage_dir, MANIFEST))
    manifest = manifest if isinstance(manifest, dict) else None
    fingerprints = {s["name"]: s["fingerprint"] for s in manifest.get("shards", [])} if manifest else None
    fs, stats_dir = filesystem(join(stage_dir, STATS_DIR))
    unreadable = 0
    if fs.isdir(stats_dir):
        for path in sorted(fs.ls(stats_dir, detail=False)):
            name = path.rsplit("/", 1)[-1]
            if not (name.startswith("part-") and name.endswith(".json")):
                continue
            record = read_json(join(stage_dir, STATS_DIR, name))
            if not isinstance(record, dict):
                unreadable += 1
                continue
            if fingerprints is not None and fingerprints.get(name[:-5]) != record.get("fingerprint"):
                continue
            stats = ShardStats.from_json(record.get("stats", {}))
            summary.shards_done += 1
            summary.shard_names.append(name[:-5])
            summary.stats.add(stats)
            finished = record.get("finished_at")
            if isinstance(finished, (int, float)):
                start = finished - stats.seconds
                summary.first_start = start if summary.first_start is None else min(summary.first_start, start)
                summary.last_finish = finished if summary.last_finish is None else max(summary.last_finish, finished)
    if unreadable:
        _note(report, f"stage {summary.stage_id}: {unreadable} shard stats file(s) in {stage_dir}/{STATS_DIR} "
                      "are not valid JSON records; those shards are not counted")
    summary.complete = manifest is not None and summary.shards_done >= summary.shards_total
    for attr, side_file in SIDE_FILES:
        path = join(stage_dir, side_file)
        record = read_json(path)
        if isinstance(record, dict):
            setattr(summary, attr, record)
        elif _exists(path):
            _note(report, f"stage {summary.stage_id}: {path} is not a JSON object; its section is left out")
    _read_output_columns(stage_dir, summary, report)


def _exists(path: str) -> bool:
    fs, fs_path = filesystem(path)
    return bool(fs.exists(fs_path))


def _read_output_columns(stage_dir: str, summary: StageSummary, report: RunReport) -> None:
    """Whether the stage's output has text, and the sum of its ``tokens`` column if it has one."""
    if not summary.shard_names:
        return
    fs, root = filesystem(stage_dir)
    first = f"{root}/{summary.shard_names[0]}.parquet"
    try:
        with fs.open(first, "rb") as fh:
            schema = pq.ParquetFile(fh).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        _note(report, f"stage {summary.stage_id}: cannot read the schema of {first}: {exc}")
        return
    summary.has_text = TEXT_COLUMN in schema.names
    if TOKENS_COLUMN not in schema.names or not pa.types.is_integer(schema.field(TOKENS_COLUMN).type):
        return
    total = 0
    for name in summary.shard_names:
        path = f"{root}/{name}.parquet"
        try:
            with fs.open(path, "rb") as fh:
                column = pq.ParquetFile(fh).read(columns=[TOKENS_COLUMN]).column(0)
        except (OSError, pa.ArrowException, KeyError) as exc:
            _note(report, f"stage {summary.stage_id}: cannot read column {TOKENS_COLUMN!r} of {path}: {exc}; "
                          "its tokens are estimated")
            return
        total += int(pc.sum(column).as_py() or 0)
    summary.tokens_out = total


@dataclass(frozen=True)
class TokenFigure:
    """Tokens out of one stage: counted (summed from its ``tokens`` column), estimated, or unknown."""

    tokens: float | None
    estimated: bool


def token_figures(stages: list[StageSummary]) -> tuple[list[TokenFigure], float, str]:
    """Tokens out of each stage, the bytes per token used for estimates, and where that ratio comes from.

    Stages whose output has a ``tokens`` column are counted exactly. Other stages with text are
    estimated from their content bytes, at the bytes per token measured where both are known (or
    :data:`DEFAULT_BYTES_PER_TOKEN`); stages without text (raw records before extraction) have none.
    """
    counted = [s for s in stages if s.tokens_out and s.stats.bytes_out]
    if counted:
        ratio = sum(s.stats.bytes_out for s in counted) / sum(s.tokens_out or 0 for s in counted)
        source = f"measured on {', '.join(s.stage_id for s in counted)}"
    else:
        ratio, source = DEFAULT_BYTES_PER_TOKEN, "assumed (no stage of this run counted tokens)"
    figures = []
    for s in stages:
        if s.tokens_out is not None:
            figures.append(TokenFigure(float(s.tokens_out), False))
        elif s.has_text:
            figures.append(TokenFigure(s.stats.bytes_out / ratio, True))
        else:
            figures.append(TokenFigure(None, False))
    return figures, ratio, source


def wall_seconds(summary: StageSummary, by_id: dict[str, StageSummary]) -> float | None:
    """Wall-clock seconds of a stage: from its first shard's start (a global stage: from the last upstream
    shard's finish, when it could start) to its last shard's finish; None without finish times."""
    if summary.last_finish is None or summary.first_start is None:
        return None
    start = summary.first_start
    if summary.kind == "global":
        ups = [by_id[u].last_finish for u in summary.upstream if u in by_id and by_id[u].last_finish is not None]
        if ups:
            start = min(start, max(ups))
    return max(summary.last_finish - start, 0.0)
