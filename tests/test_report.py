"""The run report: every section from a hand-written run directory, opened in headless Chromium.

The run directory holds what a real run leaves (run.json, per-stage manifests, shard stats with
finish times, Parquet shards, and each section's side file), written here so the test stays fast.
Chromium (Debian's ``chromium``) opens the page with no network: every plot must have a size and
drawn shapes, the page must log no error and ask for nothing but itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.llm.client import LLMStats
from curator.llm.requests import LLMResult
from curator.plan import DEDUP_SUMMARY, ENSEMBLE_SUMMARY, LLM_STATS, MANIFEST, STATS_DIR, TOKEN_COUNTS, BLEND_MANIFEST
from curator.report import collect_run, write_report
from curator.report_collect import DEFAULT_BYTES_PER_TOKEN, token_figures
from curator.runner import RUN_RECORD
from tests.helpers.headless_chromium import HeadlessChromium, chromium_binary
from tests.test_report_blend import BLEND

T0 = 1_760_000_000.0
LABELS = ("high", "medium_high", "medium", "medium_low", "low")
LABEL_BUCKETS = {"high": [19, 19], "medium_high": [18, 18], "medium": [12, 17], "medium_low": [7, 11],
                 "low": [0, 6]}


def _text(i: int, words: int) -> str:
    return " ".join(f"word{(i * 7 + k) % 50}" for k in range(words))


def _stage(run: Path, stage_id: str, uses: str, kind: str, upstream: list[str], shards: list[dict[str, Any]],
           side: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one finished stage: its shards (``table``, ``stats``, ``start``, ``seconds``), stats, manifest."""
    directory = run / stage_id
    (directory / STATS_DIR).mkdir(parents=True)
    for i, shard in enumerate(shards):
        name = f"part-{i:05d}"
        pq.write_table(shard["table"], directory / f"{name}.parquet")
        stats = {"docs_in": shard["docs_in"], "docs_out": shard["table"].num_rows, "bytes_in": 0,
                 "bytes_out": shard["bytes_out"], "drops": shard.get("drops", {}), "seconds": shard["seconds"]}
        (directory / STATS_DIR / f"{name}.json").write_text(json.dumps({
            "stage": stage_id, "shard": name, "fingerprint": f"fp-{stage_id}-{i}", "rows": shard["table"].num_rows,
            "stats": stats, "worker": "test:1", "finished_at": T0 + shard["start"] + shard["seconds"]}))
    (directory / MANIFEST).write_text(json.dumps({
        "stage": stage_id, "shards": [{"name": f"part-{i:05d}", "fingerprint": f"fp-{stage_id}-{i}"}
                                      for i in range(len(shards))]}))
    for name, record in (side or {}).items():
        (directory / name).write_text(json.dumps(record))
    return {"id": stage_id, "uses": uses, "kind": kind, "from": upstream, "shards": len(shards)}


def _shards(columns: dict[str, Any], n: int, docs_in: int, drops: dict[str, int], start: float, seconds: float,
            bytes_per_row: int) -> list[dict[str, Any]]:
    """Two shards of ``n`` rows each."""
    out = []
    for i in range(2):
        table = pa.table({name: make(i * n, n) for name, make in columns.items()})
        out.append({"table": table, "docs_in": docs_in, "drops": drops, "start": start + i, "seconds": seconds,
                    "bytes_out": n * bytes_per_row})
    return out


def _ids(first: int, n: int) -> pa.Array:
    return pa.array([f"doc-{first + k}" for k in range(n)])


def _texts(first: int, n: int) -> pa.Array:
    return pa.array([_text(first + k, 40) for k in range(n)])


def _tokens(first: int, n: int) -> pa.Array:
    return pa.array([50 + (first + k) % 10 for k in range(n)], pa.int32())


