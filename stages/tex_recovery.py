"""TeX recovery: find every formula of a math page in its HTML and protect it from the text browser.

lynx drops MathJax v2 ``<script type="math/tex">`` sources, prints MathML as flat text, and wraps
or reflows TeX written between delimiters. So before lynx sees a page, each formula is replaced by
a placeholder word (``ZQTEX12Q``) that lynx keeps as it is, and after rendering the placeholder is
replaced by the TeX as ``$...$`` (inline) or ``$$...$$`` (display). Formulas come from, in order:

1. KaTeX output (``.katex``, ``.katex-display``): the ``application/x-tex`` annotation; the visual
   ``katex-html`` layer goes with it.
2. Wikipedia's ``mwe-math-element``: the annotation, else the MathML ``alttext``, else the
   fallback image's ``alt``; the image goes with it.
3. MathJax v3/v4 output (``mjx-container``): the assistive MathML inside (annotation or converted).
4. MathJax v2 rendered duplicates (``MathJax_Preview``, ``MathJax``, ``MathJax_Display``, the SVG
   and CommonHTML variants) are removed: the source follows them in a script tag.
5. ``<script type="math/tex">`` (``; mode=display`` for display) and ``math/mml`` scripts.
6. Every other ``<math>``: its TeX annotation, else ``alttext``, else our MathML converter
   (:mod:`stages.mathml_latex`). A formula the converter refuses stays as MathML (lynx prints its
   text) and its reason is counted, so nothing is lost silently.
7. Images of formulas (``alt`` text that looks like TeX on a LaTeX-rendering image: WordPress
   ``latex`` class, ``latex.php``, codecogs, ...).
8. TeX between delimiters in text, with the delimiters the page's own MathJax configuration sets
   (v2 ``tex2jax``, v3 ``tex``; v4's ``'[+]'`` additions; KaTeX auto-render ``delimiters``), else
   MathJax's defaults: ``\\(..\\)`` inline, ``$$..$$`` and ``\\[..\\]`` display; and LaTeX
   environments (``\\begin{align}`` ...), as display. Text inside ``pre``, ``code``, ``textarea``,
   ``script``, ``style`` is left alone, as MathJax leaves it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import lxml.html
from lxml import etree

from stages.mathml_latex import MathMLError, mathml_to_latex

TEX_ENCODINGS = ("application/x-tex", "tex", "text/x-tex", "application/x-latex")
SKIP_TEXT_TAGS = frozenset({"script", "style", "pre", "code", "textarea", "noscript", "annotation",
                            "annotation-xml", "math", "option", "title"})
MATHJAX_V2_RENDERED = frozenset({"MathJax_Preview", "MathJax", "MathJax_Display", "MathJax_SVG",
                                 "MathJax_SVG_Display", "MathJax_CHTML", "mjx-chtml", "MJXc-display",
                                 "MathJax_MathML", "MathJax_PHTML", "MathJax_PlainSource"})
DEFAULT_INLINE = (("\\(", "\\)"),)
DEFAULT_DISPLAY = (("$$", "$$"), ("\\[", "\\]"))
_ENVIRONMENT = re.compile(r"\\begin\{([a-zA-Z]+\*?)\}")
MATH_ENVIRONMENTS = frozenset({
    "equation", "equation*", "align", "align*", "aligned", "gather", "gather*", "multline", "multline*",
    "eqnarray", "eqnarray*", "flalign", "flalign*", "alignat", "alignat*", "split", "displaymath", "math",
    "matrix", "pmatrix", "bmatrix", "vmatrix", "Vmatrix", "cases", "array", "CD"})
_IMAGE_TEX_SOURCE = re.compile(r"latex|codecogs|mathtex|tex2img|texvc|/math/render|wp-latex|mimetex|quicklatex", re.I)
_TEX_LIKE = re.compile(r"\\[a-zA-Z]+|[\^_]\{?|=")


@dataclass(frozen=True)
class Formula:
    """A recovered formula: its TeX, whether it is displayed, and where it came from."""

    tex: str
    display: bool
    origin: str


@dataclass
class RecoveredPage:
    """A page's HTML with placeholders, the formulas behind them, and what could not be recovered."""

    html: str
    formulas: dict[str, Formula] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    def origins(self) -> Counter[str]:
        """Formulas counted by where they came from."""
        return Counter(f.origin for f in self.formulas.values())


