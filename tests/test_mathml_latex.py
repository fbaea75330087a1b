"""Tests for the presentation MathML -> LaTeX converter (stages/mathml_latex.py)."""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from stages.mathml_latex import (
    MATHML_NS, MathMLError, is_display, local_name, mathml_string_to_latex, mathml_to_latex)

PAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "math" / "readability-test-pages"
WIKIPEDIA_PAGE = PAGES / "wikipedia-3" / "source.html"
MATHJAX_PAGE = PAGES / "mathjax" / "source.html"
MATHJAX_DEMO_PAGE = PAGES.parent / "mathjax-demos" / "page_mml-chtml.html"


def from_xml(body: str) -> etree._Element:
    """``<math xmlns=MathML>body</math>`` parsed as namespaced XML."""
    return etree.fromstring(f'<math xmlns="{MATHML_NS}">{body}</math>')


def from_html(body: str) -> etree._Element:
    """``<math>body</math>`` inside an HTML page, parsed with lxml.html (lowercased, no namespace)."""
    page = lxml.html.fromstring(f"<html><body><p>Text <math>{body}</math> more.</p></body></html>")
    return next(el for el in page.iter() if local_name(el) == "math")


def elements(root: etree._Element, name: str) -> list[etree._Element]:
    return [el for el in root.iter() if local_name(el) == name]


