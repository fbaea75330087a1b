"""Math page detection: each marker kind, the currency trap, the score's shape, the stage, and real pages.

Real pages: every HTML page under ../shared/data/math/ and the three math pages of sample_data/pages
must be kept; the other sample pages and the 91 aeb-dev news pages (none of which has math: their
only "latex"-like strings are CSS ``translateX``) must be dropped.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pyarrow as pa
import pytest

from stages.math_detect import DEFAULT_MIN_SCORE, MathDetect, MathMarkers, math_markers, math_score

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PAGES = REPO / "sample_data" / "pages"


def page(body: str, head: str = "") -> str:
    """A minimal HTML page."""
    return f"<!DOCTYPE html><html><head><title>t</title>{head}</head><body>{body}</body></html>"


MATHJAX_HEAD = '<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
PROSE = "<p>Some words about a topic that are long enough to look like a page.</p>"

# ---------------------------------------------------------------- libraries


@pytest.mark.parametrize("head", [
    MATHJAX_HEAD,
    '<script type="text/javascript" src="/js/MathJax/MathJax.js?config=TeX-AMS_HTML"></script>',
    "<script>MathJax.Hub.Config({tex2jax: {inlineMath: [['$','$']]}});</script>",
    "<script>window.MathJax = {tex: {}};</script>",
    "<script>MathJax = {loader: {load: []}};</script>",
    '<script type="text/x-mathjax-config">MathJax.Hub.Config({});</script>',
])
def test_mathjax_library(head: str) -> None:
    found = math_markers(page(PROSE, head))
    assert found.mathjax and not found.katex and found.has_library


@pytest.mark.parametrize("head", [
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.9/dist/katex.min.css">',
    '<script defer src="/static/katex.js"></script>',
    "<script>document.addEventListener('DOMContentLoaded', () => renderMathInElement(document.body));</script>",
])
def test_katex_library(head: str) -> None:
    found = math_markers(page(PROSE, head))
    assert found.katex and not found.mathjax


def test_asciimath_library() -> None:
    found = math_markers(page(PROSE, '<script src="/mathjax/MathJax.js?config=AM_CHTML"></script>'))
    assert found.asciimath and found.mathjax
    assert math_markers(page('<span class="asciimath">x^2</span>')).asciimath


def test_library_alone_scores_low() -> None:
    found = math_markers(page(PROSE * 20, MATHJAX_HEAD))
    assert found.describe() == "mathjax"
    assert found.score() == pytest.approx(0.095, abs=0.01)


# ---------------------------------------------------------------- formulas in markup


def test_mathml_counted() -> None:
    body = ("<p><math><mi>x</mi></math> and <m:math xmlns:m='http://www.w3.org/1998/Math/MathML'>"
            "<m:mi>y</m:mi></m:math> and <math display=\"block\"><mn>1</mn></math></p><p>mathematics</p>")
    found = math_markers(page(body))
    assert found.mathml == 3
    assert found.tex_commands == 0  # MathML content is not page text


def test_script_tex_counted_with_display() -> None:
    body = ('<script type="math/tex">x^2</script> <script type="math/tex; mode=display">\\frac{a}{b}</script>'
            "<script type='text/tex'>y</script><script>var a = '$x=1$';</script>")
    found = math_markers(page(body))
    assert (found.script_tex, found.script_tex_display) == (3, 1)
    assert found.tex_dollar == 0  # inside an ordinary script


def test_rendered_output_counted() -> None:
    mathjax3 = '<mjx-container class="MathJax CtxtMenu_Attached_0" jax="CHTML"><mjx-math></mjx-math></mjx-container>'
    assert math_markers(page(mathjax3 * 4)).rendered == 4  # the container and its class are one formula
    mathjax2 = '<span class="MathJax" id="MathJax-Element-1-Frame">x</span>'
    assert math_markers(page(mathjax2 * 2)).rendered == 2
    katex = '<span class="katex-display"><span class="katex"><span class="katex-html">x</span></span></span>'
    assert math_markers(page(katex * 3)).rendered == 3


@pytest.mark.parametrize("img", [
    '<img src="/m/1.png" alt="\\frac{a}{b}">',
    '<img src="/m/2.png" alt="{\\displaystyle A^{\\mathsf {H}}}">',
    "<img src='/m/3.png' alt='x^{2}+y_{1}'>",
    '<img src="https://s0.wp.com/latex.php?latex=x%5E2&bg=ffffff" alt="x^2" class="latex">',
    '<img src="/x.png" class="latex" alt="x">',
    '<img src="https://latex.codecogs.com/svg.latex?E=mc^2">',
    '<img src="https://quicklatex.com/cache3/ql_1.png" class="ql-img-inline-formula">',
    '<img src="https://chart.googleapis.com/chart?cht=tx&chl=x">',
    '<img src="/cgi-bin/mimetex.cgi?x^2">',
])
def test_math_images(img: str) -> None:
    assert math_markers(page(f"<p>{img}</p>")).math_images == 1


@pytest.mark.parametrize("img", [
    '<img src="/photo.jpg" alt="A lighthouse at dusk">',
    '<img src="/a.png" alt="C:\\Users\\me">',
    '<img src="/translateX.png" alt="translateX(-50%)">',
])
def test_ordinary_images_are_not_math(img: str) -> None:
    assert math_markers(page(f"<p>{img}</p>")).math_images == 0


# ---------------------------------------------------------------- TeX in text


def test_tex_delimiters_counted_by_kind() -> None:
    body = ("<p>Let \\(x\\) and \\( y^2 \\) be given.</p>"
            "<p>\\[ \\int_0^1 f(x)\\,dx \\]</p><p>$$ a^2 + b^2 = c^2 $$</p>"
            "<p>Inline $a \\ne 0$ and $x_1 = 2$.</p>"
            "<p>[tex]\\sqrt{2}[/tex] and [itex]x[/itex] and [math]y[/math]</p>"
            "<p>\\begin{align} a &= b \\\\ c &= d \\end{align} \\begin{equation*} E = mc^2 \\end{equation*}</p>")
    found = math_markers(page(body))
    assert (found.tex_inline, found.tex_display, found.tex_dollar, found.tex_bbcode, found.tex_environments) \
        == (2, 2, 2, 3, 2)
    assert found.tex_commands == 0  # every command sits inside a delimiter or environment


def test_bare_tex_commands_counted() -> None:
    body = "<p>so x = \\frac{1}{2} and \\sqrt{3} \\cdot \\alpha \\leq \\infty, see \\textbook</p>"
    found = math_markers(page(body))
    assert found.tex_commands == 6  # \textbook is not \text


@pytest.mark.parametrize("text", [
    "It costs $5 and $10 at the door.",
    "Tickets are $5-$10.",
    "between $20,000 and $30,000 a year",
    "Revenue was US$3.5bn and A$2bn.",
    "Price: $5 = $5 + tax",
    "a $5 = total$ typo",
    "Restaurant price range: $$ - $$$ (cheap to moderate)",
    "Price: $$ · Italian · $$$",
    "pay $100, then $200",
])
def test_currency_is_not_math(text: str) -> None:
    found = math_markers(page(f"<p>{text}</p>"))
    assert found.tex_dollar == 0 and found.tex_display == 0, found
    assert found.score() == 0.0


def test_single_dollar_needs_tex_characters() -> None:
    assert math_markers(page("<p>$x$ is a variable</p>")).tex_dollar == 0
    assert math_markers(page("<p>$x^2$ is a square and $y=1$</p>")).tex_dollar == 2


def test_code_and_scripts_are_not_page_text() -> None:
    body = ("<script>$('#menu').on('click', function(){ var re = /\\(a\\)/; $$('x'); });</script>"
            "<style>.a{content:'$x=1$'}</style><!-- $$x=1$$ -->"
            "<pre>echo $HOME_DIR=$x_1 \\(x\\)</pre><code>$$a+b$$</code><textarea>\\[x^2\\]</textarea>" + PROSE)
    found = math_markers(page(body))
    assert found.describe() == ""
    assert found.score() == 0.0


def test_max_chars_bounds_the_scan() -> None:
    html = page("<p>" + "filler " * 2000 + "</p>" + "<math><mi>x</mi></math>" * 3)
    assert math_markers(html).mathml == 3
    cut = math_markers(html, max_chars=5000)
    assert cut.mathml == 0 and cut.truncated and cut.describe() == "truncated"
    assert math_markers(html, max_chars=0).mathml == 3


# ---------------------------------------------------------------- the score


def test_score_shape() -> None:
    lib_only = math_score(page(PROSE, MATHJAX_HEAD))
    lib_and_formulas = math_score(page("<p>\\(x^2\\) and \\(y\\) and $$z=1$$</p>", MATHJAX_HEAD))
    raw_tex_three = math_score(page("<p>\\(x^2\\) and \\(y\\) and $$z=1$$</p>"))
    raw_frac_forum = math_score(page("<p>" + "I get \\frac{a}{b} = \\sqrt{c} here. " * 4 + "</p>"))
    one_formula_with_lib = math_score(page("<p>\\(x\\)</p>", MATHJAX_HEAD))
    assert lib_only < 0.2
    assert lib_and_formulas > 0.85
    assert 0.5 <= raw_tex_three < lib_and_formulas
    assert 0.5 <= raw_frac_forum < 0.9
    assert one_formula_with_lib >= DEFAULT_MIN_SCORE
    assert math_score(page(PROSE)) == 0.0


def test_markers_string_and_evidence() -> None:
    markers = MathMarkers(mathjax=True, mathml=12, tex_inline=5)
    assert markers.describe() == "mathjax,mathml:12,tex_inline:5"
    assert markers.evidence() == pytest.approx(12 + 5 + 1)
    assert MathMarkers().describe() == "" and MathMarkers().score() == 0.0


# ---------------------------------------------------------------- the stage


def table(pages: list[str | None], **extra: list) -> pa.Table:
    return pa.table({"id": [f"p{i}" for i in range(len(pages))], "html": pa.array(pages, pa.string()), **extra})


def test_stage_drops_with_reasons() -> None:
    math_page = page("<p>\\(x^2\\) and \\(y\\)</p>", MATHJAX_HEAD)
    batch = table([math_page, page(PROSE), None, "   "])
    stage = MathDetect()
    assert stage.name == "math.detect"
    out = stage.process(batch)
    assert out.column("drop_reason").to_pylist() == [None, "not_math", "no_html", "no_html"]
    assert out.column("math_markers").to_pylist() == ["mathjax,tex_inline:2", "", None, None]
    assert out.schema.field("math_score").type == pa.float32()
    result = stage.run_batch(batch)
    assert result.kept.column("id").to_pylist() == ["p0"]
    assert dict(result.stats.drops) == {"not_math": 1, "no_html": 2}


def test_stage_without_drop_only_adds_columns() -> None:
    batch = table([page(PROSE), None, page("<math><mi>x</mi></math>")])
    kept = MathDetect(drop=False)(batch)
    assert kept.num_rows == 3
    scores = kept.column("math_score").to_pylist()
    assert scores[0] == 0.0 and scores[1] is None and 0 < scores[2] < DEFAULT_MIN_SCORE


def test_stage_column_min_score_condition_and_rerun() -> None:
    lone = page("<math><mi>x</mi></math>")  # one MathML formula, no library: 0.39
    batch = pa.table({"id": ["a", "b"], "body_html": [lone, lone], "src": ["x", "y"]})
    stage = MathDetect(column="body_html", min_score=0.3, condition="src == 'x'")
    assert stage.required_columns() == ("body_html", "src")
    out = stage.process(batch)
    assert out.column("drop_reason").to_pylist() == [None, None]
    assert out.column("math_score").to_pylist()[1] is None  # outside the condition: not scored
    again = MathDetect(column="body_html", min_score=0.5).process(out.drop_columns(["drop_reason"]))
    assert again.column_names.count("math_score") == 1
    assert again.column("drop_reason").to_pylist() == ["not_math", "not_math"]
    with pytest.raises(KeyError, match="math.detect.*'html'"):
        MathDetect().process(batch)


# ---------------------------------------------------------------- real pages


def _read(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8", errors="replace")


def real_pages(shared_data: Path) -> tuple[list[Path], list[Path]]:
    """(math pages, pages without math) of the reference data and the sample pages."""
    math_pages = sorted((shared_data / "math").rglob("*.html")) + sorted(SAMPLE_PAGES.glob("math_*.html"))
    other = [p for p in sorted(SAMPLE_PAGES.glob("*.html")) if not p.name.startswith("math_")]
    other += sorted((shared_data / "extraction" / "aeb-dev" / "html").glob("*.html.gz"))
    return math_pages, other


def test_real_pages_precision_and_recall(shared_data: Path) -> None:
    math_pages, other = real_pages(shared_data)
    assert len(math_pages) == 15 and len(other) == 102  # 8 demos + 2x2 readability + 3 samples; 11 + 91
    paths = math_pages + other
    out = MathDetect(drop=False).process(table([_read(p) for p in paths]))
    scores = dict(zip(paths, out.column("math_score").to_pylist()))
    missed = {p.name: scores[p] for p in math_pages if scores[p] < DEFAULT_MIN_SCORE}
    false_hits = {p.name: scores[p] for p in other if scores[p] >= DEFAULT_MIN_SCORE}
    assert not missed and not false_hits
    # Margins: the weakest math page (MathJax v2 script tags, two formulas) and the strongest other page.
    assert min(scores[p] for p in math_pages) > 0.7
    assert max(scores[p] for p in other) < 0.1


@pytest.mark.parametrize("run", ["\\( x ", "\\[ x ", "$$ a ", "\\begin{equation} x ", "<", "<script>", "<img ",
                                 "[tex] a ", '<p class="a '])
def test_unclosed_openers_cost_linear_time(run: str) -> None:
    # A page of 500k characters of unclosed openers: about 0.1 s each here; quadratic scans took minutes.
    html = page(run * (500_000 // len(run)))
    start = time.perf_counter()
    found = math_markers(html)
    assert time.perf_counter() - start < 5.0
    assert found.score() < DEFAULT_MIN_SCORE