@dataclass
class Delimiters:
    """The TeX delimiters a page's math renderer looks for in its text."""

    inline: list[tuple[str, str]]
    display: list[tuple[str, str]]
    environments: bool = True


# ---------------------------------------------------------------------- the page's configuration

_KEY_VALUE = r"['\"]?{key}['\"]?\s*:\s*"
_JS_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _js_string(literal: tuple[str, str]) -> str:
    raw = literal[0] if literal[0] or not literal[1] else literal[1]
    return re.sub(r"\\(.)", r"\1", raw)


def _bracketed(source: str, start: int) -> str:
    """The balanced ``[...]`` or ``{...}`` value starting at ``start`` (or up to 2000 chars)."""
    opener = source[start] if start < len(source) else ""
    if opener not in "[{":
        return ""
    closer = "]" if opener == "[" else "}"
    depth = 0
    end = min(len(source), start + 2000)
    i = start
    while i < end:
        ch = source[i]
        if ch in "'\"":
            m = _JS_STRING.match(source, i)
            if m:
                i = m.end()
                continue
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return source[start:i + 1]
        i += 1
    return source[start:end]


def _pairs(value: str) -> list[tuple[str, str]]:
    """String pairs ``['a', 'b']`` in a JS array literal."""
    strings = [_js_string((m.group(1) or "", m.group(2) or "")) for m in _JS_STRING.finditer(value)]
    strings = [s for s in strings if s not in ("[+]", "[-]")]
    return [(strings[i], strings[i + 1]) for i in range(0, len(strings) - 1, 2)]


def _configured(source: str, key: str, default: tuple[tuple[str, str], ...]) -> list[tuple[str, str]] | None:
    m = re.search(_KEY_VALUE.format(key=key), source)
    if not m:
        return None
    value = _bracketed(source, m.end())
    pairs = _pairs(value)
    if "'[+]'" in value or '"[+]"' in value:
        return list(dict.fromkeys([*default, *pairs]))
    return pairs


def page_delimiters(scripts: list[str]) -> Delimiters:
    """The delimiters configured by a page's inline scripts (MathJax v2/v3/v4, KaTeX auto-render)."""
    inline: list[tuple[str, str]] | None = None
    display: list[tuple[str, str]] | None = None
    environments = True
    for source in scripts:
        if "inlineMath" in source or "displayMath" in source:
            inline = _configured(source, "inlineMath", DEFAULT_INLINE) or inline
            display = _configured(source, "displayMath", DEFAULT_DISPLAY) or display
            if re.search(_KEY_VALUE.format(key="processEnvironments") + r"false", source):
                environments = False
        if "renderMathInElement" in source and "delimiters" in source:
            m = re.search(_KEY_VALUE.format(key="delimiters"), source)
            if m:
                value = _bracketed(source, m.end())
                for item in re.finditer(r"\{[^{}]*\}", value):
                    left = re.search(_KEY_VALUE.format(key="left") + _JS_STRING.pattern, item.group(0))
                    right = re.search(_KEY_VALUE.format(key="right") + _JS_STRING.pattern, item.group(0))
                    if not (left and right):
                        continue
                    pair = (_js_string(left.groups()), _js_string(right.groups()))
                    is_display = re.search(_KEY_VALUE.format(key="display") + r"true", item.group(0))
                    target = display if is_display else inline
                    if target is None:
                        target = []
                        if is_display:
                            display = target
                        else:
                            inline = target
                    target.append(pair)
    return Delimiters(inline if inline is not None else list(DEFAULT_INLINE),
                      display if display is not None else list(DEFAULT_DISPLAY), environments)


# ---------------------------------------------------------------------- the pre-pass


def _classes(el: Any) -> set[str]:
    return set((el.get("class") or "").split())


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def _tex_annotation(el: Any) -> str | None:
    for node in el.iter():
        if _local(node.tag) == "annotation" and (node.get("encoding") or "").strip().lower() in TEX_ENCODINGS:
            text = (node.text or "").strip()
            if text:
                return text
    return None


def _math_elements(el: Any) -> list[Any]:
    return [node for node in el.iter() if _local(node.tag) == "math"]


def _is_display_math(math: Any) -> bool:
    return (math.get("display") or "").lower() == "block" or (math.get("mode") or "").lower() == "display"


def _strip_display_style(tex: str) -> str:
    """Wikipedia wraps its annotations in ``{\\displaystyle ...}``; the wrapper says nothing useful."""
    m = re.fullmatch(r"\{\\(?:displaystyle|textstyle)\s*(.*)\}", tex.strip(), re.S)
    return m.group(1).strip() if m else tex.strip()