# (element covered, MathML inside <math>, exact LaTeX)
ELEMENT_CASES = [
    ("math", "<mi>x</mi><mo>=</mo><mn>1</mn>", "x=1"),
    ("mi", "<mi> x </mi>", "x"),
    ("mi_function", "<mi>sin</mi><mo>&#x2061;</mo><mi>x</mi>", r"\sin x"),
    ("mi_word", "<mi>rank</mi><mi>A</mi>", r"\mathrm{rank}A"),
    ("mi_greek", "<mi>α</mi><mi>x</mi><mi>Γ</mi>", r"\alpha x\Gamma"),
    ("mi_symbols", "<mi>∞</mi><mo>,</mo><mi>∂</mi><mo>,</mo><mi>∇</mi><mo>,</mo><mi>ℝ</mi>",
     r"\infty,\partial,\nabla,\mathbb{R}"),
    ("mi_bold", '<mi mathvariant="bold">v</mi>', r"\mathbf{v}"),
    ("mi_double_struck", '<mi mathvariant="double-struck">N</mi>', r"\mathbb{N}"),
    ("mi_script", '<mi mathvariant="script">L</mi>', r"\mathcal{L}"),
    ("mi_fraktur", '<mi mathvariant="fraktur">g</mi>', r"\mathfrak{g}"),
    ("mi_normal", '<mi mathvariant="normal">d</mi><mi>x</mi>', r"\mathrm{d}x"),
    ("mi_normal_symbol", '<mi mathvariant="normal">∇</mi>', r"\nabla"),
    ("mi_sans_serif", '<msup><mi>A</mi><mi mathvariant="sans-serif">T</mi></msup>', r"A^{\mathsf{T}}"),
    ("mi_unicode_bold", "<mi>𝐱</mi>", r"\mathbf{x}"),
    ("mn", "<mn>3.14</mn>", "3.14"),
    ("mo", "<mi>a</mi><mo>≤</mo><mi>b</mi><mo>±</mo><mi>c</mi>", r"a\leq b\pm c"),
    ("mo_escapes", "<mo>{</mo><mi>x</mi><mo>}</mo><mo>%</mo><mo>#</mo><mo>&amp;</mo><mo>_</mo><mo>$</mo>",
     r"\{x\}\%\#\&\_\$"),
    ("mo_invisible", "<mn>2</mn><mo>&#x2062;</mo><mi>x</mi><mo>&#x2063;</mo><mo>&#x2064;</mo>", "2x"),
    ("mo_word", "<mo>lim</mo><mo>max</mo><mo>Tr</mo>", r"\lim\max\operatorname{Tr}"),
    ("mo_logic", "<mo>∀</mo><mi>x</mi><mo>∈</mo><mi>S</mi><mo>⇒</mo><mo>¬</mo><mi>P</mi>",
     r"\forall x\in S\Rightarrow\neg P"),
    ("mo_iff_spacing", '<mi>p</mi><mspace width="thickmathspace"/><mo>⟺</mo>'
     '<mspace width="thickmathspace"/><mi>q</mi>', r"p\iff q"),
    ("mo_iff_spacing_v3", '<mi>p</mi><mstyle scriptlevel="0"><mspace width="0.278em"/></mstyle><mo>⟹</mo>'
     '<mstyle scriptlevel="0"><mspace width="0.278em"/></mstyle><mi>q</mi>', r"p\implies q"),
    ("mrow", "<mrow><mi>a</mi><mo>+</mo><mi>b</mi></mrow>", "a+b"),
    ("mrow_stretchy_fences", "<mrow><mo>(</mo><mfrac><mi>a</mi><mi>b</mi></mfrac><mo>)</mo></mrow>",
     r"\left(\frac{a}{b}\right)"),
    ("mrow_plain_parens", '<mo stretchy="false">(</mo><mi>x</mi><mo stretchy="false">)</mo>', "(x)"),
    ("mfrac", "<mfrac><mn>1</mn><mrow><mi>x</mi><mo>+</mo><mn>1</mn></mrow></mfrac>", r"\frac{1}{x+1}"),
    ("mfrac_linethickness_0", '<mfrac linethickness="0"><mi>n</mi><mi>k</mi></mfrac>',
     r"\genfrac{}{}{0pt}{}{n}{k}"),
    ("mfrac_binom", '<mrow><mo>(</mo><mfrac linethickness="0"><mi>n</mi><mi>k</mi></mfrac><mo>)</mo></mrow>',
     r"\binom{n}{k}"),
    ("msup", "<msup><mi>x</mi><mn>2</mn></msup>", "x^2"),
    ("msup_group", "<msup><mi>e</mi><mrow><mo>-</mo><mi>x</mi></mrow></msup>", "e^{-x}"),
    ("msup_prime", "<msup><mi>f</mi><mo>′</mo></msup><mo>(</mo><mi>x</mi><mo>)</mo>", "f'(x)"),
    ("msup_fenced_base", "<msup><mrow><mo>(</mo><mi>a</mi><mo>+</mo><mi>b</mi><mo>)</mo></mrow><mn>2</mn></msup>",
     r"\left(a+b\right)^2"),
    ("msub", "<msub><mi>a</mi><mrow><mi>i</mi><mi>j</mi></mrow></msub>", "a_{ij}"),
    ("msub_spacing", "<msub><mi>a</mi><mi>k</mi></msub><msub><mi>b</mi><mi>k</mi></msub>", "a_k b_k"),
    ("msub_base_group", "<msub><mrow><mi>A</mi><mo>+</mo><mi>B</mi></mrow><mi>i</mi></msub>", "{A+B}_i"),
    ("msubsup", "<msubsup><mo>∫</mo><mn>0</mn><mn>1</mn></msubsup><mi>f</mi>", r"\int_0^1 f"),
    ("msqrt", "<msqrt><mi>x</mi><mo>+</mo><mn>1</mn></msqrt>", r"\sqrt{x+1}"),
    ("mroot", "<mroot><mi>x</mi><mn>3</mn></mroot>", r"\sqrt[3]{x}"),
    ("mroot_bracket_index", '<mroot><mi>x</mi><mrow><mo stretchy="false">]</mo></mrow></mroot>', r"\sqrt[{]}]{x}"),
    ("munder_limit", "<munder><mo>lim</mo><mrow><mi>n</mi><mo>→</mo><mi>∞</mi></mrow></munder><msub>"
     "<mi>a</mi><mi>n</mi></msub>", r"\lim_{n\to\infty}a_n"),
    ("munder_underbrace", "<munder><mrow><mi>a</mi><mo>+</mo><mi>b</mi></mrow><mo>⏟</mo></munder>",
     r"\underbrace{a+b}"),
    ("munder_underbrace_label", "<munder><munder><mrow><mi>a</mi><mo>+</mo><mi>b</mi></mrow><mo>⏟</mo>"
     "</munder><mi>n</mi></munder>", r"\underbrace{a+b}_n"),
    ("munder_underset", "<munder><mi>x</mi><mo>~</mo></munder>", r"\underset{\sim}{x}"),
    ("mover_hat", '<mover accent="true"><mi>x</mi><mo>^</mo></mover>', r"\hat{x}"),
    ("mover_bar", '<mover><mi>x</mi><mo stretchy="false">¯</mo></mover>', r"\bar{x}"),
    ("mover_overline", '<mover><mrow><mi>a</mi><mi>b</mi></mrow><mo accent="false">¯</mo></mover>',
     r"\overline{ab}"),
    ("mover_tilde", "<mover><mi>y</mi><mo>˜</mo></mover>", r"\tilde{y}"),
    ("mover_vec", '<mover><mi>v</mi><mo stretchy="false">→</mo></mover>', r"\vec{v}"),
    ("mover_dot", "<mover><mi>x</mi><mo>˙</mo></mover><mo>,</mo><mover><mi>x</mi><mo>¨</mo></mover>",
     r"\dot{x},\ddot{x}"),
    ("mover_overbrace", "<mover><mrow><mi>x</mi><mi>y</mi></mrow><mo>⏞</mo></mover>", r"\overbrace{xy}"),
    ("mover_overset", "<mover><mo>=</mo><mtext>def</mtext></mover>", r"\overset{\text{def}}{=}"),
    ("mover_sum", "<mover><mo>∑</mo><mi>n</mi></mover>", r"\sum^n"),
    ("munderover_sum", "<munderover><mo>∑</mo><mrow><mi>k</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi>"
     "</munderover><mi>k</mi>", r"\sum_{k=1}^n k"),
    ("munderover_other", "<munderover><mo>→</mo><mi>a</mi><mi>b</mi></munderover>",
     r"\underset{a}{\overset{b}{\to}}"),
    ("mtable", "<mtable><mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd></mtr>"
     "<mtr><mtd><mi>c</mi></mtd><mtd><mi>d</mi></mtd></mtr></mtable>",
     r"\begin{matrix}a & b \\ c & d\end{matrix}"),
    ("mtable_parens", "<mrow><mo>(</mo><mtable><mtr><mtd><mn>1</mn></mtd><mtd><mn>0</mn></mtd></mtr>"
     "</mtable><mo>)</mo></mrow>", r"\begin{pmatrix}1 & 0\end{pmatrix}"),
    ("mtable_brackets", "<mrow><mo>[</mo><mtable><mtr><mtd><mn>1</mn></mtd></mtr><mtr><mtd><mn>2</mn></mtd>"
     "</mtr></mtable><mo>]</mo></mrow>", r"\begin{bmatrix}1 \\ 2\end{bmatrix}"),
    ("mtable_bars", "<mrow><mo>|</mo><mtable><mtr><mtd><mi>a</mi></mtd></mtr></mtable><mo>|</mo></mrow>",
     r"\begin{vmatrix}a\end{vmatrix}"),
    ("mtable_cases", "<mrow><mo>{</mo><mtable><mtr><mtd><mn>1</mn></mtd><mtd><mi>x</mi><mo>&gt;</mo><mn>0</mn>"
     "</mtd></mtr></mtable><mo></mo></mrow>", r"\begin{cases}1 & x>0\end{cases}"),
    ("mtable_other_fences", "<mrow><mo>⟨</mo><mtable><mtr><mtd><mi>a</mi></mtd></mtr></mtable><mo>|</mo></mrow>",
     r"\left\langle\begin{matrix}a\end{matrix}\right|"),
    ("mrow_unpaired_fences", "<mrow><mo>(</mo><mi>a</mi><mo>)</mo><mo>+</mo><mo>(</mo><mi>b</mi><mo>)</mo></mrow>",
     "(a)+(b)"),
    ("mtable_aligned", '<mtable columnalign="right left"><mtr><mtd><mi>x</mi></mtd><mtd><mo>=</mo><mn>1</mn>'
     "</mtd></mtr></mtable>", r"\begin{aligned}x & =1\end{aligned}"),
    ("mlabeledtr", "<mtable><mlabeledtr><mtd><mtext>(1)</mtext></mtd><mtd><mi>x</mi></mtd></mlabeledtr>"
     "</mtable>", r"\begin{matrix}x\end{matrix}"),
    ("mtext", "<mtext>cost in $ &amp; 50% of #_1 {x}</mtext>",
     r"\text{cost in \$ \& 50\% of \#\_1 \{x\}}"),
    ("mtext_nbsp", "<mtext>&#xA0;for&#xA0;</mtext>", r"\text{ for }"),
    ("ms", "<ms>abc</ms>", r'\text{"abc"}'),
    ("mspace_thin", '<mi>a</mi><mspace width="thinmathspace"/><mi>b</mi>', r"a\,b"),
    ("mspace_thick", '<mi>a</mi><mspace width="0.2778em"/><mi>b</mi>', r"a\;b"),
    ("mspace_quad", '<mi>a</mi><mspace width="1em"/><mi>b</mi>', r"a\quad b"),
    ("mspace_qquad", '<mi>a</mi><mspace width="2em"/><mi>b</mi>', r"a\qquad b"),
    ("mspace_negative", '<mi>a</mi><mspace width="negativethinmathspace"/><mi>b</mi>', r"a\!b"),
    ("mspace_plain", "<mi>a</mi><mspace/><mi>b</mi>", r"a\ b"),
    ("mspace_linebreak", '<mi>a</mi><mspace linebreak="newline"/><mi>b</mi>', r"a\\b"),
    ("mfenced", "<mfenced><mi>a</mi><mi>b</mi></mfenced>", r"\left(a,b\right)"),
    ("mfenced_attributes", '<mfenced open="[" close=")" separators=";"><mi>a</mi><mi>b</mi><mi>c</mi></mfenced>',
     r"\left[a;b;c\right)"),
    ("semantics", "<semantics><mrow><mi>x</mi></mrow><annotation encoding=\"text/plain\">x</annotation>"
     "</semantics>", "x"),
    ("semantics_tex", '<semantics><mi>y</mi><annotation encoding="application/x-tex">\\mathcal{Y} </annotation>'
     "</semantics>", r"\mathcal{Y}"),
    ("mstyle", '<mstyle displaystyle="true"><mi>x</mi></mstyle>', "x"),
    ("mpadded", '<mpadded width="+1em"><mi>x</mi></mpadded>', "x"),
    ("mphantom", "<mi>x</mi><mphantom><mo>+</mo><mn>1</mn></mphantom>", r"x\phantom{+1}"),
    ("menclose", '<menclose notation="box"><mi>x</mi></menclose>', r"\boxed{x}"),
    ("menclose_plain", '<menclose notation="longdiv"><mi>x</mi></menclose>', "x"),
    ("merror", "<merror><mtext>bad</mtext></merror>", r"\text{bad}"),
    ("maction", '<maction actiontype="toggle"><mi>a</mi><mi>b</mi></maction>', "a"),
    ("mmultiscripts", "<mmultiscripts><mi>R</mi><mi>i</mi><none/><none/><mi>j</mi></mmultiscripts>",
     "R_i^j"),
    ("mmultiscripts_pre", "<mmultiscripts><mi>C</mi><mprescripts/><mn>1</mn><mn>14</mn></mmultiscripts>",
     "{}_1^{14}C"),
]


