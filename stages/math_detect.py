"""Math page detection: cheap markers of math in raw HTML, a score, and the ``math.detect`` filter.

Everything is found with regular expressions over the HTML string, with no parse, and only over the
first ``max_chars`` characters (2,000,000 by default; Common Crawl truncates bodies at 1 MiB, so
this is the whole page nearly always). A page cut there is marked ``truncated``.

Markers, in three groups:

* **Libraries** (flags): MathJax (a script ``src`` naming mathjax, ``MathJax.Hub.Config``,
  ``window.MathJax =``, ``MathJax = {``, ``text/x-mathjax-config``), KaTeX (``katex.min.css`` /
  ``katex.js`` / ``renderMathInElement``), AsciiMath (``asciimath2jax``, ``input/asciimath``, the
  ``AM_*`` MathJax configs, ``class="asciimath"``). A library alone is not math: many themes load
  MathJax on every page.
* **Formulas in markup** (counts): ``<math>`` elements (MathML), MathJax v2
  ``<script type="math/tex">`` (and ``; mode=display``), rendered output (``<mjx-container>``,
  ``class="MathJax"``, ``class="katex"``), and math images: an ``<img>`` whose ``alt`` reads as TeX
  (``\\frac``, ``^{``, ``\\displaystyle``, ...), WordPress ``class="latex"``, ``/latex.php?latex=``,
  ``latex.codecogs.com``, QuickLaTeX, Google Chart TeX, mimetex/mathtex CGI.
* **TeX in text** (counts), looked for only in the page text: ``<script>``, ``<style>``,
  comments, ``<pre>``, ``<code>``, ``<textarea>`` (MathJax skips the last four too, and scripts
  are full of ``$`` and ``\\(``) and ``<math>`` elements (counted above; their TeX annotations
  would count twice) are removed first, then the tags. Counted: ``\\(..\\)``, ``\\[..\\]``,
  ``$$..$$`` (content must hold one of ``\\ ^ _ = { }`` or an operator between two operands, so
  that "$$ - $$$" price ranges do not count), BBCode ``[tex]``/``[itex]``/``[latex]``/``[math]``,
  display environments (``\\begin{equation|align|gather|...}``) and ``$..$``. A single-dollar
  span counts only under pandoc's rule (no space just inside either dollar, the closing one not
  followed by a digit), when it holds ``\\``, ``^``, ``_`` or ``=``, and when it does not start
  with an amount followed by a space: "$5 and $10" is currency, "$x^2$" is math. Finally, TeX
  commands left outside all delimiters (``\\frac``, ``\\sqrt``, ``\\alpha``, ...) are counted:
  forums that render client-side with their own delimiters still show them.

The score (float32, 0..1) is ``1 - exp(-E / 2)`` of an evidence sum ``E``:

* ``formulas = max(rendered, mathml + script_tex, math_images)`` (these are alternative renderings
  of the same formulas, so the largest is the estimate of how many there are),
* ``+ (tex_display + tex_inline + tex_bbcode + tex_environments + 0.5 * tex_dollar)``, times 0.6
  when no library is loaded (TeX source needs a renderer; without one it may be text about TeX),
* ``+ 0.2 * min(tex_commands, 20)``,
* ``+ 1`` when a library is loaded and ``E > 0``; ``0.2`` when a library is loaded and nothing
  else is found.

So: a library alone scores 0.10; a library and one formula 0.63; two MathML formulas without a
library 0.63; three TeX formulas without a library 0.59; a library and five formulas 0.95; five
bare ``\\frac``-like commands 0.39, ten 0.63. The default ``min_score`` of 0.5 therefore keeps pages
with a library and a formula, two formulas in markup, three delimited TeX formulas, or about seven
bare TeX commands.

``math_markers`` is a string listing what was found, e.g.
``"mathjax,mathml:13,rendered:13,tex_inline:4"``: the flags first, then ``name:count`` for each
count above zero, then ``truncated`` if the page was cut. ``""`` means nothing was found.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from curator.expressions import RowCondition
from curator.filter_stage import FilterStage
from curator.stage import DROP_REASON

REASON_NOT_MATH = "not_math"
REASON_NO_HTML = "no_html"
DEFAULT_MAX_CHARS = 2_000_000
DEFAULT_MIN_SCORE = 0.5

_I = re.IGNORECASE

# ---- libraries (searched in the raw HTML, scripts included)
_MATHJAX_LIB = re.compile(
    r"""<script\b[^<>]*\bsrc\s*=\s*["']?[^"'\s<>]*mathjax"""
    r"""|MathJax\.Hub\.Config|window\.MathJax\s*=|\bMathJax\s*=\s*\{|text/x-mathjax-config""", _I)