class TexRecovery:
    """Runs the pre-pass over one page; see the module docstring for what it recovers."""

    def __init__(self, placeholder_prefix: str = "ZQTEX") -> None:
        self.prefix = placeholder_prefix

    def recover(self, html: str) -> RecoveredPage:
        """The page with its formulas replaced by placeholders (raises ``ValueError`` if unparseable)."""
        prefix = self.prefix
        while prefix in html:
            prefix += "Q"
        try:
            root = lxml.html.document_fromstring(html)
        except (etree.ParserError, ValueError) as exc:
            raise ValueError(f"HTML not parseable: {exc}") from exc
        page = RecoveredPage(html="")
        state = _PageState(page, prefix)
        scripts = [s.text or "" for s in root.iter("script") if not (s.get("type") or "").startswith("math/")]
        delimiters = page_delimiters(scripts)
        self._katex(root, state)
        self._wikipedia(root, state)
        self._mathjax3(root, state)
        self._mathjax2_rendered(root)
        self._scripts(root, state)
        self._math(root, state)
        self._images(root, state)
        _TextDelimiters(delimiters, state).walk(root)
        page.html = lxml.html.tostring(root, encoding="unicode")
        return page

    # -- element kinds, in the order of the module docstring

    def _katex(self, root: Any, state: _PageState) -> None:
        for el in list(root.iter()):
            if not isinstance(el.tag, str) or "katex" not in _classes(el) or _detached(el, root):
                continue
            display = any("katex-display" in _classes(a) for a in el.iterancestors())
            tex = _tex_annotation(el)
            if tex is None:
                maths = _math_elements(el)
                tex = state.convert(maths[0]) if maths else None
                origin = "katex_mathml"
            else:
                origin = "katex_annotation"
            if tex is not None:
                target = el
                for anc in el.iterancestors():
                    if "katex-display" in _classes(anc):
                        target = anc
                        break
                state.replace(target, Formula(tex, display, origin))

    def _wikipedia(self, root: Any, state: _PageState) -> None:
        for el in list(root.iter()):
            if not isinstance(el.tag, str) or "mwe-math-element" not in _classes(el) or _detached(el, root):
                continue
            maths = _math_elements(el)
            display = any("mwe-math-mathml-display" in _classes(n) for n in el.iter() if isinstance(n.tag, str)) \
                or any(_is_display_math(m) for m in maths)
            tex, origin = None, ""
            if maths:
                tex, origin = _tex_annotation(maths[0]), "mathml_annotation"
                if tex is None and maths[0].get("alttext"):
                    tex, origin = maths[0].get("alttext"), "mathml_alttext"
            if tex is None:
                for img in el.iter("img"):
                    if img.get("alt"):
                        tex, origin = img.get("alt"), "image_alt"
                        break
            if tex is None and maths:
                tex, origin = state.convert(maths[0]), "mathml_converted"
            if tex is not None:
                state.replace(el, Formula(_strip_display_style(tex), display, origin))

    def _mathjax3(self, root: Any, state: _PageState) -> None:
        for el in list(root.iter()):
            if _local(el.tag) != "mjx-container" or _detached(el, root):
                continue
            display = (el.get("display") or "").lower() == "true" or "MJXc-display" in _classes(el)
            maths = _math_elements(el)
            if not maths:
                state.page.failures["mathjax3_without_mathml"] += 1
                _drop(el)
                continue
            tex = _tex_annotation(maths[0]) or maths[0].get("alttext")
            if tex is not None:
                state.replace(el, Formula(_strip_display_style(tex), display or _is_display_math(maths[0]),
                                          "mathjax3_annotation"))
                continue
            # Only the assistive MathML is the formula: keep it for the MathML step, drop the glyphs.
            if display:
                maths[0].set("display", "block")
            _drop_all_but(el, maths[0])

    def _mathjax2_rendered(self, root: Any) -> None:
        for el in list(root.iter()):
            if isinstance(el.tag, str) and _classes(el) & MATHJAX_V2_RENDERED and not _detached(el, root):
                _drop(el)

    def _scripts(self, root: Any, state: _PageState) -> None:
        for el in list(root.iter("script")):
            kind = (el.get("type") or "").strip().lower()
            if kind.startswith(("math/tex", "text/tex", "text/x-tex")):
                tex = (el.text or "").strip()
                if tex:
                    state.replace(el, Formula(tex, "mode=display" in kind.replace(" ", ""), "script_tex"))
                else:
                    _drop(el)
            elif kind.startswith("math/mml"):
                try:
                    math = etree.fromstring((el.text or "").strip().encode("utf-8"))
                except etree.XMLSyntaxError:
                    state.page.failures["mathml_script_xml_syntax"] += 1
                    continue
                tex = _tex_annotation(math) or math.get("alttext") or state.convert(math)
                if tex is not None:
                    state.replace(el, Formula(tex, _is_display_math(math), "script_mathml"))

    def _math(self, root: Any, state: _PageState) -> None:
        for math in [m for m in root.iter() if _local(m.tag) == "math"]:
            if _detached(math, root):
                continue
            tex, origin = _tex_annotation(math), "mathml_annotation"
            if tex is None and math.get("alttext"):
                tex, origin = math.get("alttext"), "mathml_alttext"
            if tex is None:
                tex, origin = state.convert(math), "mathml_converted"
            if tex is not None:
                state.replace(math, Formula(_strip_display_style(tex), _is_display_math(math), origin))

    def _images(self, root: Any, state: _PageState) -> None:
        for img in list(root.iter("img")):
            alt = (img.get("alt") or "").strip()
            if not alt or _detached(img, root):
                continue
            source = " ".join([img.get("src") or "", img.get("class") or "", img.get("data-src") or ""])
            if not _IMAGE_TEX_SOURCE.search(source) or not _TEX_LIKE.search(alt):
                continue
            display = False
            m = re.fullmatch(r"\$\$(.+)\$\$|\$(.+)\$|\\\[(.+)\\\]|\\\((.+)\\\)", alt, re.S)
            if m:
                display = bool(m.group(1) or m.group(3))
                alt = next(g for g in m.groups() if g)
            state.replace(img, Formula(alt.strip(), display, "image_alt"))


