"""``curator report RUN_DIR``: a self-contained HTML page about a run (inline SVG, no network)."""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Callable
from typing import Any

from curator.plan import BLEND_MANIFEST, CONTAMINATION_REPORT
from curator.report_collect import (RunReport, StageSummary, TokenFigure, collect, collect_run, token_figures,
                                    wall_seconds)
from curator.report_svg import columns_svg, funnel_svg, human, source_colors, stacked_bar_svg
from curator.storage import filesystem, join

log = logging.getLogger("curator.report")

__all__ = ["StageSummary", "collect", "collect_run", "columns_svg", "funnel_svg", "render", "source_colors",
           "stacked_bar_svg", "write_report"]


def _dedup_section(stages: list[StageSummary]) -> str:
    parts = []
    for s in stages:
        d = s.dedup
        if d:
            sizes = d.get("cluster_sizes", {})
            parts.append(
                f"<h3>{html.escape(s.stage_id)}</h3><p>{d.get('documents', 0):,} documents, "
                f"{d.get('bands')} bands x {d.get('rows')} rows; {d.get('candidate_links', 0):,} candidate links"
                + (f", {d.get('verified_pairs', 0):,} of {d.get('pairs_checked', 0):,} pairs verified"
                   if "verified_pairs" in d else "")
                + f"; {d.get('clusters', 0):,} clusters of near-duplicates holding "
                f"{d.get('documents_in_clusters', 0):,} documents, {d.get('duplicates_removed', 0):,} removed "
                f"({d.get('cc_rounds', 0)} component rounds).</p>"
            )
            if sizes:
                parts.append(funnel_svg(f"{s.stage_id}: clusters by size (documents per cluster)",
                                        [str(k) for k in sizes], [int(v) for v in sizes.values()], "#6a4c93"))
        c = s.contamination
        if c:
            rows = "".join(
                f"<tr><td>{html.escape(name)}</td><td>{b.get('items', 0):,}</td><td>{b.get('items_found', 0):,}</td>"
                f"<td>{b.get('docs_contaminated', 0):,}</td></tr>" for name, b in c.get("benchmarks", {}).items())
            parts.append(
                f"<h3>{html.escape(s.stage_id)}</h3><p>{c.get('docs_contaminated', 0):,} of "
                f"{c.get('docs_scanned', 0):,} documents contain a benchmark {c.get('ngram')}-gram "
                f"(mode {html.escape(str(c.get('mode')))}); items and documents in "
                f"<code>{html.escape(s.stage_id)}/{CONTAMINATION_REPORT}</code>.</p>"
                f"<table><tr><th>benchmark</th><th>items</th><th>items found</th><th>documents</th></tr>{rows}</table>"
            )
    return "<h2>Deduplication and decontamination</h2>" + "".join(parts) if parts else ""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _llm_section(stages: list[StageSummary]) -> str:
    parts = []
    for s in stages:
        st = s.llm
        if not st:
            continue
        lat = st.get("latency_s", {})
        failures = ", ".join(f"{html.escape(k)}: {v:,}" for k, v in st.get("failures", {}).items()) or "none"
        retries = ", ".join(f"{html.escape(k)}: {v:,}" for k, v in st.get("retries", {}).items()) or "none"
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{t.get('segments', 0):,}</td><td>{t.get('kept', 0):,}</td>"
            f"<td>{', '.join(f'{html.escape(r)}: {n:,}' for r, n in t.get('rejected', {}).items()) or '-'}</td></tr>"
            for name, t in st.get("tasks", {}).items())
        parts.append(
            f"<h3>{html.escape(s.stage_id)} ({html.escape(str(st.get('model')))})</h3>"
            f"<p>{st.get('requests', 0):,} requests sent ({st.get('attempts', 0):,} attempts), "
            f"{st.get('cache_hits', 0):,} answered from the cache; {st.get('successes', 0):,} answered, "
            f"failed: {failures}; retries: {retries}. Tokens in {st.get('tokens_in', 0):,}, out "
            f"{st.get('tokens_out', 0):,}. Latency p50 {_seconds(lat.get('p50'))} s, p90 {_seconds(lat.get('p90'))} s, "
            f"p99 {_seconds(lat.get('p99'))} s.{_llm_scope(st)}</p>"
            + (f"<table><tr><th>task</th><th>segments</th><th>kept</th><th>rejected by reason</th></tr>{rows}</table>"
               if rows else "")
            + _annotation_counts(st)
            + _cleanup_counts(st)
            + _llm_plots(s.stage_id, st)
        )
    return "<h2>LLM requests</h2>" + "".join(parts) if parts else ""