_KATEX_LIB = re.compile(r"""katex(?:\.min)?\.(?:css|js|mjs)\b|renderMathInElement|auto-render(?:\.min)?\.js""", _I)
_ASCIIMATH_LIB = re.compile(
    r"""asciimath2jax|input/asciimath|config=AM_|\bASCIIMathML(?:\.js)?\b|class\s*=\s*["']asciimath["']""", _I)

# ---- formulas in markup
_MATHML = re.compile(r"<(?:[a-z][\w-]*:)?math[\s>/]", _I)
_SCRIPT_TEX = re.compile(r"""<script\b[^<>]*\btype\s*=\s*["']?(?:math|text)/tex(;\s*mode\s*=\s*display)?""", _I)
_MJX_CONTAINER = re.compile(r"<mjx-container\b", _I)
_MATHJAX_RENDERED = re.compile(r"""class\s*=\s*["'](?:[^"'<>]*\s)?MathJax(?:_CHTML|_SVG)?[\s"']""")
_KATEX_RENDERED = re.compile(r"""class\s*=\s*["']katex["']""")
_IMG = re.compile(r"<img\b[^<>]*>", _I)
_IMG_MATH_SOURCE = re.compile(
    r"""latex\.codecogs\.com|/latex\.php\?latex=|quicklatex\.com|chart\.googleapis\.com/chart\?[^"'\s>]*cht=tx"""
    r"""|mime?tex\.cgi|mathtex\.cgi"""
    r"""|\bclass\s*=\s*["'](?:[^"']*\s)?(?:latex|tex|ql-img-[\w-]*formula|mwe-math-fallback-image[\w-]*)["'\s]""", _I)
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", _I)
_TEX_COMMAND_NAMES = (
    "frac|dfrac|tfrac|sqrt|sum|prod|int|iint|oint|lim|infty|partial|nabla|cdot|cdots|ldots|times|div|pm|mp"
    "|leq?|geq?|neq|approx|equiv|sim|propto|subseteq|subset|supset|cup|cap|forall|exists|rightarrow|Rightarrow"
    "|leftrightarrow|mapsto|to|in|notin|alpha|beta|gamma|Gamma|delta|Delta|epsilon|varepsilon|zeta|eta|theta"
    "|Theta|lambda|Lambda|mu|nu|xi|pi|Pi|rho|sigma|Sigma|tau|phi|varphi|Phi|chi|psi|Psi|omega|Omega"
    "|mathbb|mathbf|mathrm|mathcal|mathsf|operatorname|left|right|binom|overline|hat|vec|displaystyle"
    "|sin|cos|tan|log|ln|exp|det|max|min|sup|inf|text")
_TEX_COMMAND = re.compile(r"\\(?:" + _TEX_COMMAND_NAMES + r")(?![A-Za-z])")
_TEX_LIKE_ALT = re.compile(r"\\(?:" + _TEX_COMMAND_NAMES + r"|begin)(?![A-Za-z])|[\^_]\{")