def _detached(el: Any, root: Any) -> bool:
    """Whether an element was removed from the tree by an earlier replacement."""
    for anc in el.iterancestors():
        if anc is root:
            return False
    return el is not root


def _drop(el: Any) -> None:
    """Remove an element but keep its tail text."""
    parent = el.getparent()
    if parent is None:
        return
    el.drop_tree()


def _drop_all_but(el: Any, keep: Any) -> None:
    parent = el.getparent()
    if parent is None:
        return
    keep.tail = el.tail
    el.addprevious(keep)
    parent.remove(el)


class _PageState:
    """Placeholders issued for one page."""

    def __init__(self, page: RecoveredPage, prefix: str) -> None:
        self.page = page
        self.prefix = prefix

    def token(self, formula: Formula) -> str:
        token = f"{self.prefix}{len(self.page.formulas)}Q"
        self.page.formulas[token] = formula
        return token

    def convert(self, math: Any) -> str | None:
        try:
            tex = mathml_to_latex(math)
        except MathMLError as exc:
            self.page.failures[f"mathml:{exc.reason}"] += 1
            return None
        return tex.strip() or None

    def replace(self, el: Any, formula: Formula) -> None:
        """Put the formula's placeholder where ``el`` was (in its own block when displayed)."""
        if not formula.tex.strip():
            _drop(el)
            return
        token = self.token(formula)
        parent = el.getparent()
        if parent is None:
            return
        if formula.display:
            block = lxml.html.Element("div")
            block.text = token
            block.tail = el.tail
            parent.replace(el, block)
            return
        tail = el.tail or ""
        previous = el.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + token + tail
        else:
            parent.text = (parent.text or "") + token + tail
        parent.remove(el)