def _annotation_counts(st: dict[str, Any]) -> str:
    """An annotation stage's answers by status, score and unparseable reason (absent for other stages)."""
    if not st.get("statuses"):
        return ""

    def fmt(counts: dict[str, int]) -> str:
        return ", ".join(f"{html.escape(str(k))}: {v:,}" for k, v in counts.items()) or "none"

    return (f"<p>{st.get('documents', 0):,} documents annotated ({st.get('documents_truncated', 0):,} truncated). "
            f"Status: {fmt(st['statuses'])}; scores: {fmt(st.get('scores', {}))}; "
            f"unparseable: {fmt(st.get('unparseable_reasons', {}))}.</p>")


def _cleanup_counts(st: dict[str, Any]) -> str:
    """A math cleanup stage's pages and chunks by outcome, and its drops (absent for other stages)."""
    if "chunk_outcomes" not in st:
        return ""
    outcomes = ", ".join(f"{html.escape(str(k))}: {v:,}" for k, v in st["chunk_outcomes"].items()) or "none"
    drops = ", ".join(f"{html.escape(str(k))}: {v:,}" for k, v in (st.get("drops") or {}).items()) or "none"
    return (f"<p>{st.get('documents', 0):,} documents cleaned, {st.get('documents_kept', 0):,} kept, "
            f"{st.get('documents_no_useful_content', 0):,} with no useful content; {st.get('chunks', 0):,} chunks, "
            f"{st.get('chunks_no_useful_content', 0):,} answered NO USEFUL CONTENT. Chunks by outcome: {outcomes}; "
            f"documents dropped by reason: {drops}.</p>")


def _llm_scope(st: dict[str, Any]) -> str:
    """What the stage chose not to send: documents no task took, segments over the per-document cap."""
    notes = []
    if st.get("docs_unrouted"):
        notes.append(f"{st['docs_unrouted']:,} documents went to no task (their quality label is routed nowhere)")
    if st.get("segments_skipped"):
        notes.append(f"{st['segments_skipped']:,} segments were not sent (max_segments_per_document)")
    return (" " + "; ".join(notes) + ".") if notes else ""


QUALITY_LABELS = ("high", "medium_high", "medium", "medium_low", "low")
"""The ensemble's labels, best first (as classifiers.quality_labels defines them; curator imports no stage)."""


def _thresholds_source(e: dict[str, Any], stage_id: str) -> str:
    t = e.get("thresholds", {})
    if t.get("source") == "loaded":
        where = f"loaded from <code>{html.escape(str(t.get('loaded_from')))}</code>"
    else:
        where = f"calibrated on this data ({t.get('search_rounds', 0)} rounds of the distributed percentile search)"
    tok = e.get("tokenizer") or {}
    weight = html.escape(str(e.get("weight")))
    if tok.get("kind") == "approximate":
        weight += " (approximated: words and punctuation marks)"
    elif tok.get("kind") == "tokenizer.json":
        weight += f" (counted with <code>{html.escape(str(tok.get('path')))}</code>)"
    return (f"<p>{e.get('documents', 0):,} documents, weighted by {weight}: {e.get('total_weight', 0):,} in all. "
            f"Thresholds {where}; saved as <code>{html.escape(stage_id)}/_quality_thresholds.json</code>"
            + (f" and <code>{html.escape(str(t['saved_to']))}</code>" if t.get("saved_to") else "") + ".</p>")