# ---- TeX in text (searched after scripts, styles, code and tags are removed)
_BLOCK_OPEN = re.compile(r"<(script|style|pre|code|textarea|(?:[a-z][\w-]*:)?math)[\s>/]|<!--", _I)
_TAG = re.compile(r"<[^<>]*>")  # [^<>], not [^>]: a run of unclosed '<' must not cost quadratic time
_ENVIRONMENT_NAMES = "equation|align|gather|multline|eqnarray|displaymath|flalign|alignat|math"
# Each span's content may not hold its own opener, so a page of unclosed openers costs linear time.
_TEX_SPAN = re.compile(
    r"(?P<display>\$\$(?P<dd>[^$]{1,5000}?)\$\$|\\\[(?P<db>(?:[^\\]|\\[^\[]){1,5000}?)\\\])"
    r"|(?P<inline>\\\((?:[^\\]|\\[^(]){1,1000}?\\\))"
    r"|(?P<environment>\\begin\{(?P<env>" + _ENVIRONMENT_NAMES + r")\*?\}"
    r"(?:(?!\\begin\{(?:" + _ENVIRONMENT_NAMES + r")\*?\}).){0,10000}?\\end\{(?P=env)\*?\})"
    r"|(?P<bbcode>\[(?P<bbtag>i?tex|latex|math)\](?:(?!\[(?:i?tex|latex|math)\]).){1,5000}?\[/(?P=bbtag)\])"
    r"|(?P<dollar>(?<![\\$])\$(?=[^\s$])(?P<dl>[^$]{1,300}?)(?<=[^\s\\])\$(?![\d$]))",
    re.DOTALL)
_DISPLAY_TEX_CHARS = re.compile(r"[\\^_={}]|\w\s*[-+*/<>]\s*\w")
_DOLLAR_TEX_CHARS = re.compile(r"[\\^_=]")
_CURRENCY_START = re.compile(r"\d[\d,.]*(?:[kKmMbB]|bn|million|billion)?\s")


@dataclass(frozen=True)
class MathMarkers:
    """What :func:`math_markers` found in one page: library flags and counts of formulas by kind."""

    mathjax: bool = False
    katex: bool = False
    asciimath: bool = False
    mathml: int = 0
    script_tex: int = 0
    script_tex_display: int = 0
    rendered: int = 0
    math_images: int = 0
    tex_display: int = 0
    tex_inline: int = 0
    tex_dollar: int = 0
    tex_bbcode: int = 0
    tex_environments: int = 0
    tex_commands: int = 0
    truncated: bool = False

    _FLAGS: ClassVar[tuple[str, ...]] = ("mathjax", "katex", "asciimath")

    @property
    def has_library(self) -> bool:
        """Whether the page loads (or configures) a math rendering library."""
        return self.mathjax or self.katex or self.asciimath

    def evidence(self) -> float:
        """The evidence sum ``E`` the score is made of (see the module docstring)."""
        formulas = float(max(self.rendered, self.mathml + self.script_tex, self.math_images))
        tex = (self.tex_display + self.tex_inline + self.tex_bbcode + self.tex_environments
               + 0.5 * self.tex_dollar)
        if not self.has_library:
            tex *= 0.6
        total = formulas + tex + 0.2 * min(self.tex_commands, 20)
        if self.has_library:
            total += 1.0 if total > 0 else 0.2
        return total

    def score(self) -> float:
        """The math score in 0..1: ``1 - exp(-E / 2)``."""
        return 1.0 - math.exp(-self.evidence() / 2.0)

    def describe(self) -> str:
        """The audit string: flags, then ``name:count`` for counts above zero, then ``truncated``."""
        values = asdict(self)
        parts = [name for name in self._FLAGS if values[name]]
        parts += [f"{name}:{value}" for name, value in values.items()
                  if name not in self._FLAGS and name != "truncated" and value]
        if self.truncated:
            parts.append("truncated")
        return ",".join(parts)


