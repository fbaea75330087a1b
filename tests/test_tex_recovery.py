"""TeX recovery before lynx, and math.extract on real math pages with the real lynx binary."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from stages.math_extract import MathExtractor
from stages.score_subset import ScoreAtLeast
from stages.tex_recovery import Formula, TexRecovery, page_delimiters, restore_tex
from tests.conftest import REPO


def _recover(body: str, head: str = "") -> tuple[list[Formula], str]:
    page = TexRecovery().recover(f"<html><head>{head}</head><body>{body}</body></html>")
    return list(page.formulas.values()), page.html


def _text(html: str) -> str:
    """The body through the real stage (lynx included)."""
    out = MathExtractor().process(pa.table({"id": ["x"], "html": [html]}))
    return out.column("text")[0].as_py()


def test_mathjax_v2_scripts_inline_and_display() -> None:
    formulas, html = _recover('<p>Let <script type="math/tex">x^2</script> be given.</p>'
                              '<script type="math/tex; mode=display">\\int_0^1 f</script>'
                              '<script type="text/tex">y</script>')
    assert formulas == [Formula("x^2", False, "script_tex"), Formula("\\int_0^1 f", True, "script_tex"),
                        Formula("y", False, "script_tex")]
    assert "math/tex" not in html


def test_mathjax_v2_rendered_duplicates_are_removed() -> None:
    body = ('<p>So <span class="MathJax_Preview">x2</span><span class="MathJax" id="MathJax-Element-1-Frame">'
            '<nobr><span class="math">x2</span></nobr></span><script type="math/tex">x^2</script> holds.</p>')
    text = _text(f"<html><body>{body}</body></html>")
    assert text.strip() == "So $x^2$ holds."


def test_mathml_annotation_alttext_and_conversion() -> None:
    annotated = ('<math><semantics><mrow><mi>a</mi></mrow>'
                 '<annotation encoding="application/x-tex">{\\displaystyle a+b}</annotation></semantics></math>')
    alttext = '<math alttext="c^2" display="block"><msup><mi>c</mi><mn>2</mn></msup></math>'
    bare = '<math><mfrac><mi>p</mi><mi>q</mi></mfrac></math>'
    formulas, _ = _recover(f"<p>{annotated} and {alttext} and {bare}</p>")
    assert formulas == [Formula("a+b", False, "mathml_annotation"), Formula("c^2", True, "mathml_alttext"),
                        Formula("\\frac{p}{q}", False, "mathml_converted")]


def test_malformed_mathml_is_kept_as_text_and_counted() -> None:
    page = TexRecovery().recover("<html><body><p>x <math><mfrac><mi>a</mi></mfrac></math> y</p></body></html>")
    assert not page.formulas
    assert sum(page.failures.values()) == 1 and next(iter(page.failures)).startswith("mathml:")
    out = MathExtractor().process(pa.table({"id": ["x"], "html": [
        "<html><body><p>x <math><mfrac><mi>a</mi></mfrac></math> y</p></body></html>"]}))
    row = out.to_pylist()[0]
    assert row["drop_reason"] is None and row["math_unrecovered"] == 1 and "a" in row["text"]


def test_katex_keeps_annotation_and_drops_visual_layer() -> None:
    body = ('<p>Sum <span class="katex"><span class="katex-mathml"><math><semantics><mrow><mi>r</mi></mrow>'
            '<annotation encoding="application/x-tex">r^n</annotation></semantics></math></span>'
            '<span class="katex-html" aria-hidden="true"><span class="base">rn</span></span></span> here.</p>'
            '<span class="katex-display"><span class="katex"><span class="katex-mathml"><math><semantics><mi>s</mi>'
            '<annotation encoding="application/x-tex">\\sum s</annotation></semantics></math></span>'
            '<span class="katex-html">∑s</span></span></span>')
    text = _text(f"<html><body>{body}</body></html>")
    assert text.splitlines()[0].strip() == "Sum $r^n$ here."
    assert "$$\\sum s$$" in text and "∑" not in text and "rn" not in text


def test_mathjax3_container_uses_its_assistive_mathml() -> None:
    body = ('<p>Take <mjx-container class="MathJax" jax="CHTML"><mjx-math><mjx-mi>x</mjx-mi></mjx-math>'
            '<mjx-assistive-mml><math><msup><mi>x</mi><mn>3</mn></msup></math></mjx-assistive-mml>'
            '</mjx-container> now.</p>')
    assert _text(f"<html><body>{body}</body></html>").strip() == "Take $x^{3}$ now." or \
        _text(f"<html><body>{body}</body></html>").strip() == "Take $x^3$ now."


def test_wikipedia_math_element_and_images() -> None:
    body = ('<p>M is <span class="mwe-math-element"><span class="mwe-math-mathml-inline" style="display:none">'
            '<math alttext="{\\displaystyle M=M^{H}}"><mi>M</mi></math></span>'
            '<img class="mwe-math-fallback-image-inline" alt="{\\displaystyle M=M^{H}}" src="x.svg"></span>.</p>'
            '<p><img class="latex" src="https://s0.wp.com/latex.php?latex=e%5E%7Bi%5Cpi%7D" alt="e^{i\\pi}+1=0"> '
            '<img src="/photo.jpg" alt="a cat = cute"></p>')
    formulas, html = _recover(body)
    assert formulas == [Formula("M=M^{H}", False, "mathml_alttext"), Formula("e^{i\\pi}+1=0", False, "image_alt")]
    assert "photo.jpg" in html


@pytest.mark.parametrize("script, inline, display", [
    ("MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']]}};", [("$", "$"), ("\\(", "\\)")],
     [("$$", "$$"), ("\\[", "\\]")]),
    ("MathJax = {tex: {inlineMath: {'[+]': [['$', '$']]}}};", [("\\(", "\\)"), ("$", "$")],
     [("$$", "$$"), ("\\[", "\\]")]),
    ("MathJax.Hub.Config({tex2jax: {inlineMath: [['$','$']], displayMath: [['$$','$$']]}});", [("$", "$")],
     [("$$", "$$")]),
    ("renderMathInElement(document.body, {delimiters: [{left: '$$', right: '$$', display: true}, "
     "{left: '$', right: '$', display: false}]});", [("$", "$")], [("$$", "$$")]),
    ("var x = 1;", [("\\(", "\\)")], [("$$", "$$"), ("\\[", "\\]")]),
])
def test_page_delimiter_configuration(script: str, inline: list, display: list) -> None:
    found = page_delimiters([script])
    assert found.inline == inline and found.display == display


def test_text_delimiters_follow_the_page_configuration() -> None:
    body = ("<p>Cost $5 and $10. Inline \\(a+b\\) and display $$c=d$$ and \\[e\\] and "
            "\\begin{align}f&=g\\end{align}.</p><pre>\\(not math\\)</pre><code>$$x$$</code>")
    formulas, html = _recover(body)
    assert [(f.tex, f.display) for f in formulas] == [
        ("a+b", False), ("c=d", True), ("e", True), ("\\begin{align}f&=g\\end{align}", True)]
    assert "\\(not math\\)" in html and "$$x$$" in html
    with_dollar = "<script>MathJax = {tex: {inlineMath: [['$', '$']]}};</script>"
    formulas, _ = _recover("<p>Cost $5 and $10; let $x^2$ be and \\$ stays.</p>", with_dollar)
    assert [f.tex for f in formulas] == ["x^2"]


def test_restore_puts_display_math_on_its_own_lines() -> None:
    formulas = {"ZQTEX0Q": Formula("a\n +b", False, "x"), "ZQTEX1Q": Formula("\\int\n\n f", True, "x")}
    text, missing = restore_tex("   See ZQTEX0Q, then ZQTEX1Q and more.\n   Gone: ZQTEX9Q", formulas)
    assert text == "   See $a +b$, then\n$$\\int\nf$$\nand more.\n   Gone: ZQTEX9Q"
    assert missing == 0
    _, missing = restore_tex("nothing", formulas)
    assert missing == 2


def test_placeholder_prefix_never_collides_with_page_text() -> None:
    page = TexRecovery().recover("<html><body><p>ZQTEX0Q is a word here, and \\(x\\)</p></body></html>")
    token = next(iter(page.formulas))
    assert token != "ZQTEX0Q" and token.startswith("ZQTEX")


def test_math_extract_on_the_sample_math_pages() -> None:
    pages = sorted((REPO / "sample_data" / "pages").glob("math_*.html"))
    out = MathExtractor().process(pa.table({"id": [p.name for p in pages], "html": [p.read_text() for p in pages]}))
    rows = {r["id"]: r for r in out.to_pylist()}
    assert all(r["drop_reason"] is None and r["math_unrecovered"] == 0 for r in rows.values())
    assert json.loads(rows["math_katex.html"]["math_origins"]) == {"katex_annotation": 6}
    assert json.loads(rows["math_mathml.html"]["math_origins"]) == {"mathml_converted": 16}
    mathjax = rows["math_mathjax.html"]
    assert json.loads(mathjax["math_origins"]) == {"script_tex": 2, "text_delimiters": 33}
    assert "$$\\left(x + \\frac{b}{2a}\\right)^2 = \\frac{b^2 - 4ac}{4a^2}.$$" in mathjax["text"]
    assert "simply as $2a$:" in mathjax["text"]
    assert "$$a^2+b^2=c^2$$" in rows["math_mathml.html"]["text"]
    assert "html" not in out.column_names


def test_math_extract_drops_with_reasons_and_plain_lynx_mode() -> None:
    stage = MathExtractor(max_html_chars=10_000, min_chars=5)
    html = "<html><body><p>Text \\(x\\) here</p></body></html>"
    out = stage.process(pa.table({"id": ["a", "b", "c", "d"], "html": [None, "x" * 20_000, html, "<p>hi</p>"]}))
    assert out.column("drop_reason").to_pylist() == ["no_html", "html_too_large", None, "extract_empty"]
    plain = MathExtractor(recover_tex=False).process(pa.table({"id": ["a"], "html": [html]}))
    assert plain.column("text")[0].as_py().strip() == "Text \\(x\\) here"
    assert plain.column("math_formulas")[0].as_py() == 0


def test_score_at_least_subsets() -> None:
    batch = pa.table({"id": list("abcde"), "finemath_score": pa.array([5, 3, 2, None, 4], pa.int8())})
    three = ScoreAtLeast(column="finemath_score", min_score=3).process(batch)
    assert three.column("drop_reason").to_pylist() == [None, None, "finemath_score_below_3", "finemath_score_missing",
                                                       None]
    floats = pa.table({"id": ["a"], "s": pa.array([3.5])})
    with pytest.raises(TypeError, match="'s' is double, not an integer score"):
        ScoreAtLeast(column="s", min_score=3).process(floats)