@pytest.mark.parametrize("parse", [from_xml, from_html], ids=["xml", "html"])
@pytest.mark.parametrize(("case", "body", "expected"), ELEMENT_CASES, ids=[c[0] for c in ELEMENT_CASES])
def test_element(parse, case: str, body: str, expected: str) -> None:
    assert mathml_to_latex(parse(body)) == expected


def test_prefixed_and_uppercase_tags() -> None:
    page = lxml.html.fromstring('<div><m:math xmlns:m="http://www.w3.org/1998/Math/MathML"><m:msup><m:mi>x'
                                '</m:mi><m:mn>2</m:mn></m:msup></m:math></div>')
    assert mathml_to_latex(elements(page, "math")[0]) == "x^2"
    xml = etree.fromstring('<m:math xmlns:m="http://www.w3.org/1998/Math/MathML"><m:mi>y</m:mi></m:math>')
    assert mathml_to_latex(xml) == "y"
    assert mathml_string_to_latex("<MATH><MFRAC><MI>a</MI><MI>b</MI></MFRAC></MATH>") == r"\frac{a}{b}"


def test_any_element_as_root() -> None:
    frac = from_xml("<mfrac><mi>a</mi><mi>b</mi></mfrac>")[0]
    assert mathml_to_latex(frac) == r"\frac{a}{b}"


