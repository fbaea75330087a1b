"""The report's plots as inline SVG strings: horizontal bars, column histograms, a stacked bar.

Every plot is one ``<svg class="plot" role="img" aria-label=TITLE>`` element with its title drawn
inside it, so a page check can find each plot and what it should show. No script, font or image
is referenced: the page renders without a network.
"""

from __future__ import annotations

import html
import math

PLOT_WIDTH = 760
"""Width of every plot in CSS pixels (the page's column)."""

BLEND_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac")
"""Colours of a blend's sources, in the order the manifest lists them (evenly spread hues after these)."""

MAX_COLUMN_LABELS = 24
"""A histogram with more columns labels only every n-th one, so the labels do not overlap."""


def human(n: float) -> str:
    """A short number: 950 -> '950', 1234 -> '1.2K', 5_600_000 -> '5.6M'."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def source_colors(names: list[str]) -> dict[str, str]:
    """One colour per source, so that a source has the same colour in every phase."""
    return {name: BLEND_COLORS[i] if i < len(BLEND_COLORS) else f"hsl({i * 137.508 % 360:.0f}, 55%, 50%)"
            for i, name in enumerate(names)}


def _open(title: str, height: float) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{height:.0f}" role="img" '
        f'aria-label="{html.escape(title)}" class="plot">',
        f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]


def funnel_svg(title: str, labels: list[str], values: list[float], color: str,
               colors: list[str] | None = None, value_texts: list[str] | None = None) -> str:
    """A horizontal bar chart: one labelled bar per value, scaled to the largest.

    ``colors`` gives bars their own colour (default ``color`` for all); ``value_texts`` replaces the
    number printed after each bar (e.g. to mark an estimate).
    """
    bar_h, gap, left, right = 26, 8, 200, 110  # left: room for 24 characters at 13 px
    height = 40 + len(labels) * (bar_h + gap)
    top = max(values) if values and max(values) > 0 else 1
    parts = _open(title, height)
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 32 + i * (bar_h + gap)
        w = (PLOT_WIDTH - left - right) * value / top
        fill = colors[i] if colors else color
        text = value_texts[i] if value_texts else human(value)
        parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.7:.1f}" font-size="13" text-anchor="end">'
                     f'{html.escape(_clip(label, 24))}<title>{html.escape(label)}</title></text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{fill}">'
                     f'<title>{html.escape(label)}: {value:,.6g}</title></rect>')
        parts.append(f'<text x="{left + max(w, 1) + 6:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="13">'
                     f'{html.escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def columns_svg(title: str, values: list[int], color: str, labels: list[str] | None = None) -> str:
    """A histogram: one vertical bar per value, labelled by ``labels`` (default its index, as buckets 0-19)."""
    height, left, top_pad, bottom = 190, 10, 30, 36
    slot = (PLOT_WIDTH - 2 * left) / max(len(values), 1)
    top = max(values) if values and max(values) > 0 else 1
    plot_h = height - top_pad - bottom
    every = max(1, math.ceil(len(values) / MAX_COLUMN_LABELS))
    names = labels if labels is not None else [str(i) for i in range(len(values))]
    parts = _open(title, height)
    for i, value in enumerate(values):
        h = plot_h * value / top
        x = left + i * slot
        y = top_pad + plot_h - h
        pad = min(2, slot / 8)
        parts.append(f'<rect x="{x + pad:.1f}" y="{y:.1f}" width="{max(slot - 2 * pad, 1):.1f}" '
                     f'height="{max(h, 1):.1f}" fill="{color}">'
                     f'<title>{html.escape(names[i])}: {value:,}</title></rect>')
        if i % every:
            continue
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" font-size="12" '
                     f'text-anchor="middle">{html.escape(names[i])}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 28}" font-size="10" '
                     f'text-anchor="middle" fill="#555">{human(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar_svg(title: str, parts: list[tuple[str, float]], colors: dict[str, str]) -> str:
    """One horizontal bar split into parts by their share, as inline SVG, with a legend (share and amount)."""
    left, bar_y, bar_h, line_h = 10, 30, 30, 20
    total = sum(value for _, value in parts) or 1
    legend, x, y = [], left, bar_y + bar_h + 22
    for name, value in parts:
        label = f"{name} {value / total:.1%} ({human(value)})"
        item_w = 16 + 7 * len(label) + 18  # swatch, text at about 7 px a character, gap
        if x + item_w > PLOT_WIDTH - left and x > left:
            x, y = left, y + line_h
        legend.append((name, label, x, y))
        x += item_w
    svg = _open(title, y + 10)
    x = left
    for name, value in parts:
        w = (PLOT_WIDTH - 2 * left) * value / total
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