def _ensemble_section(stages: list[StageSummary]) -> str:
    parts = []
    for s in stages:
        e = s.ensemble
        if not e:
            continue
        labels = e.get("labels", {})
        present = [lb for lb in QUALITY_LABELS if lb in labels]
        rows = "".join(
            f"<tr><td>{label}</td><td>{labels[label]['buckets'][0]}-{labels[label]['buckets'][1]}</td>"
            f"<td>{labels[label]['documents']:,}</td><td>{labels[label]['document_share']:.1%}</td>"
            f"<td>{labels[label]['weight']:,}</td><td>{labels[label]['weight_share']:.1%}</td></tr>"
            for label in present)
        un = e.get("unscored", {})
        rows += (f"<tr><td>no score</td><td>-</td><td>{un.get('documents', 0):,}</td>"
                 f"<td>{un.get('document_share', 0.0):.1%}</td><td>{un.get('weight', 0):,}</td>"
                 f"<td>{un.get('weight_share', 0.0):.1%}</td></tr>")
        weight = html.escape(str(e.get("weight")))
        parts.append(
            f"<h3>{html.escape(s.stage_id)}</h3>{_thresholds_source(e, s.stage_id)}"
            f"<table><tr><th>label</th><th>buckets</th><th>documents</th><th>share</th><th>{weight}</th>"
            f"<th>share of {weight}</th></tr>{rows}</table>"
            + funnel_svg(f"{s.stage_id}: quality labels ({e.get('weight')})", present,
                         [labels[lb]["weight"] for lb in present], "#2a9d8f")
            + columns_svg(f"{s.stage_id}: quality_bucket, the maximum over classifiers (documents)",
                          e.get("quality_bucket", {}).get("documents", []), "#264653")
        )
        head = "".join(f"<th>p{p}</th>" for p in e.get("percentiles", []))
        threshold_rows = []
        for name, c in e.get("classifiers", {}).items():
            parts.append(columns_svg(f"{s.stage_id}: {name} buckets (documents)",
                                     c.get("buckets", {}).get("documents", []), "#8a5a44"))
            cells = "".join(f"<td>{t:.4g}</td>" for t in c.get("thresholds", []))
            threshold_rows.append(
                f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(str(c.get('column')))}</code>"
                f"{' (inverted)' if c.get('invert') else ''}</td><td>{c.get('documents', 0):,}</td>"
                f"<td>{c.get('null_scores', 0):,}</td>{cells}</tr>")
        parts.append(f"<table><tr><th>classifier</th><th>column</th><th>scored</th><th>null</th>{head}</tr>"
                     f"{''.join(threshold_rows)}</table>")
    return "<h2>Quality buckets</h2>" + "".join(parts) if parts else ""


def _token_counts_section(stages: list[StageSummary]) -> str:
    parts = []
    for s in stages:
        t = s.token_counts
        if not t:
            continue
        docs, tokens = t.get("documents", 0), t.get("tokens", 0)
        tok = t.get("tokenizer") or {}
        sha = str(tok.get("sha256") or "")
        parts.append(
            f"<h3>{html.escape(s.stage_id)}</h3><p>{docs:,} documents, {tokens:,} tokens"
            + (f" ({tokens / docs:,.1f} per document)" if docs else "")
            + f", counted with <code>{html.escape(str(tok.get('path')))}</code>"
            + (f" (sha256 <code>{html.escape(sha[:12])}</code>)" if sha else "") + ".</p>")
        for column, groups in (t.get("by") or {}).items():
            rows = "".join(
                f"<tr><td>{html.escape(str(group))}</td><td>{g.get('documents', 0):,}</td>"
                f"<td>{_share(g.get('documents', 0), docs)}</td><td>{g.get('tokens', 0):,}</td>"
                f"<td>{_share(g.get('tokens', 0), tokens)}</td></tr>" for group, g in groups.items())
            parts.append(f"<table><tr><th>{html.escape(str(column))}</th><th>documents</th><th>share</th>"
                         f"<th>tokens</th><th>share</th></tr>{rows}</table>")
    return "<h2>Token counts</h2>" + "".join(parts) if parts else ""


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _percent(fraction: float) -> str:
    """0.6 -> '60%', 0.333 -> '33.3%'."""
    return f"{fraction * 100:.3g}%"