def test_is_display() -> None:
    assert is_display(etree.fromstring('<math display="block"/>'))
    assert is_display(etree.fromstring('<math mode="display"/>'))
    assert not is_display(etree.fromstring('<math display="inline"/>'))
    assert not is_display(from_html("<mi>x</mi>"))


def test_comments_and_whitespace_in_tokens() -> None:
    math = from_xml("<mo>\n   ⟨<!-- ⟨ -->\n  </mo><mi>\n  v\n </mi><mo>⟩<!-- ⟩ --></mo>")
    assert mathml_to_latex(math) == r"\left\langle v\right\rangle"


def test_string_entry_point() -> None:
    assert mathml_string_to_latex(f'<math xmlns="{MATHML_NS}"><msqrt><mn>2</mn></msqrt></math>') == r"\sqrt{2}"
    assert mathml_string_to_latex('<?xml version="1.0" encoding="UTF-8"?><math><mi>π</mi></math>') == r"\pi"


# -- malformed input ----------------------------------------------------------------------------

MALFORMED_CASES = [
    ("<math><mfrac><mi>a</mi></mfrac></math>", "mfrac_arity"),
    ("<math><msup><mi>a</mi><mi>b</mi><mi>c</mi></msup></math>", "msup_arity"),
    ("<math><msub><mi>a</mi></msub></math>", "msub_arity"),
    ("<math><msubsup><mi>a</mi><mi>b</mi></msubsup></math>", "msubsup_arity"),
    ("<math><mroot><mi>a</mi></mroot></math>", "mroot_arity"),
    ("<math><munderover><mo>∑</mo></munderover></math>", "munderover_arity"),
    ("<math><mmultiscripts><mi>R</mi><mi>i</mi></mmultiscripts></math>", "mmultiscripts_arity"),
    ("<math><mfoo><mi>a</mi></mfoo></math>", "unknown_element:mfoo"),
    ("<math><mrow><div>x</div></mrow></math>", "unknown_element:div"),
    ("<math><mtable><mi>a</mi></mtable></math>", "mtable_child:mi"),
    ("<math><mrow><mtr/></mrow></math>", "misplaced_element:mtr"),
    ("<math></math>", "empty_math"),
    ("<math>  </math>", "empty_math"),
    ("<math><mrow/></math>", "empty_math"),
    ("<div><mi>x</mi></div>", "not_math"),
    ("<math><mi>x</mi>", "xml_syntax"),
    ("not xml at all", "xml_syntax"),
    ("", "xml_syntax"),
    ("<math>" + "<mrow>" * 220 + "<mi>x</mi>" + "</mrow>" * 220 + "</math>", "too_deep"),
    ("<math>" + "<mrow>" * 300 + "<mi>x</mi>" + "</mrow>" * 300 + "</math>", "too_deep"),  # libxml2's limit
]