def _llm_stats() -> dict[str, Any]:
    """Stats of a rephrasing stage, made by the client's own counters (latencies 0.05-3 s)."""
    stats = LLMStats()
    for k in range(40):
        ok = k % 10 != 9
        stats.record(LLMResult(text="x" if ok else None, finish_reason="stop" if ok else None,
                               tokens_in=120, tokens_out=80, latency_s=0.05 * 1.1 ** k,
                               error_kind=None if ok else "http_5xx", error=None if ok else "503",
                               attempts=1 + (k % 7 == 0), retries={"timeout": 1} if k % 7 == 0 else {}))
    stats.cache_hits = 12
    record = stats.to_json()
    record.update({"model": "fake-rephraser", "tasks": {"wikipedia": {"segments": 36, "kept": 34,
                                                                      "rejected": {"missing_prefix": 2}}}})
    return record


def _ensemble() -> dict[str, Any]:
    buckets = [3, 4, 5, 6, 5, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    labels = {}
    for label in LABELS:
        lo, hi = LABEL_BUCKETS[label]
        docs = sum(buckets[lo:hi + 1])
        labels[label] = {"buckets": [lo, hi], "documents": docs, "weight": docs * 55,
                         "document_share": docs / 48, "weight_share": docs / 48}
    return {
        "stage": "quality", "documents": 48, "weight": "tokens", "total_weight": 48 * 55,
        "thresholds": {"source": "calibrated", "search_rounds": 3}, "tokenizer": {"kind": "approximate"},
        "labels": labels, "unscored": {"documents": 0, "document_share": 0.0, "weight": 0, "weight_share": 0.0},
        "quality_bucket": {"documents": buckets}, "percentiles": [5 * k for k in range(1, 20)],
        "classifiers": {"fasttext": {"column": "ft_score", "invert": False,
                                     "thresholds": [k / 20 for k in range(1, 20)],
                                     "documents": 48, "null_scores": 0, "buckets": {"documents": buckets[::-1]}}},
    }


def write_run(run: Path) -> Path:
    """A finished run through every kind of section: source, filters, fuzzy dedup, quality, tokens, LLM, blend."""
    body = {"id": _ids, "body": lambda first, n: pa.array([b"<html>" * 40] * n)}
    text = {"id": _ids, "text": _texts}
    counted = {**text, "tokens": _tokens}
    stages = [
        _stage(run, "warc", "warc.read", "source", [], _shards(body, 30, 32, {"not_html": 2}, 0, 2.0, 240)),
        _stage(run, "extract", "text.extract", "map", ["warc"],
               _shards(text, 28, 30, {"too_short": 2}, 1, 1.5, 280)),
        _stage(run, "langid", "filter.langid", "map", ["extract"],
               _shards(text, 24, 28, {"lang_not_en": 3, "low_lang_score": 1}, 2, 0.5, 280)),
        _stage(run, "fuzzy_dedup", "dedup.fuzzy", "global", ["langid"],
               _shards(text, 24, 24, {}, 9, 0.4, 280),
               {DEDUP_SUMMARY: {"documents": 48, "bands": 20, "rows": 13, "candidate_links": 30, "clusters": 6,
                                "documents_in_clusters": 15, "duplicates_removed": 9, "cc_rounds": 2,
                                "cluster_sizes": {"2": 4, "3": 1, "4": 1}}}),
        _stage(run, "quality", "classify.ensemble", "global", ["fuzzy_dedup"],
               _shards(text, 24, 24, {}, 12, 0.6, 280), {ENSEMBLE_SUMMARY: _ensemble()}),
        _stage(run, "count", "tokens.count", "global", ["quality"],
               _shards(counted, 24, 24, {}, 14, 0.3, 280),
               {TOKEN_COUNTS: {"stage": "count", "tokenizer": {"path": "/models/tokenizer.json"}, "documents": 48,
                               "tokens": 2_604, "by": {}}}),
        _stage(run, "synth", "synth.rephrase", "map", ["count"],
               _shards(counted, 20, 24, {"llm_failed": 4}, 15, 6.0, 300), {LLM_STATS: _llm_stats()}),
        _stage(run, "blend", "blend.phases", "global", ["synth"], _shards(counted, 20, 20, {}, 22, 0.2, 300),
               {BLEND_MANIFEST: BLEND}),
    ]
    (run / RUN_RECORD).write_text(json.dumps({
        "pipeline": "report-test", "pipeline_file": "pipelines/report-test.yaml", "status": "complete",
        "started_at": T0, "updated_at": T0 + 30, "stages": stages, "outputs": []}))
    return run


def _plot_titles(page: str) -> list[str]:
    return re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)


