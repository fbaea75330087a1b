"""``curator report RUN_DIR``: a self-contained HTML page about a run (inline SVG, no network)."""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

from curator.plan import (BLEND_MANIFEST, CONTAMINATION_REPORT, DEDUP_SUMMARY, ENSEMBLE_SUMMARY, LLM_STATS, MANIFEST,
                          STATS_DIR, TOKEN_COUNTS)
from curator.runner import RUN_RECORD
from curator.stage import ShardStats
from curator.storage import filesystem, join, read_json


@dataclass
class StageSummary:
    """What the report shows of one stage."""

    stage_id: str
    uses: str
    kind: str
    shards_total: int
    shards_done: int = 0
    stats: ShardStats = field(default_factory=ShardStats)
    complete: bool = False
    dedup: dict[str, Any] | None = None            # _fuzzy_dedup.json of a dedup.fuzzy stage
    contamination: dict[str, Any] | None = None    # _contamination.json of a dedup.decontaminate stage
    llm: dict[str, Any] | None = None              # _llm_stats.json of a stage that calls an LLM
    ensemble: dict[str, Any] | None = None         # _ensemble.json of a classify.ensemble stage
    token_counts: dict[str, Any] | None = None     # _token_counts.json of a token counting stage
    blend: dict[str, Any] | None = None            # _blend.json of a blend stage


def collect(run_dir: str) -> tuple[dict[str, Any], list[StageSummary]]:
    """Read a run directory's run record and every stage's shard stats."""
    run = read_json(join(run_dir, RUN_RECORD))
    if not isinstance(run, dict):
        raise FileNotFoundError(f"{run_dir}: no {RUN_RECORD} (is this a curator run directory?)")
    summaries = []
    for stage in run.get("stages", []):
        summary = StageSummary(stage["id"], stage["uses"], stage["kind"], int(stage.get("shards", 0)))
        stage_dir = join(run_dir, stage["id"])
        manifest = read_json(join(stage_dir, MANIFEST))
        fingerprints = {s["name"]: s["fingerprint"] for s in manifest.get("shards", [])} if manifest else None
        fs, stats_dir = filesystem(join(stage_dir, STATS_DIR))
        if fs.isdir(stats_dir):
            for path in sorted(fs.ls(stats_dir, detail=False)):
                name = path.rsplit("/", 1)[-1]
                if not (name.startswith("part-") and name.endswith(".json")):
                    continue
                record = read_json(join(stage_dir, STATS_DIR, name))
                if not isinstance(record, dict):
                    continue
                if fingerprints is not None and fingerprints.get(name[:-5]) != record.get("fingerprint"):
                    continue
                summary.shards_done += 1
                summary.stats.add(ShardStats.from_json(record.get("stats", {})))
        summary.complete = manifest is not None and summary.shards_done >= summary.shards_total
        for attr, side_file in (("dedup", DEDUP_SUMMARY), ("contamination", CONTAMINATION_REPORT), ("llm", LLM_STATS),
                                ("ensemble", ENSEMBLE_SUMMARY), ("token_counts", TOKEN_COUNTS),
                                ("blend", BLEND_MANIFEST)):
            record = read_json(join(stage_dir, side_file))
            setattr(summary, attr, record if isinstance(record, dict) else None)
        summaries.append(summary)
    return run, summaries


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


BLEND_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac")
"""Colours of a blend's sources, in the order the manifest lists them (evenly spread hues after these)."""

EPOCH_CAP_TOLERANCE = 1e-6
"""Relative slack under which a source's effective epochs count as at its cap (the solver's floats)."""


def source_colors(names: list[str]) -> dict[str, str]:
    """One colour per source, so that a source has the same colour in every phase."""
    return {name: BLEND_COLORS[i] if i < len(BLEND_COLORS) else f"hsl({i * 137.508 % 360:.0f}, 55%, 50%)"
            for i, name in enumerate(names)}


def stacked_bar_svg(title: str, parts: list[tuple[str, float]], colors: dict[str, str]) -> str:
    """One horizontal bar split into parts by their share, as inline SVG, with a legend (share and amount)."""
    width, left, bar_y, bar_h, line_h = 760, 10, 30, 30, 20
    total = sum(value for _, value in parts) or 1
    legend, x, y = [], left, bar_y + bar_h + 22
    for name, value in parts:
        label = f"{name} {value / total:.1%} ({_human(value)})"
        item_w = 16 + 7 * len(label) + 18  # swatch, text at about 7 px a character, gap
        if x + item_w > width - left and x > left:
            x, y = left, y + line_h
        legend.append((name, label, x, y))
        x += item_w
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" role="img" '
        f'aria-label="{html.escape(title)}" class="plot">',
        f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    x = left
    for name, value in parts:
        w = (width - 2 * left) * value / total
        svg.append(f'<rect x="{x:.1f}" y="{bar_y}" width="{w:.1f}" height="{bar_h}" fill="{colors[name]}">'
                   f'<title>{html.escape(name)}: {value:,.0f} ({value / total:.1%})</title></rect>')
        if w > 48:
            svg.append(f'<text x="{x + w / 2:.1f}" y="{bar_y + bar_h * 0.67:.1f}" font-size="12" fill="#fff" '
                       f'text-anchor="middle">{value / total:.0%}</text>')
        x += w
    for name, label, lx, ly in legend:
        svg.append(f'<rect x="{lx}" y="{ly - 11}" width="12" height="12" fill="{colors[name]}"/>')
        svg.append(f'<text x="{lx + 16}" y="{ly}" font-size="12">{html.escape(label)}</text>')
    svg.append("</svg>")
    return "".join(svg)


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
                     + f"{_human(p.get('tokens', sum(v for _, v in composition)))} tokens by source")
            parts.append(stacked_bar_svg(title, composition, colors))
        parts.append(_blend_table(b, names))
    return "<h2>Blend</h2>" + "".join(parts) if parts else ""