@pytest.mark.parametrize(("markup", "reason"), MALFORMED_CASES, ids=[c[1] for c in MALFORMED_CASES])
def test_malformed(markup: str, reason: str) -> None:
    with pytest.raises(MathMLError) as info:
        mathml_string_to_latex(markup)
    assert info.value.reason == reason


def test_malformed_from_html_parser() -> None:
    page = lxml.html.fromstring("<p><math><mfrac><mi>a</mi></mfrac></math><math></math></p>")
    with pytest.raises(MathMLError, match="mfrac_arity"):
        mathml_to_latex(elements(page, "math")[0])
    with pytest.raises(MathMLError) as info:
        mathml_to_latex(elements(page, "math")[1])
    assert info.value.reason == "empty_math"
    with pytest.raises(MathMLError) as info:
        mathml_to_latex(page)
    assert info.value.reason == "not_math"


def test_deep_nesting_beyond_recursion_limit() -> None:
    root = element = etree.Element("math")
    for _ in range(5000):
        element = etree.SubElement(element, "msqrt")
    etree.SubElement(element, "mi").text = "x"
    with pytest.raises(MathMLError) as info:
        mathml_to_latex(root)
    assert info.value.reason == "too_deep"


FUZZ_TAGS = ["math", "mi", "mn", "mo", "mrow", "mfrac", "msup", "msub", "msubsup", "msqrt", "mroot", "munder",
             "mover", "munderover", "mtable", "mtr", "mtd", "mlabeledtr", "mtext", "mspace", "mfenced",
             "semantics", "annotation", "mstyle", "mpadded", "mphantom", "menclose", "merror", "maction", "ms",
             "mmultiscripts", "mprescripts", "none", "mglyph", "span"]
