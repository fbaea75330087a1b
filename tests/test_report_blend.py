"""The report's Blend and Token counts sections, and the math cleanup counts, on a hand-written run directory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from curator.plan import BLEND_MANIFEST, LLM_STATS, MANIFEST, TOKEN_COUNTS
from curator.report import write_report
from curator.runner import RUN_RECORD

BLEND: dict[str, Any] = {
    "stage": "blend", "budget_tokens": 1_000_000, "seed": 7,
    "sources": {
        "crawl_high": {"tokens": 50_000, "documents": 120, "weight": 2.0, "max_epochs": 8, "epochs": 8.0,
                       "path": "/run/blend/sources/crawl_high"},
        "crawl_medium": {"tokens": 600_000, "documents": 900, "weight": 1.0, "max_epochs": 2, "epochs": 2 / 3,
                         "path": "/run/blend/sources/crawl_medium"},
        "math": {"tokens": 400_000, "documents": 300, "weight": 1.5, "max_epochs": 4, "epochs": 0.5,
                 "path": "/run/blend/sources/math"},
    },
    "phases": [
        {"name": "phase1", "share": 0.6, "tokens": 600_000, "sources": {
            "crawl_high": {"tokens": 200_000, "weight": 1 / 3, "epochs": 4.0, "materialized_tokens": 200_500},
            "crawl_medium": {"tokens": 400_000, "weight": 2 / 3, "epochs": 2 / 3, "materialized_tokens": 399_000}}},
        {"name": "phase2", "share": 0.4, "tokens": 400_000, "sources": {
            "crawl_high": {"tokens": 200_000, "weight": 0.5, "epochs": 4.0, "materialized_tokens": 200_000},
            "crawl_medium": {"tokens": 0, "weight": 0.0, "epochs": 0.0, "materialized_tokens": 0},
            "math": {"tokens": 200_000, "weight": 0.5, "epochs": 0.5, "materialized_tokens": 201_000}}},
    ],
    "materialized": True,
}

TOKENS: dict[str, Any] = {
    "stage": "count", "tokenizer": {"path": "/models/tok/tokenizer.json", "sha256": "0123456789abcdef" * 4},
    "documents": 1_320, "tokens": 1_050_000,
    "by": {"quality_label": {"high": {"documents": 120, "tokens": 50_000},
                             "medium": {"documents": 1_200, "tokens": 1_000_000}}},
}

CLEANUP: dict[str, Any] = {
    "model": "fake-model", "shards": 1, "requests": 12, "attempts": 12, "cache_hits": 0, "successes": 12,
    "failures": {}, "retries": {}, "tokens_in": 900, "tokens_out": 400,
    "latency_s": {"p50": 0.1, "p90": 0.2, "p99": 0.3},
    "documents": 5, "documents_kept": 3, "documents_no_useful_content": 1, "chunks": 12,
    "chunks_no_useful_content": 4, "chunk_outcomes": {"no_useful_content": 4, "text": 8},
    "drops": {"empty_answer": 1, "no_useful_content": 1},
}


def _write_run(run_dir: Path, side_files: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """A finished run of the given stages, each with a manifest and its side files ({stage: {file: json}})."""
    stages = []
    for stage_id, files in side_files.items():
        stage_dir = run_dir / stage_id
        stage_dir.mkdir(parents=True)
        (stage_dir / MANIFEST).write_text(json.dumps({"shards": []}))
        for name, record in files.items():
            (stage_dir / name).write_text(json.dumps(record))
        stages.append({"id": stage_id, "uses": f"test.{stage_id}", "kind": "global", "from": [], "shards": 0})
    (run_dir / RUN_RECORD).write_text(json.dumps({
        "pipeline": "blend-test", "pipeline_file": "blend.yaml", "status": "complete", "updated_at": 0,
        "stages": stages, "outputs": []}))
    return run_dir


def _cells(row_html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", row_html)


def _row(page: str, first_cell: str) -> list[str]:
    match = re.search(rf"<tr><td>{re.escape(first_cell)}</td>.*?</tr>", page)
    assert match, first_cell
    return _cells(match.group(0))


def test_blend_and_token_counts_sections(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"count": {TOKEN_COUNTS: TOKENS}, "blend": {BLEND_MANIFEST: BLEND},
                                        "cleanup": {LLM_STATS: CLEANUP}})
    page = Path(write_report(str(run))).read_text()

    # Blend: budget and seed, one stacked bar per phase, a source's colour the same in both.
    assert "<h2>Blend</h2>" in page
    assert "Budget 1,000,000 tokens in 2 phases, seed 7; shards materialised per phase." in page
    blend_html = page[page.index("<h2>Blend</h2>"):]
    svgs = re.findall(r"<svg.*?</svg>", blend_html)
    assert len(svgs) == 2
    assert 'aria-label="blend phase1: 60% of the budget, 600.0K tokens by source"' in svgs[0]
    assert 'aria-label="blend phase2: 40% of the budget, 400.0K tokens by source"' in svgs[1]
    fills = [{name: color for color, name in re.findall(r'fill="([^"]+)"><title>(\w+):', svg)} for svg in svgs]
    # crawl_medium draws no tokens in phase2: no segment there
    assert list(fills[0]) == ["crawl_high", "crawl_medium"] and list(fills[1]) == ["crawl_high", "math"]
    assert fills[0]["crawl_high"] == fills[1]["crawl_high"]
    assert len({*fills[0].values(), *fills[1].values()}) == 3
    # Segment widths follow the shares of the phase's tokens (740 px of bar).
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="30" width="([\d.]+)"', svgs[0])]
    assert widths == [246.7, 493.3]
    assert "crawl_high 33.3% (200.0K)" in svgs[0] and "math 50.0% (200.0K)" in svgs[1]

    # The table: supply, quality weight, cap, per-phase tokens and weight, epochs (marked at the cap),
    # materialised tokens and their deviation from the plan.
    assert "<th>phase1 tokens</th><th>phase1 weight</th><th>phase2 tokens</th><th>phase2 weight</th>" in page
    assert "<th>phase1 materialised</th><th>deviation</th><th>phase2 materialised</th>" in page
    assert _row(page, "crawl_high") == ["crawl_high", "50,000", "2", "8", "200,000", "0.3333", "200,000", "0.5000",
                                        "<b>8.00</b> (at cap)", "200,500", "+0.25%", "200,000", "+0.00%"]
    assert _row(page, "crawl_medium") == ["crawl_medium", "600,000", "1", "2", "400,000", "0.6667", "0", "0.0000",
                                          "0.67", "399,000", "-0.25%", "0", "-"]
    assert _row(page, "math") == ["math", "400,000", "1.5", "4", "-", "-", "200,000", "0.5000", "0.50",
                                  "-", "-", "201,000", "+0.50%"]
    assert _row(page, "all") == ["all", "1,050,000", "", "", "600,000", "1.0000", "400,000", "1.0000", "",
                                 "599,500", "-0.08%", "401,000", "+0.25%"]
    assert page.count("(at cap)") == 1

    # Token counts: totals, the tokenizer with a short hash, the per-label table.
    assert "<h2>Token counts</h2>" in page
    assert ("1,320 documents, 1,050,000 tokens (795.5 per document), counted with "
            "<code>/models/tok/tokenizer.json</code> (sha256 <code>0123456789ab</code>).") in page
    assert "<th>quality_label</th><th>documents</th><th>share</th><th>tokens</th><th>share</th>" in page
    assert _row(page, "high") == ["high", "120", "9.1%", "50,000", "4.8%"]
    assert _row(page, "medium") == ["medium", "1,200", "90.9%", "1,000,000", "95.2%"]

    # The math cleanup's own counts beside the client's.
    assert "<h2>LLM requests</h2>" in page and "12 requests sent" in page
    assert ("5 documents cleaned, 3 kept, 1 with no useful content; 12 chunks, 4 answered NO USEFUL CONTENT. "
            "Chunks by outcome: no_useful_content: 4, text: 8; documents dropped by reason: empty_answer: 1, "
            "no_useful_content: 1.") in page
    # The funnel's three plots (documents, tokens, bytes), the cleanup's requests, the two phase bars.
    assert page.count("<svg") == 6


def test_plan_only_blend_has_no_materialised_columns(tmp_path: Path) -> None:
    plan = json.loads(json.dumps(BLEND))
    del plan["materialized"]
    for phase in plan["phases"]:
        for source in phase["sources"].values():
            del source["materialized_tokens"]
    page = Path(write_report(str(_write_run(tmp_path / "run", {"blend": {BLEND_MANIFEST: plan}})))).read_text()
    assert "planned only (no shards materialised)" in page and "materialised</th>" not in page
    assert _row(page, "math") == ["math", "400,000", "1.5", "4", "-", "-", "200,000", "0.5000", "0.50"]


def test_run_without_blend_or_token_counts_has_no_such_sections(tmp_path: Path) -> None:
    annotation = {k: v for k, v in CLEANUP.items() if k not in ("chunk_outcomes", "drops", "documents_kept")}
    run = _write_run(tmp_path / "run", {"filter": {}, "annotate": {LLM_STATS: annotation}})
    page = Path(write_report(str(run))).read_text()
    assert "<h2>Blend</h2>" not in page and "<h2>Token counts</h2>" not in page
    assert "<h2>LLM requests</h2>" in page and "documents cleaned" not in page
    assert page.count("<svg") == 4  # the funnel's three plots and the annotation's requests