class _TextDelimiters:
    """Finds TeX between delimiters in a page's text nodes and replaces it with placeholders."""

    def __init__(self, delimiters: Delimiters, state: _PageState) -> None:
        self.state = state
        self.openers: list[tuple[str, str, bool]] = sorted(
            [(o, c, False) for o, c in delimiters.inline] + [(o, c, True) for o, c in delimiters.display],
            key=lambda d: -len(d[0]))  # "$$" before "$"
        self.environments = delimiters.environments

    def walk(self, root: Any) -> None:
        for el in list(root.iter()):
            if not isinstance(el.tag, str):
                continue
            if _local(el.tag) not in SKIP_TEXT_TAGS and not any(_local(a.tag) in SKIP_TEXT_TAGS
                                                                  for a in el.iterancestors()):
                if el.text:
                    el.text = self.replace(el.text)
            parent = el.getparent()
            if el.tail and parent is not None and _local(parent.tag) not in SKIP_TEXT_TAGS \
                    and not any(_local(a.tag) in SKIP_TEXT_TAGS for a in parent.iterancestors()):
                el.tail = self.replace(el.tail)

    def replace(self, text: str) -> str:
        """``text`` with each delimited formula replaced by its placeholder."""
        if "\\" not in text and "$" not in text:
            return text
        out: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            found = self._next(text, i)
            if found is None:
                out.append(text[i:])
                break
            start, end, tex, display = found
            out.append(text[i:start])
            if display:
                out.append(f" {self.state.token(Formula(tex, True, 'text_delimiters'))} ")
            else:
                out.append(self.state.token(Formula(tex, False, "text_delimiters")))
            i = end
        return "".join(out)

    def _next(self, text: str, pos: int) -> tuple[int, int, str, bool] | None:
        """The first formula at or after ``pos``: (start, end, tex, display)."""
        best: tuple[int, int, str, bool] | None = None
        for opener, closer, display in self.openers:
            start = _find_unescaped(text, opener, pos)
            while start != -1 and (best is None or start < best[0]):
                close = _find_unescaped(text, closer, start + len(opener))
                if opener == "$" and text.startswith("$$", start):
                    start = _find_unescaped(text, opener, start + 2)
                    continue
                if close == -1:
                    break
                tex = text[start + len(opener):close]
                if tex.strip() and not (opener == "$" and _looks_like_money(tex)):
                    best = (start, close + len(closer), tex.strip(), display)
                    break
                start = _find_unescaped(text, opener, start + len(opener))
        if self.environments:
            for m in _ENVIRONMENT.finditer(text, pos):
                if best is not None and m.start() >= best[0]:
                    break
                name = m.group(1)
                if name not in MATH_ENVIRONMENTS:
                    continue
                end_marker = f"\\end{{{name}}}"
                close = text.find(end_marker, m.end())
                if close != -1:
                    best = (m.start(), close + len(end_marker), text[m.start():close + len(end_marker)].strip(), True)
                    break
        return best


def _find_unescaped(text: str, needle: str, pos: int) -> int:
    """The next ``needle`` at or after ``pos`` not preceded by a backslash escape (``\\$``)."""
    while True:
        i = text.find(needle, pos)
        if i <= 0 or needle[0] != "$":
            return i
        backslashes = len(text[:i]) - len(text[:i].rstrip("\\"))
        if backslashes % 2 == 0:
            return i
        pos = i + 1


def _looks_like_money(tex: str) -> bool:
    """``$5 and $`` in "costs $5 and $10": digits then prose, no TeX."""
    return bool(re.match(r"\s*\d", tex)) and not re.search(r"[\\^_{}=]", tex) and len(tex.split()) > 1


# ---------------------------------------------------------------------- after rendering

_SPACES = re.compile(r"\s+")


def tex_for_text(formula: Formula) -> str:
    """The formula as it goes into the text: ``$...$`` on one line, or ``$$...$$`` on lines of its own."""
    if formula.display:
        lines = [line.strip() for line in formula.tex.strip().splitlines()]
        return "$$" + "\n".join(line for line in lines if line) + "$$"
    return "$" + _SPACES.sub(" ", formula.tex).strip() + "$"


def restore_tex(text: str, formulas: dict[str, Formula]) -> tuple[str, int]:
    """Rendered text with placeholders replaced by TeX; and how many placeholders were missing."""
    if not formulas:
        return text, 0
    token = re.escape(_common_prefix(formulas)) + r"\d+Q"
    pattern = re.compile(r"(?P<indent>[ \t]*)(?P<token>" + token + r")(?P<trail>[ \t]*)")
    seen: set[str] = set()

    def put_back(m: re.Match[str]) -> str:
        token = m.group("token")
        formula = formulas.get(token)
        if formula is None:
            return m.group(0)
        seen.add(token)
        tex = tex_for_text(formula)
        if formula.display:
            return "\n" + tex + "\n"
        return m.group("indent") + tex + m.group("trail")

    restored = pattern.sub(put_back, text)
    # Display formulas sit on lines of their own: no blank-only lines left from the split, no trailing spaces.
    lines = [line.rstrip() for line in restored.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out).strip("\n"), len(formulas) - len(seen)


def _common_prefix(formulas: dict[str, Formula]) -> str:
    token = next(iter(formulas))
    return re.sub(r"\d+Q$", "", token)