EXPECTED_PLOTS = [
    "Documents out of each stage", "Tokens out of each stage (light bars: estimated)",
    "Content bytes out of each stage (text, or raw body before extraction)",
    "Documents dropped, by stage and reason", "Wall-clock seconds per stage",
    "Documents in per wall-clock second, per stage",
    "fuzzy_dedup: clusters by size (documents per cluster)",
    "synth: LLM requests", "synth: latency of answered requests (seconds, log-spaced buckets)",
    "quality: quality labels (tokens)", "quality: quality_bucket, the maximum over classifiers (documents)",
    "quality: fasttext buckets (documents)",
    "blend phase1: 60% of the budget, 600.0K tokens by source",
    "blend phase2: 40% of the budget, 400.0K tokens by source",
]


def test_every_section_is_on_the_page(tmp_path: Path) -> None:
    page = Path(write_report(str(write_run(tmp_path / "run")))).read_text()
    assert _plot_titles(page) == EXPECTED_PLOTS
    for heading in ("Funnel", "Drop reasons", "Time and throughput", "Deduplication and decontamination",
                    "LLM requests", "Quality buckets", "Token counts", "Blend", "Stages"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "Not in this run" not in page and 'class="note problem"' not in page
    # Nothing that would need a network: no script, stylesheet link, image or font reference.
    assert not re.search(r"<script|<link|<img|@import|url\(|src=", page)
    # Drops: one bar per (stage, reason), the total in the text.
    drops = page[page.index("<h2>Drop reasons</h2>"):page.index("<h2>Time and throughput</h2>")]
    assert "24 documents dropped in all" in drops
    assert re.findall(r"<title>([^<]*): (\d+)</title></rect>", drops) == [
        ("warc: not_html", "4"), ("extract: too_short", "4"), ("langid: lang_not_en", "6"),
        ("langid: low_lang_score", "2"), ("synth: llm_failed", "8")]
    # Wall-clock: warc's two shards ran from T0 to T0+3; the global quality stage from fuzzy_dedup's end
    # (T0+10.4) to its last shard's (T0+13.6).
    timing = page[page.index("<h2>Time and throughput</h2>"):]
    assert "<title>warc: 3</title>" in timing and re.search(r"<title>quality: 3\.2\d*</title>", timing)
    # LLM: the client's counts as bars, a latency histogram spanning the answered requests.
    assert "<title>sent: 40</title>" in page and "<title>failed: http_5xx: 4</title>" in page
    assert "<title>from the cache: 12</title>" in page and "<title>retried: timeout: 6</title>" in page


def test_tokens_are_counted_where_a_column_has_them_and_estimated_elsewhere(tmp_path: Path) -> None:
    report = collect_run(str(write_run(tmp_path / "run")))
    figures, ratio, source = token_figures(report.stages)
    by_stage = {s.stage_id: f for s, f in zip(report.stages, figures)}
    tokens = {s.stage_id: s.tokens_out for s in report.stages}
    assert tokens["count"] == sum(50 + k % 10 for k in range(48)) and tokens["langid"] is None
    assert not by_stage["count"].estimated and by_stage["count"].tokens == tokens["count"]
    # measured where both are known: content bytes over counted tokens of count, synth and blend
    counted = ("count", "synth", "blend")
    want_ratio = (sum(s.stats.bytes_out for s in report.stages if s.stage_id in counted)
                  / sum(tokens[s] for s in counted))
    assert ratio == pytest.approx(want_ratio) and source == "measured on count, synth, blend"
    assert by_stage["langid"].estimated and by_stage["langid"].tokens == pytest.approx(48 * 280 / want_ratio)
    assert by_stage["warc"].tokens is None  # raw bodies: no text, no tokens
    page = Path(write_report(str(tmp_path / "run"))).read_text()
    assert "No tokens for warc" in page and "estimated from content bytes" in page


def test_without_counted_tokens_the_estimate_says_it_is_assumed(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    record = json.loads((run / RUN_RECORD).read_text())
    record["stages"] = record["stages"][:3]
    (run / RUN_RECORD).write_text(json.dumps(record))
    report = collect_run(str(run))
    figures, ratio, source = token_figures(report.stages)
    assert ratio == DEFAULT_BYTES_PER_TOKEN and source.startswith("assumed")
    page = Path(write_report(str(run))).read_text()
    assert ("Not in this run: dedup cluster sizes (no stage wrote _fuzzy_dedup.json or _contamination.json); "
            "LLM request stats") in page


def test_damaged_inputs_become_notes_and_the_rest_renders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / "synth" / LLM_STATS).write_text("{not json")
    ensemble = json.loads((run / "quality" / ENSEMBLE_SUMMARY).read_text())
    del ensemble["labels"]["high"]["documents"]
    (run / "quality" / ENSEMBLE_SUMMARY).write_text(json.dumps(ensemble))
    (run / "langid" / STATS_DIR / "part-00001.json").write_text("")
    shutil.rmtree(run / "blend" / STATS_DIR)
    page = Path(write_report(str(run))).read_text()
    assert f"synth/{LLM_STATS} is not a JSON object; its section is left out" in page
    assert "section &#x27;Quality buckets&#x27; could not be drawn from this run&#x27;s files: KeyError" in page
    assert "stage langid: 1 shard stats file(s)" in page
    assert "<td>blend</td><td><code>blend.phases</code></td><td>0/2 (incomplete)</td>" in page
    assert "<h2>Funnel</h2>" in page and "<h2>Blend</h2>" in page and "<h2>Quality buckets</h2>" not in page


PLOT_CHECK = """
(() => Array.from(document.querySelectorAll('svg')).map(svg => {
  const box = svg.getBoundingClientRect();
  const shapes = Array.from(svg.querySelectorAll('rect, path, circle, line, polygon, polyline'));
  const drawn = shapes.filter(s => { const b = s.getBBox(); return b.width > 0 && b.height > 0; }).length;
  const texts = Array.from(svg.querySelectorAll('text')).filter(t => t.getComputedTextLength() > 0).length;
  return {label: svg.getAttribute('aria-label'), width: box.width, height: box.height, drawn: drawn,
          texts: texts, visible: getComputedStyle(svg).display !== 'none'};
}))()
"""

ERROR_PAGE = """<!DOCTYPE html><html><body><p>control</p>
<script>console.error("control error"); undefined_function();</script>
<img src="http://127.0.0.1:9/missing.png"></body></html>
"""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page_path = Path(write_report(str(write_run(tmp_path / "run"))))
    control = tmp_path / "control.html"
    control.write_text(ERROR_PAGE)
    binary = chromium_binary()
    assert binary is not None, "chromium is not installed: .ci/run and the README install it (apt-get install chromium)"
    with HeadlessChromium(binary) as browser:
        visit = browser.visit(page_path, PLOT_CHECK, screenshot=True)
        bad = browser.visit(control)
    # The checks can fail: the control page's console error, exception and outside request are all seen.
    assert any("control error" in e for e in bad.errors) and any("undefined_function" in e for e in bad.errors)
    assert "http://127.0.0.1:9/missing.png" in bad.requests

    assert visit.errors == [], visit.errors
    assert visit.requests == [page_path.resolve().as_uri()] and visit.failed_requests == []
    plots = visit.value
    assert [p["label"] for p in plots] == EXPECTED_PLOTS
    for plot in plots:
        assert plot["visible"] and plot["width"] >= 700 and plot["height"] >= 40, plot
        assert plot["drawn"] >= 1 and plot["texts"] >= 2, plot

    assert visit.screenshot is not None
    shot = tmp_path / "report.png"
    shot.write_bytes(visit.screenshot)
    width, height = _png_size(visit.screenshot)
    assert width >= 800 and height >= sum(p["height"] for p in plots)
    if os.environ.get("CURATOR_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["CURATOR_REPORT_SCREENSHOT"])
    sys.stderr.write(f"report screenshot: {shot}\n")