EPOCH_CAP_TOLERANCE = 1e-6
"""Relative slack under which a source's effective epochs count as at its cap (the solver's floats)."""


def _blend_sources(b: dict[str, Any]) -> list[str]:
    """The blend's source names: the manifest's order, then any that only a phase lists."""
    names = list(b.get("sources") or {})
    for phase in b.get("phases") or []:
        names += [n for n in phase.get("sources") or {} if n not in names]
    return names


def _epochs_cell(epochs: float | None, cap: float | None) -> str:
    if epochs is None:
        return "<td>-</td>"
    if cap is not None and epochs >= cap * (1 - EPOCH_CAP_TOLERANCE):
        return f'<td class="at-cap"><b>{epochs:.2f}</b> (at cap)</td>'
    return f"<td>{epochs:.2f}</td>"


def _number_cell(value: float | None, spec: str) -> str:
    return "<td>-</td>" if value is None else f"<td>{value:{spec}}</td>"


def _deviation(materialized: float, planned: float) -> str:
    return f"{(materialized - planned) / planned:+.2%}" if planned else "-"


def _blend_table(b: dict[str, Any], names: list[str]) -> str:
    """Per source: supply, quality weight, cap; per phase tokens and weight; epochs; materialised tokens."""
    sources, phases = b.get("sources") or {}, b.get("phases") or []
    materialized = [p for p in phases if any("materialized_tokens" in v for v in (p.get("sources") or {}).values())]
    head = ("<tr><th>source</th><th>supply tokens</th><th>quality weight</th><th>max epochs</th>"
            + "".join(f"<th>{html.escape(str(p.get('name')))} tokens</th><th>{html.escape(str(p.get('name')))} "
                      f"weight</th>" for p in phases)
            + "<th>effective epochs</th>"
            + "".join(f"<th>{html.escape(str(p.get('name')))} materialised</th><th>deviation</th>"
                      for p in materialized) + "</tr>")
    rows = []
    for name in names:
        src = sources.get(name) or {}
        cells = [f"<td>{html.escape(name)}</td>", _number_cell(src.get("tokens"), ","),
                 _number_cell(src.get("weight"), "g"), _number_cell(src.get("max_epochs"), "g")]
        for p in phases:
            ps = (p.get("sources") or {}).get(name)
            cells.append(f"<td>{ps.get('tokens', 0):,}</td><td>{ps.get('weight', 0.0):.4f}</td>" if ps
                         else "<td>-</td><td>-</td>")
        epochs = src.get("epochs")
        if epochs is None and any(name in (p.get("sources") or {}) for p in phases):
            epochs = sum((p.get("sources") or {}).get(name, {}).get("epochs", 0.0) for p in phases)
        cells.append(_epochs_cell(epochs, src.get("max_epochs")))
        for p in materialized:
            ps = (p.get("sources") or {}).get(name) or {}
            done = ps.get("materialized_tokens")
            cells.append(f"<td>{done:,}</td><td>{_deviation(done, ps.get('tokens', 0))}</td>" if done is not None
                         else "<td>-</td><td>-</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total = [f"<td>all</td><td>{sum(s.get('tokens', 0) for s in sources.values()):,}</td><td></td><td></td>"]
    for p in phases:
        ps = (p.get("sources") or {}).values()
        total.append(f"<td>{sum(v.get('tokens', 0) for v in ps):,}</td>"
                     f"<td>{sum(v.get('weight', 0.0) for v in ps):.4f}</td>")
    total.append("<td></td>")
    for p in materialized:
        ps = (p.get("sources") or {}).values()
        done = sum(v.get("materialized_tokens", 0) for v in ps)
        total.append(f"<td>{done:,}</td><td>{_deviation(done, sum(v.get('tokens', 0) for v in ps))}</td>")
    rows.append("<tr>" + "".join(total) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _blend_section(stages: list[StageSummary]) -> str:
    parts = []
    for s in stages:
        b = s.blend
        if not b:
            continue
        names = _blend_sources(b)
        colors = source_colors(names)
        phases = b.get("phases") or []
        budget = b.get("budget_tokens")
        state = ("shards materialised per phase" if b.get("materialized")
                 else "planned only (no shards materialised)")
        parts.append(
            f"<h3>{html.escape(s.stage_id)}</h3><p>Budget "
            + (f"{budget:,}" if isinstance(budget, (int, float)) else html.escape(str(budget)))
            + f" tokens in {len(phases)} phase{'s' if len(phases) != 1 else ''}, seed "
            f"{html.escape(str(b.get('seed')))}; {state}. Manifest <code>{html.escape(s.stage_id)}/"
            f"{BLEND_MANIFEST}</code>. Effective epochs in bold are at the source's cap.</p>")
        for p in phases:
            drawn = p.get("sources") or {}
            composition = [(n, float(drawn[n].get("tokens", 0))) for n in names if drawn.get(n, {}).get("tokens")]
            share = p.get("share")
            title = (f"{s.stage_id} {p.get('name')}: "
                     + (f"{_percent(share)} of the budget, " if isinstance(share, (int, float)) else "")
                     + f"{human(p.get('tokens', sum(v for _, v in composition)))} tokens by source")
            parts.append(stacked_bar_svg(title, composition, colors))
        parts.append(_blend_table(b, names))
    return "<h2>Blend</h2>" + "".join(parts) if parts else ""


def _funnel_section(stages: list[StageSummary]) -> str:
    """Documents, tokens and content bytes out of each stage."""
    labels = [s.stage_id for s in stages]
    figures, ratio, source = token_figures(stages)
    token_values = [f.tokens or 0.0 for f in figures]
    token_texts = [_token_text(f) for f in figures]
    token_colors = [TOKENS_ESTIMATED_COLOR if f.estimated else TOKENS_COLOR for f in figures]
    estimated = [html.escape(s.stage_id) for s, f in zip(stages, figures) if f.estimated]
    no_text = [html.escape(s.stage_id) for s, f in zip(stages, figures) if f.tokens is None]
    notes = []
    if estimated:
        notes.append(f"Tokens of {', '.join(estimated)} are estimated from content bytes at {ratio:.2f} bytes per "
                     f"token ({html.escape(source)}); the others are the sums of their <code>tokens</code> column.")
    if no_text:
        notes.append(f"No tokens for {', '.join(no_text)}: no text column in the output (raw records before "
                     "extraction), or no shard finished.")
    return ("<h2>Funnel</h2>"
            + funnel_svg("Documents out of each stage", labels, [s.stats.docs_out for s in stages], "#3b6ea8")
            + funnel_svg("Tokens out of each stage (light bars: estimated)", labels, token_values, TOKENS_COLOR,
                         colors=token_colors, value_texts=token_texts)
            + "".join(f'<p class="note">{n}</p>' for n in notes)
            + funnel_svg("Content bytes out of each stage (text, or raw body before extraction)", labels,
                         [s.stats.bytes_out for s in stages], "#c26a2e"))


TOKENS_COLOR = "#2f7d4f"
TOKENS_ESTIMATED_COLOR = "#9cc9a9"


def _token_text(figure: TokenFigure) -> str:
    if figure.tokens is None:
        return "no text"
    return f"~{human(figure.tokens)} (est.)" if figure.estimated else human(figure.tokens)


MAX_DROP_BARS = 30
"""The drop plot shows this many (stage, reason) bars, largest first within each stage; the rest as one bar."""


def _drops_section(stages: list[StageSummary]) -> str:
    """Dropped documents by stage and reason."""
    pairs = [(f"{s.stage_id}: {reason}", n) for s in stages for reason, n in s.stats.drops.most_common() if n]
    if not pairs:
        return '<h2>Drop reasons</h2><p class="note">No stage dropped a document.</p>'
    shown, rest = pairs[:MAX_DROP_BARS], pairs[MAX_DROP_BARS:]
    if rest:
        shown.append((f"{len(rest)} more reasons", sum(n for _, n in rest)))
    total = sum(n for _, n in pairs)
    return (f"<h2>Drop reasons</h2><p>{total:,} documents dropped in all, each counted under the stage and "
            "reason that dropped it (the table of stages lists every reason).</p>"
            + funnel_svg("Documents dropped, by stage and reason", [p for p, _ in shown], [n for _, n in shown],
                         "#b5473a"))


def _timing_section(stages: list[StageSummary]) -> str:
    """Wall-clock time and throughput per stage."""
    by_id = {s.stage_id: s for s in stages}
    timed = [(s, wall_seconds(s, by_id)) for s in stages]
    timed = [(s, w) for s, w in timed if w is not None]
    if not timed:
        return '<h2>Time and throughput</h2><p class="note">No shard records finish times: no timing to show.</p>'
    labels = [s.stage_id for s, _ in timed]
    rates = [s.stats.docs_in / w if w > 0 else 0.0 for s, w in timed]
    return ("<h2>Time and throughput</h2><p>Wall-clock time from a stage's first shard starting (a global stage: "
            "from its inputs being complete) to its last shard finishing; map stages overlap, as shards stream "
            "through them. Throughput is documents in per wall-clock second; the table of stages has it per "
            "task second too.</p>"
            + funnel_svg("Wall-clock seconds per stage", labels, [w for _, w in timed], "#7a5195",
                         value_texts=[_duration(w) for _, w in timed])
            + funnel_svg("Documents in per wall-clock second, per stage", labels, rates, "#ef8e3b",
                         value_texts=[f"{r:,.0f}/s" for r in rates]))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _llm_plots(stage_id: str, st: dict[str, Any]) -> str:
    """Request outcomes and the latency histogram of one LLM stage."""
    outcomes = [("sent", st.get("requests", 0)), ("answered", st.get("successes", 0)),
                ("from the cache", st.get("cache_hits", 0)), ("duplicates in a batch", st.get("deduplicated", 0))]
    outcomes += [(f"failed: {k}", v) for k, v in (st.get("failures") or {}).items()]
    outcomes += [(f"retried: {k}", v) for k, v in (st.get("retries") or {}).items()]
    plot = funnel_svg(f"{stage_id}: LLM requests", [k for k, _ in outcomes], [int(v or 0) for _, v in outcomes],
                      "#3a7ca5")
    histogram = st.get("latency_histogram") or {}
    counts = {int(k): int(v) for k, v in (histogram.get("counts") or {}).items()}
    if not counts:
        return plot
    floor, per_decade = float(histogram.get("floor_s", 1e-3)), int(histogram.get("buckets_per_decade", 20))
    buckets = list(range(min(counts), max(counts) + 1))
    labels = [_latency_label(floor if b == 0 else floor * 10 ** ((b - 0.5) / per_decade)) for b in buckets]
    return plot + columns_svg(f"{stage_id}: latency of answered requests (seconds, log-spaced buckets)",
                              [counts.get(b, 0) for b in buckets], "#5b8e7d", labels=labels)


def _latency_label(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.3g}s"


SECTIONS: tuple[tuple[str, str, Callable[[list[StageSummary]], str], str], ...] = (
    ("funnel", "Funnel", _funnel_section, ""),
    ("drops", "Drop reasons", _drops_section, ""),
    ("timing", "Time and throughput", _timing_section, ""),
    ("dedup", "Deduplication and decontamination", _dedup_section,
     "dedup cluster sizes (no stage wrote _fuzzy_dedup.json or _contamination.json)"),
    ("llm", "LLM requests", _llm_section, "LLM request stats (no stage wrote _llm_stats.json)"),
    ("quality", "Quality buckets", _ensemble_section,
     "quality-label histograms (no classify.ensemble stage wrote _ensemble.json)"),
    ("tokens", "Token counts", _token_counts_section, "token counts (no tokens.count stage wrote _token_counts.json)"),
    ("blend", "Blend", _blend_section, "blend composition (no blend stage wrote _blend.json)"),
)
"""The page's sections: anchor, heading, builder, and what to say when the run has nothing for it."""


def _sections(stages: list[StageSummary], notes: list[str]) -> tuple[str, list[tuple[str, str]], list[str]]:
    """The sections' HTML, (anchor, heading) of those present, and what is absent. A section that fails on
    a malformed side file becomes a note naming the error, so that the rest of the page still renders."""
    body, present, absent = [], [], []
    for anchor, heading, build, when_absent in SECTIONS:
        try:
            part = build(stages)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as exc:
            text = f"section {heading!r} could not be drawn from this run's files: {type(exc).__name__}: {exc}"
            log.warning("report: %s", text)
            notes.append(text)
            continue
        if part:
            body.append(f'<section id="{anchor}">{part}</section>')
            present.append((anchor, heading))
        elif when_absent:
            absent.append(when_absent)
    return "\n".join(body), present, absent


def render(run: dict[str, Any], stages: list[StageSummary], notes: list[str] | None = None) -> str:
    """The report page as a string (``notes``: problems met reading the run, shown at the top)."""
    notes = list(notes or [])
    rows = []
    by_id = {s.stage_id: s for s in stages}
    for s in stages:
        drops = ", ".join(f"{html.escape(k)}: {v:,}" for k, v in s.stats.drops.most_common()) or "-"
        rate = s.stats.docs_in / s.stats.seconds if s.stats.seconds else 0
        wall = wall_seconds(s, by_id)
        rows.append(
            f"<tr><td>{html.escape(s.stage_id)}</td><td><code>{html.escape(s.uses)}</code></td>"
            f"<td>{s.shards_done}/{s.shards_total}{'' if s.complete else ' (incomplete)'}</td>"
            f"<td>{s.stats.docs_in:,}</td><td>{s.stats.docs_out:,}</td><td>{human(s.stats.bytes_out)}B</td>"
            f"<td>{'-' if wall is None else f'{wall:,.1f}'}</td>"
            f"<td>{s.stats.seconds:,.1f}</td><td>{rate:,.0f}</td><td>{drops}</td></tr>"
        )
    body, present, absent = _sections(stages, notes)
    failures = run.get("failures") or []
    failure_html = (
        "<h2>Failures</h2><ul>" + "".join(f"<li>{html.escape(str(f))}</li>" for f in failures) + "</ul>"
        if failures else ""
    )
    notes_html = "".join(f'<p class="note problem">{html.escape(n)}</p>' for n in notes)
    absent_html = (f'<p class="note">Not in this run: {html.escape("; ".join(absent))}.</p>' if absent else "")
    contents = " &middot; ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h in
                                 [*present, ("stages", "Stages")])
    updated = dt.datetime.fromtimestamp(float(run.get("updated_at") or 0), dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>curator run report: {html.escape(str(run.get('pipeline')))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, td:nth-child(2), td:last-child, th {{ text-align: left; }}
.status-complete {{ color: #17692b; }} .status-failed {{ color: #b00020; }}
.note {{ color: #555; font-style: italic; }} .problem {{ color: #b00020; }}
svg.plot {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>Run report: {html.escape(str(run.get('pipeline')))}</h1>
<p>Status: <b class="status-{html.escape(str(run.get('status')))}">{html.escape(str(run.get('status')))}</b>
 &middot; pipeline file <code>{html.escape(str(run.get('pipeline_file')))}</code> &middot; updated {updated}</p>
<nav>{contents}</nav>
{notes_html}{absent_html}
{failure_html}
{body}
<section id="stages"><h2>Stages</h2>
<table><tr><th>stage</th><th>uses</th><th>shards</th><th>docs in</th><th>docs out</th><th>bytes out</th>
<th>wall seconds</th><th>task seconds</th><th>docs/s per task</th><th>drops by reason</th></tr>
{''.join(rows)}
</table></section>
</body></html>
"""


def write_report(run_dir: str, out: str | None = None) -> str:
    """Write the report for ``run_dir`` (default ``RUN_DIR/report.html``); return its path."""
    report: RunReport = collect_run(run_dir)
    path = out or join(run_dir, "report.html")
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "w", encoding="utf-8") as fh:
        fh.write(render(report.run, report.stages, report.notes))
    return path