FUZZ_TEXT = ["x", "12", "∑", "(", ")", "{", "⟨", "lim", "sin", "α", "", " ", "\\", "&amp;", "′", "¯", "→",
             "⏟"]
FUZZ_ATTRS = ['', ' width="1em"', ' linethickness="0"', ' stretchy="false"', ' mathvariant="bold"',
              ' columnalign="right left"', ' notation="box"', ' separators=""', ' open="" close="|"',
              ' encoding="application/x-tex"', ' accent="true"', ' selection="9"', ' width="-3pt"']


def random_tree(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(FUZZ_TEXT)
    tag = rng.choice(FUZZ_TAGS)
    children = "".join(random_tree(rng, depth - 1) for _ in range(rng.randint(0, 4)))
    return f"<{tag}{rng.choice(FUZZ_ATTRS)}>{children}</{tag}>"


def balanced(latex: str) -> bool:
    """Braces nest (escaped ones aside); \\left/\\right and \\begin/\\end pair up."""
    depth = 0
    for char in re.sub(r"\\[{}]", "", latex):
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return False
    return depth == 0 and latex.count(r"\begin{") == latex.count(r"\end{") and \
        len(re.findall(r"\\left(?![a-z])", latex)) == len(re.findall(r"\\right(?![a-z])", latex))


def test_fuzz_random_strings_and_trees() -> None:
    rng = random.Random(7)
    alphabet = "<>/=\"' mathrowifnsupbc&;#x0123∑()"
    outcomes = {"ok": 0, "error": 0}
    for index in range(1500):
        if index % 3 == 0:
            markup = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        else:
            markup = "<math>" + random_tree(rng, 6) + "</math>"
        for parse in ("xml", "html"):
            try:
                if parse == "xml":
                    latex = mathml_string_to_latex(markup)
                else:
                    maths = elements(lxml.html.fromstring(f"<div>{markup} </div>"), "math")
                    if not maths:
                        continue
                    latex = mathml_to_latex(maths[0])
                assert isinstance(latex, str) and latex
                if "annotation" not in markup:  # x-tex annotations are copied verbatim
                    assert balanced(latex), (markup, latex)
                outcomes["ok"] += 1
            except MathMLError as exc:
                assert re.fullmatch(r"[a-z_]+(:[a-z0-9:_.-]+)?", exc.reason), exc.reason
                assert not exc.reason.startswith("internal_error"), (markup, exc)
                outcomes["error"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 100


# -- whole real formulas --------------------------------------------------------------------------

def normalise(tex: str, allowances: bool = False) -> str:
    """The comparison the brief asks for: no whitespace, no braces, no \\left/\\right, no style switches.
    With ``allowances``, also \\mbox == \\text and no trailing \\\\ before \\end."""
    if allowances:
        tex = re.sub(r"\\\\\s*(?=\\end\{)", "", tex.replace(r"\mbox", r"\text"))
    tex = re.sub(r"\\(displaystyle|textstyle|scriptstyle|scriptscriptstyle|left|right)(?![A-Za-z])", "", tex)
    return re.sub(r"[\s{}]", "", tex)


def page_formulas(path: Path) -> list[etree._Element]:
    return elements(lxml.html.fromstring(path.read_bytes()), "math")


def without_tex(math: etree._Element) -> tuple[etree._Element, str]:
    """A copy of ``math`` without its x-tex annotation, and the annotation's text."""
    math = copy.deepcopy(math)
    annotations = [el for el in math.iter() if local_name(el) == "annotation"]
    tex = annotations[0].text_content().strip()
    for annotation in annotations:
        annotation.getparent().remove(annotation)
    return math, tex


def test_wikipedia_formulas_match_annotations() -> None:
    formulas = page_formulas(WIKIPEDIA_PAGE)
    assert len(formulas) == 66
    strict, lenient = [], []
    for math in formulas:
        stripped, tex = without_tex(math)
        latex = mathml_to_latex(stripped)
        strict.append(normalise(latex) == normalise(tex))
        lenient.append(normalise(latex, allowances=True) == normalise(tex, allowances=True))
    # Measured 63/66 strict, 65/66 with allowances. The misses: \mbox{} (we write \text{}), a trailing
    # \\ before \end{bmatrix}, and \dots, which MathML renders as … (we write \ldots).
    assert sum(strict) >= 63
    assert sum(lenient) >= 65


@pytest.mark.parametrize("index", [0, 20, 34, 39, 52])
def test_wikipedia_formula_exact(index: int) -> None:
    stripped, tex = without_tex(page_formulas(WIKIPEDIA_PAGE)[index])
    assert normalise(mathml_to_latex(stripped), allowances=True) == normalise(tex, allowances=True)


def test_wikipedia_annotation_preferred() -> None:
    math = page_formulas(WIKIPEDIA_PAGE)[0]
    assert mathml_to_latex(math) == (r"{\displaystyle A{\text{ Hermitian}}\quad \iff \quad "
                                     r"a_{ij}={\overline {a_{ji}}}}")


def test_mathjax_demo_handwritten_mathml() -> None:
    """The MathJax demo page written in MathML by hand (no MathJax classes, plain <mo> fences)."""
    formulas = page_formulas(MATHJAX_DEMO_PAGE)
    assert len(formulas) == 13
    latex = [mathml_to_latex(math) for math in formulas]
    assert latex[8] == r"P(E)=\binom{n}{k}p^k(1-p)^{n-k}"
    assert latex[12] == r"\sqrt{3x-1}+(1+x)^2"


def test_mathjax_v3_formulas() -> None:
    formulas = page_formulas(MATHJAX_PAGE)
    assert len(formulas) == 13
    latex = [mathml_to_latex(math) for math in formulas]
    assert all(latex)
    assert latex[2] == r"x=\frac{-b\pm\sqrt{b^2-4ac}}{2a}\text{.}"
    assert latex[8] == r"P(E)=\binom{n}{k}p^k(1-p)^{n-k}"
    assert latex[3] == (r"\begin{aligned}\dot{x} & =\sigma(y-x) \\ \dot{y} & =\rho x-y-xz \\ "
                        r"\dot{z} & =-\beta z+xy\end{aligned}")
    assert is_display(formulas[2]) and not is_display(formulas[0])