def _count_math_images(html: str) -> int:
    count = 0
    for tag in _IMG.findall(html):
        if _IMG_MATH_SOURCE.search(tag):
            count += 1
            continue
        alt = _ALT.search(tag)
        if alt and _TEX_LIKE_ALT.search(alt.group(1) or alt.group(2) or ""):
            count += 1
    return count


def _without_blocks(html: str) -> str:
    """``html`` without scripts, styles, comments, pre, code, textarea and MathML elements.

    A block's end is found with ``str.find`` on a lower-cased copy; an unclosed block runs to the
    end of the page. Linear in the page length whatever the markup.
    """
    lower = html.lower()
    pieces: list[str] = []
    pos = 0
    while True:
        match = _BLOCK_OPEN.search(html, pos)
        if match is None:
            pieces.append(html[pos:])
            break
        pieces.append(html[pos:match.start()])
        closer = "-->" if match.group(1) is None else f"</{match.group(1).lower()}"
        end = lower.find(closer, match.end())
        if end < 0:
            break
        gt = lower.find(">", end + len(closer) - 1)
        pos = len(html) if gt < 0 else gt + 1
        pieces.append(" ")
    return "".join(pieces)


def page_text(html: str) -> str:
    """The text TeX delimiters are looked for in: no scripts, styles, comments, pre, code, textarea,
    MathML, tags."""
    return _TAG.sub(" ", _without_blocks(html))


def _tex_in_text(text: str) -> dict[str, int]:
    """Counts of delimited TeX spans, environments and bare TeX commands in page text."""
    counts = {"tex_display": 0, "tex_inline": 0, "tex_dollar": 0, "tex_bbcode": 0, "tex_environments": 0}

    def take(match: re.Match[str]) -> str:
        if match.group("display") is not None:
            content = match.group("dd")
            if content is not None and not _DISPLAY_TEX_CHARS.search(content):
                return match.group(0)
            counts["tex_display"] += 1
        elif match.group("environment") is not None:
            counts["tex_environments"] += 1
        elif match.group("inline") is not None:
            counts["tex_inline"] += 1
        elif match.group("bbcode") is not None:
            counts["tex_bbcode"] += 1
        else:
            content = match.group("dl")
            if not _DOLLAR_TEX_CHARS.search(content) or _CURRENCY_START.match(content):
                return match.group(0)
            counts["tex_dollar"] += 1
        return " "

    rest = _TEX_SPAN.sub(take, text)
    counts["tex_commands"] = len(_TEX_COMMAND.findall(rest))
    return counts


def _has_library(html: str, lower: str, needles: tuple[str, ...], pattern: re.Pattern[str]) -> bool:
    """Whether ``pattern`` matches, tried only when a plain substring shows it can (a case-insensitive
    alternation scans at about 15 MB/s; ``str.__contains__`` at GB/s)."""
    return any(needle in lower for needle in needles) and bool(pattern.search(html))


def math_markers(html: str, max_chars: int = DEFAULT_MAX_CHARS) -> MathMarkers:
    """Find math markers in the first ``max_chars`` characters of a page's HTML (0: all of it)."""
    truncated = bool(max_chars) and len(html) > max_chars
    if truncated:
        html = html[:max_chars]
    script_tex = _SCRIPT_TEX.findall(html)
    rendered = max(len(_MJX_CONTAINER.findall(html)), len(_MATHJAX_RENDERED.findall(html))) \
        + len(_KATEX_RENDERED.findall(html))
    lower = html.lower()
    return MathMarkers(
        mathjax=_has_library(html, lower, ("mathjax",), _MATHJAX_LIB),
        katex=_has_library(html, lower, ("katex", "rendermathinelement"), _KATEX_LIB),
        asciimath=_has_library(html, lower, ("asciimath", "config=am_"), _ASCIIMATH_LIB),
        mathml=len(_MATHML.findall(html)),
        script_tex=len(script_tex),
        script_tex_display=sum(1 for display in script_tex if display),
        rendered=rendered,
        math_images=_count_math_images(html),
        truncated=truncated,
        **_tex_in_text(page_text(html)),
    )