def columns_svg(title: str, values: list[int], color: str) -> str:
    """A histogram as inline SVG: one vertical bar per value, labelled by its index (buckets 0-19)."""
    width, height, left, top_pad, bottom = 760, 190, 10, 30, 36
    slot = (width - 2 * left) / max(len(values), 1)
    top = max(values) if values and max(values) > 0 else 1
    plot_h = height - top_pad - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" class="plot">',
        f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, value in enumerate(values):
        h = plot_h * value / top
        x = left + i * slot
        y = top_pad + plot_h - h
        parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{slot - 4:.1f}" height="{max(h, 1):.1f}" '
                     f'fill="{color}"><title>{i}: {value:,}</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" font-size="12" '
                     f'text-anchor="middle">{i}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 28}" font-size="10" '
                     f'text-anchor="middle" fill="#555">{_human(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def funnel_svg(title: str, labels: list[str], values: list[int], color: str) -> str:
    """A horizontal bar chart as inline SVG."""
    width, bar_h, gap, left, right = 760, 26, 8, 170, 90
    height = 40 + len(labels) * (bar_h + gap)
    top = max(values) if values and max(values) > 0 else 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" class="plot">',
        f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 32 + i * (bar_h + gap)
        w = (width - left - right) * value / top
        parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.7:.1f}" font-size="13" text-anchor="end">'
                     f'{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="13">{_human(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(run: dict[str, Any], stages: list[StageSummary]) -> str:
    """The report page as a string."""
    labels = [s.stage_id for s in stages]
    docs = [s.stats.docs_out for s in stages]
    nbytes = [s.stats.bytes_out for s in stages]
    rows = []
    for s in stages:
        drops = ", ".join(f"{html.escape(k)}: {v:,}" for k, v in s.stats.drops.most_common()) or "-"
        rate = s.stats.docs_in / s.stats.seconds if s.stats.seconds else 0
        rows.append(
            f"<tr><td>{html.escape(s.stage_id)}</td><td><code>{html.escape(s.uses)}</code></td>"
            f"<td>{s.shards_done}/{s.shards_total}{'' if s.complete else ' (incomplete)'}</td>"
            f"<td>{s.stats.docs_in:,}</td><td>{s.stats.docs_out:,}</td><td>{_human(s.stats.bytes_out)}B</td>"
            f"<td>{s.stats.seconds:,.1f}</td><td>{rate:,.0f}</td><td>{drops}</td></tr>"
        )
    failures = run.get("failures") or []
    failure_html = (
        "<h2>Failures</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in failures) + "</ul>"
        if failures else ""
    )
    updated = dt.datetime.fromtimestamp(run.get("updated_at", 0), dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>curator run report: {html.escape(str(run.get('pipeline')))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, td:nth-child(2), td:last-child, th {{ text-align: left; }}
.status-complete {{ color: #17692b; }} .status-failed {{ color: #b00020; }}
svg.plot {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>Run report: {html.escape(str(run.get('pipeline')))}</h1>
<p>Status: <b class="status-{html.escape(str(run.get('status')))}">{html.escape(str(run.get('status')))}</b>
 &middot; pipeline file <code>{html.escape(str(run.get('pipeline_file')))}</code> &middot; updated {updated}</p>
{failure_html}
<h2>Funnel</h2>
{funnel_svg("Documents out of each stage", labels, docs, "#3b6ea8")}
{funnel_svg("Content bytes out of each stage (text, or raw body before extraction)", labels, nbytes, "#c26a2e")}
<h2>Stages</h2>
<table><tr><th>stage</th><th>uses</th><th>shards</th><th>docs in</th><th>docs out</th><th>bytes out</th>
<th>task seconds</th><th>docs/s per task</th><th>drops by reason</th></tr>
{''.join(rows)}
</table>
{_dedup_section(stages)}
{_llm_section(stages)}
{_ensemble_section(stages)}{_token_counts_section(stages)}{_blend_section(stages)}
</body></html>
"""


def write_report(run_dir: str, out: str | None = None) -> str:
    """Write the report for ``run_dir`` (default ``RUN_DIR/report.html``); return its path."""
    run, stages = collect(run_dir)
    path = out or join(run_dir, "report.html")
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "w", encoding="utf-8") as fh:
        fh.write(render(run, stages))
    return path