def math_score(html: str, max_chars: int = DEFAULT_MAX_CHARS) -> float:
    """The math score (0..1) of one page's HTML; see the module docstring for how it is made."""
    return math_markers(html, max_chars).score()


class MathDetect(FilterStage):
    """Score pages for math (MathJax, KaTeX, MathML, TeX, math images) and keep those above min_score.

    Adds ``math_score`` (float32, 0..1; null where the HTML is null or empty, and on rows outside
    ``condition``) and ``math_markers`` (string, the audit list of what was found; null likewise).
    With ``drop``, rows scoring below ``min_score`` are dropped as ``not_math`` and rows without
    HTML as ``no_html``; without it, every row is kept and only the columns are added.
    """

    name: ClassVar[str] = "math.detect"
    requires: ClassVar[tuple[str, ...]] = ("html",)
    adds: ClassVar[tuple[str, ...]] = ("math_score", "math_markers")

    column: str = Field("html", description="The column holding the decoded HTML (from text.decode).")
    min_score: float = Field(DEFAULT_MIN_SCORE, ge=0.0, le=1.0, description=(
        "Drop pages scoring below this (reason not_math). 0.5 keeps a page with a math library and "
        "one formula, two MathML/script formulas, three delimited TeX formulas, or ~7 bare TeX "
        "commands; a page that only loads MathJax scores 0.10."))
    drop: bool = Field(True, description=(
        "Drop pages below min_score (not_math) and pages without HTML (no_html). False: keep "
        "every row and only add math_score and math_markers."))
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=0, description=(
        "Only the first max_chars characters of each page are scanned (0: all); a page cut there "
        "has 'truncated' in math_markers. Scanning costs roughly linear time in the length."))

    def required_columns(self) -> tuple[str, ...]:
        columns = [self.column]
        if self.condition:
            columns += [c for c in RowCondition.parse(self.condition).columns if c not in columns]
        return tuple(columns)

    def score_pages(self, pages: list[str | None]) -> tuple[list[float | None], list[str | None]]:
        """Score and describe each page; null HTML or empty HTML gives (None, None)."""
        scores: list[float | None] = []
        markers: list[str | None] = []
        for page in pages:
            if not page or not page.strip():
                scores.append(None)
                markers.append(None)
                continue
            found = math_markers(page, self.max_chars)
            scores.append(found.score())
            markers.append(found.describe())
        return scores, markers

    def _reasons_for(self, scores: list[float | None]) -> list[str | None]:
        if not self.drop:
            return [None] * len(scores)
        return [REASON_NO_HTML if s is None else REASON_NOT_MATH if s < self.min_score else None for s in scores]

    def reasons(self, batch: pa.Table) -> pa.Array:
        scores, _ = self.score_pages(self._pages(batch))
        return pa.array(self._reasons_for(scores), pa.string())

    def _pages(self, batch: pa.Table) -> list[str | None]:
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        return batch.column(self.column).to_pylist()

    def process(self, batch: pa.Table) -> pa.Table:
        pages = self._pages(batch)
        n = batch.num_rows
        selected = np.arange(n)
        if self.condition:
            mask = RowCondition.parse(self.condition).mask(batch)
            selected = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        scores: list[float | None] = [None] * n
        markers: list[str | None] = [None] * n
        reasons: list[str | None] = [None] * n
        sub_scores, sub_markers = self.score_pages([pages[i] for i in selected])
        for i, score, marker, reason in zip(selected, sub_scores, sub_markers, self._reasons_for(sub_scores)):
            scores[i], markers[i], reasons[i] = score, marker, reason
        out = batch.drop_columns([c for c in self.adds if c in batch.column_names])  # a second pass re-scores
        out = out.append_column("math_score", pa.array(scores, pa.float32()))
        out = out.append_column("math_markers", pa.array(markers, pa.string()))
        return out.append_column(DROP_REASON, pa.array(reasons, pa.string()))
