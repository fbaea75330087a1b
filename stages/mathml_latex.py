"""Presentation MathML -> LaTeX, for ``<math>`` elements that carry no TeX of their own.

The TeX recovery pre-pass prefers an ``application/x-tex`` annotation or ``alttext``; this converter
is its fallback. It works on lxml elements from either parser: ``lxml.etree`` (XML, tags like
``{http://www.w3.org/1998/Math/MathML}mi``) or ``lxml.html`` (lowercased tags, prefixes kept as
``m:mi``). Element names are compared by their lowercased local name, so both look the same here.

Output aims at what a person would have typed: ``\\frac{a}{b}``, ``x^2`` but ``a_{ij}`` (braces only
where needed), ``\\sum_{k=1}^n``, ``\\left( ... \\right)`` for stretchy fences, ``\\begin{pmatrix}``
(bmatrix, vmatrix, cases) for a table between fences, ``\\binom`` for MathJax's binomials.
Bad input raises :class:`MathMLError`, whose ``reason`` is a short snake_case drop reason; nothing
else escapes for any input.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Callable

from lxml import etree

from stages.mathml_tables import (
    BRACES, FENCES, FUNCTION_NAMES, GREEK, LARGE_OPERATORS, MATRIX_ENVIRONMENTS, MATHVARIANT_COMMANDS,
    NAMED_SPACES, OVER_ACCENTS, SPACED_ARROWS, SYMBOLS, TEXT_ESCAPES, UNDER_ACCENTS, UNICODE_STYLE_COMMANDS,
    UNIT_EM)

logger = logging.getLogger(__name__)

MATHML_NS = "http://www.w3.org/1998/Math/MathML"
MAX_DEPTH = 200
TEX_ANNOTATION_ENCODINGS = frozenset({
    "application/x-tex", "application/x-latex", "text/x-tex", "text/tex", "tex", "latex"})
OPENING_FENCES = frozenset("([{⟨〈⌊⌈")
CLOSING_FENCES = frozenset(")]}⟩〉⌋⌉")

XML_WHITESPACE = re.compile(r"[ \t\n\r]+")
COMMAND_AT_END = re.compile(r"\\[A-Za-z]+$")
# A bare one-character script (x^2, a_k): a following letter or digit is set apart for readability.
SHORT_SCRIPT_AT_END = re.compile(r"[_^][A-Za-z0-9]$")
# \left or \right with the delimiter after it.
LEFT_RIGHT = re.compile(r"\\(left|right)(?![A-Za-z])(\\[A-Za-z]+|\\.|.)")
SAFE_NAME = re.compile(r"[^a-z0-9_-]")


class MathMLError(ValueError):
    """Malformed or unsupported MathML; ``reason`` is a short snake_case drop reason."""

    reason: str

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Element helpers
# ---------------------------------------------------------------------------------------------

def local_name(element: etree._Element) -> str | None:
    """Lowercased MathML name of an element (namespace and prefix removed); None for comments etc."""
    tag = getattr(element, "tag", None)
    if not isinstance(tag, str):
        return None
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def _safe(name: str) -> str:
    """An element name fit to appear in a drop reason."""
    return SAFE_NAME.sub("_", name.lower())[:40] or "_"


def _where(element: etree._Element) -> str:
    """``<name> at line N`` for error messages."""
    line = element.sourceline
    return f"<{_safe(str(local_name(element)))}>" + (f" at line {line}" if line else "")


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children, without comments and processing instructions."""
    return [child for child in element if isinstance(child.tag, str)]


def _attr(element: etree._Element, name: str) -> str:
    """An attribute's value, stripped and lowercased ('' if absent)."""
    return (element.get(name) or "").strip().lower()


def _token_text(element: etree._Element) -> str:
    """Text of a token element with XML whitespace collapsed and stripped (comments skipped)."""
    pieces = [element.text or ""]
    for child in element:
        if isinstance(child.tag, str):
            pieces.append(child.get("alt") or "".join(child.itertext()))
        pieces.append(child.tail or "")
    return XML_WHITESPACE.sub(" ", "".join(pieces)).strip(" ")


def is_display(math: etree._Element) -> bool:
    """True for display math: ``display="block"`` or ``mode="display"``."""
    return _attr(math, "display") == "block" or _attr(math, "mode") == "display"


# ---------------------------------------------------------------------------------------------
# LaTeX string helpers
# ---------------------------------------------------------------------------------------------

def join_latex(parts: list[str]) -> str:
    """Concatenate LaTeX pieces, with a space only where a command would glue to a letter (or a
    bare one-character script would run into the next token: ``a_k b_k``)."""
    out = ""
    for part in parts:
        if not part:
            continue
        if out and part[0].isalnum() and (COMMAND_AT_END.search(out) or SHORT_SCRIPT_AT_END.search(out)):
            out += " "
        out += part
    return out


def _is_atom(latex: str) -> bool:
    """True when ``latex`` is one unit for ^/_ purposes: a character, a command with its braced
    arguments, or a single braced group."""
    if len(latex) == 1:
        return latex not in " ^_'&"
    if latex.startswith(r"\left"):
        return _is_left_right_group(latex)
    i = 0
    if latex.startswith("\\"):
        match = re.match(r"\\([A-Za-z]+|.)", latex)
        assert match is not None
        i = match.end()
        if i == len(latex):
            return True
    while i < len(latex):
        if latex[i] not in "{[":
            return False
        i = _group_end(latex, i)
        if i < 0:
            return False
    return True


def _is_left_right_group(latex: str) -> bool:
    """True when ``latex`` is one ``\\left ... \\right`` pair from start to end."""
    depth = 0
    for match in LEFT_RIGHT.finditer(latex):
        depth += 1 if match.group(1) == "left" else -1
        if depth == 0:
            return match.end() == len(latex)
    return False


def _group_end(latex: str, start: int) -> int:
    """Index after the group opened at ``start`` ('{' or '['), or -1 if unbalanced."""
    close = "}" if latex[start] == "{" else "]"
    depth = 0
    i = start
    while i < len(latex):
        char = latex[i]
        if char == "\\":
            i += 2
            continue
        if char == latex[start]:
            depth += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _script(latex: str) -> str:
    """A sub/superscript argument: bare if a single character, else braced."""
    if len(latex) == 1 and latex not in " ^_'&":
        return latex
    return "{" + latex + "}"


def _base(latex: str) -> str:
    """A script base: bare if atomic, ``{}`` if empty, braced otherwise."""
    if not latex:
        return "{}"
    return latex if _is_atom(latex) else "{" + latex + "}"


def _scripts(base: str, sub: str | None, sup: str | None) -> str:
    """``base_{sub}^{sup}`` with primes written as ``'`` and empty scripts left out."""
    out = _base(base)
    if sub:
        out += "_" + _script(sub)
    if sup:
        out += sup if set(sup) == {"'"} else "^" + _script(sup)
    return out


def _map_chars(text: str) -> str:
    """Math-mode TeX for the characters of a token's text."""
    return join_latex([_map_char(char) for char in text])


def _map_char(char: str) -> str:
    """Math-mode TeX for one character."""
    if char in SYMBOLS:
        return SYMBOLS[char]
    if char == " ":
        return r"\ "
    if 0x1D400 <= ord(char) <= 0x1D7FF:
        return _styled_letter(char)
    return char


def _styled_letter(char: str) -> str:
    """``\\mathbf{A}`` etc. for a Mathematical Alphanumeric Symbol, from its Unicode name."""
    name = unicodedata.name(char, "")
    rest = name.removeprefix("MATHEMATICAL ")
    command = ""
    for style, style_command in UNICODE_STYLE_COMMANDS:
        if rest.startswith(style):
            rest, command = rest[len(style):], style_command
            break
    plain = _plain_letter(rest)
    if plain is None:
        return char
    if plain.startswith("\\") and command == r"\mathbf":
        command = r"\boldsymbol"
    return f"{command}{{{plain}}}" if command else plain


def _plain_letter(rest: str) -> str | None:
    """The plain letter for a name remainder like ``CAPITAL A``, ``SMALL ALPHA``, ``DIGIT ONE``."""
    try:
        if rest.startswith(("CAPITAL ", "SMALL ")):
            case, letter = rest.split(" ", 1)
            if len(letter) == 1:
                return letter if case == "CAPITAL" else letter.lower()
            greek = unicodedata.lookup(f"GREEK {case} LETTER {letter}")
            return GREEK.get(greek, greek)
        if rest.startswith("DIGIT "):
            return str(unicodedata.digit(unicodedata.lookup(rest)))
    except (KeyError, ValueError):
        return None
    return None


def _text_escape(text: str) -> str:
    """Text-mode escaping for the content of ``\\text{...}``."""
    return "".join(TEXT_ESCAPES.get(char, char) for char in text)


def _word_operator(word: str) -> str:
    """``\\sin`` for a known function name, ``\\operatorname{...}`` for another word."""
    if word in FUNCTION_NAMES:
        return "\\" + word
    if word == "mod":
        return r"\bmod"
    return r"\operatorname{" + word + "}"


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------

class _Converter:
    """One conversion: walks the element tree and returns LaTeX for each element."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[etree._Element, int], str]] = {
            "math": self.row, "mrow": self.row, "mstyle": self.row, "mpadded": self.row,
            "merror": self.row, "mtd": self.row, "mi": self.mi, "mn": self.mn, "mo": self.mo,
            "mtext": self.mtext, "ms": self.ms, "mspace": self.mspace, "mfrac": self.mfrac,
            "msqrt": self.msqrt, "mroot": self.mroot, "msub": self.msub, "msup": self.msup,
            "msubsup": self.msubsup, "munder": self.munder, "mover": self.mover,
            "munderover": self.munderover, "mtable": self.mtable, "mfenced": self.mfenced,
            "semantics": self.semantics, "mphantom": self.mphantom, "menclose": self.menclose,
            "maction": self.maction, "mmultiscripts": self.mmultiscripts, "none": self.empty,
            "maligngroup": self.empty, "malignmark": self.empty, "annotation": self.empty,
            "annotation-xml": self.empty, "mglyph": self.mglyph,
        }

    # -- dispatch --------------------------------------------------------------------------

    def convert(self, element: etree._Element, depth: int) -> str:
        """LaTeX for any MathML element."""
        if depth > MAX_DEPTH:
            raise MathMLError("too_deep", f"nesting deeper than {MAX_DEPTH}")
        name = local_name(element)
        if name is None:
            return ""
        handler = self.handlers.get(name)
        if handler is None:
            if name in ("mtr", "mlabeledtr", "mprescripts"):
                raise MathMLError(f"misplaced_element:{name}", _where(element))
            raise MathMLError(f"unknown_element:{_safe(name)}", _where(element))
        return handler(element, depth + 1)

    def _arity(self, element: etree._Element, count: int) -> list[etree._Element]:
        children = _children(element)
        if len(children) != count:
            name = local_name(element)
            raise MathMLError(f"{name}_arity", f"{_where(element)} has {len(children)} children, expects {count}")
        return children

    # -- rows and fences ---------------------------------------------------------------------

    def row(self, element: etree._Element, depth: int) -> str:
        """An mrow (or anything that holds an inferred mrow)."""
        children = _children(element)
        fenced = self._fenced_row(children, depth)
        if fenced is not None:
            return fenced
        return self.sequence(children, depth)

    def sequence(self, children: list[etree._Element], depth: int) -> str:
        """Children converted and joined in order."""
        parts: list[str] = []
        skip_spaces = self._absorbed_spaces(children)
        for index, child in enumerate(children):
            if index not in skip_spaces:
                parts.append(self.convert(child, depth))
        return join_latex(parts)

    @staticmethod
    def _absorbed_spaces(children: list[etree._Element]) -> set[int]:
        """Indexes of the thick spaces that MathJax wraps around ⟺/⟹/⟸ (\\iff carries them)."""
        skipped: set[int] = set()
        for index, child in enumerate(children):
            if local_name(child) == "mo" and _token_text(child) in SPACED_ARROWS:
                for neighbour in (index - 1, index + 1):
                    if 0 <= neighbour < len(children) and _is_thick_space(children[neighbour]):
                        skipped.add(neighbour)
        return skipped

    @staticmethod
    def _fence_mo(element: etree._Element) -> etree._Element | None:
        """The stretchy fence <mo> that ``element`` is (or wraps in single-child mrows), else None."""
        while local_name(element) == "mrow":
            children = _children(element)
            if len(children) != 1:
                return None
            element = children[0]
        if local_name(element) != "mo" or _attr(element, "stretchy") == "false":
            return None
        if _token_text(element) not in FENCES:
            return None
        return element

    def _fenced_row(self, children: list[etree._Element], depth: int) -> str | None:
        """``\\left( ... \\right)`` (or a matrix environment, or \\binom) for a row between two
        stretchy fences; None when the row is not of that shape."""
        if len(children) < 2:
            return None
        open_mo, close_mo = self._fence_mo(children[0]), self._fence_mo(children[-1])
        if open_mo is None or close_mo is None:
            return None
        opening, closing = _token_text(open_mo), _token_text(close_mo)
        if not opening and not closing:
            return None
        inner = children[1:-1]
        if not _fences_balanced(inner):
            return None  # ( a ) + ( b ): the outer two are not a pair
        while len(inner) == 1 and local_name(inner[0]) == "mrow":
            inner = _children(inner[0])
        if len(inner) == 1:
            only = inner[0]
            if local_name(only) == "mtable" and (opening, closing) in MATRIX_ENVIRONMENTS:
                return self.mtable(only, depth + 1, MATRIX_ENVIRONMENTS[(opening, closing)])
            if local_name(only) == "mfrac" and (opening, closing) == ("(", ")") \
                    and _zero_thickness(only) and len(_children(only)) == 2:
                top, bottom = (self.convert(part, depth + 1) for part in _children(only))
                return rf"\binom{{{top}}}{{{bottom}}}"
        body = self.sequence(inner, depth)
        return join_latex([r"\left" + FENCES[opening], body, r"\right" + FENCES[closing]])

    def mfenced(self, element: etree._Element, depth: int) -> str:
        """mfenced: open/close fences and separators (defaults '(', ')', ',')."""
        opening = (element.get("open") if element.get("open") is not None else "(").strip()
        closing = (element.get("close") if element.get("close") is not None else ")").strip()
        separators = XML_WHITESPACE.sub("", element.get("separators")
                                        if element.get("separators") is not None else ",")
        parts: list[str] = []
        for index, child in enumerate(_children(element)):
            if index and separators:
                parts.append(_map_chars(separators[min(index - 1, len(separators) - 1)]))
            parts.append(self.convert(child, depth))
        body = join_latex(parts)
        if not opening and not closing:
            return body
        left = FENCES.get(opening)
        right = FENCES.get(closing)
        if left is None or right is None:
            return join_latex([_map_chars(opening), body, _map_chars(closing)])
        return join_latex([r"\left" + left, body, r"\right" + right])

    # -- tokens ------------------------------------------------------------------------------

    def mi(self, element: etree._Element, depth: int) -> str:
        """An identifier: letters, function names, \\mathrm{...} for other words."""
        text = _token_text(element)
        variant = _attr(element, "mathvariant")
        if not text:
            return ""
        if len(text) > 1 and text.isalpha() and text.isascii():
            if text in FUNCTION_NAMES and variant in ("", "normal"):
                return "\\" + text
            command = MATHVARIANT_COMMANDS.get(variant, r"\mathrm")
            return f"{command}{{{text}}}"
        return _apply_variant(_map_chars(text), text, variant)

    def mn(self, element: etree._Element, depth: int) -> str:
        """A number."""
        text = _token_text(element)
        return _apply_variant(_map_chars(text), text, _attr(element, "mathvariant"))

    def mo(self, element: etree._Element, depth: int) -> str:
        """An operator: Unicode operators to commands, words to \\lim-style names."""
        text = _token_text(element)
        if len(text) > 1 and text.isalpha() and text.isascii():
            return _word_operator(text)
        return _apply_variant(_map_chars(text), text, _attr(element, "mathvariant"))

    def mtext(self, element: etree._Element, depth: int) -> str:
        """Text: ``\\text{...}`` with TeX specials escaped."""
        text = _token_text(element)
        if not text.strip(" \u00a0"):
            return r"\ " if text else ""
        return r"\text{" + _text_escape(text) + "}"

    def ms(self, element: etree._Element, depth: int) -> str:
        """A string literal: ``\\text{"..."}`` (or the element's lquote/rquote)."""
        lquote = element.get("lquote") if element.get("lquote") is not None else '"'
        rquote = element.get("rquote") if element.get("rquote") is not None else '"'
        return r"\text{" + _text_escape(lquote + _token_text(element) + rquote) + "}"

    def mspace(self, element: etree._Element, depth: int) -> str:
        """Horizontal space: the nearest of \\! \\, \\: \\; \\ (space) \\quad \\qquad; a line break."""
        if _attr(element, "linebreak") in ("newline", "indentingnewline"):
            return r"\\"
        width = _width_em(_attr(element, "width"))
        if width is None:
            return r"\ "
        if width < -0.01:
            return r"\!" * max(1, round(-width / (3 / 18)))
        if width < 0.05:
            return ""
        for limit, command in ((0.2, r"\,"), (0.25, r"\:"), (0.3, r"\;"), (0.75, r"\ "), (1.5, r"\quad")):
            if width < limit:
                return command
        return r"\qquad"

    def mglyph(self, element: etree._Element, depth: int) -> str:
        """A glyph image: its alt text."""
        alt = (element.get("alt") or "").strip()
        return r"\text{" + _text_escape(alt) + "}" if alt else ""

    def empty(self, element: etree._Element, depth: int) -> str:
        """Elements that render nothing here (none, alignment marks, stray annotations)."""
        return ""

    # -- layout --------------------------------------------------------------------------------

    def mfrac(self, element: etree._Element, depth: int) -> str:
        """A fraction; linethickness 0 gives \\genfrac{}{}{0pt}{}{a}{b}."""
        top, bottom = (self.convert(child, depth) for child in self._arity(element, 2))
        if _zero_thickness(element):
            return rf"\genfrac{{}}{{}}{{0pt}}{{}}{{{top}}}{{{bottom}}}"
        return rf"\frac{{{top}}}{{{bottom}}}"

    def msqrt(self, element: etree._Element, depth: int) -> str:
        """A square root (of an inferred mrow)."""
        return r"\sqrt{" + self.row(element, depth) + "}"

    def mroot(self, element: etree._Element, depth: int) -> str:
        """An n-th root."""
        base, index = (self.convert(child, depth) for child in self._arity(element, 2))
        if "]" in index:
            index = "{" + index + "}"  # a bare ] would end the optional argument
        return rf"\sqrt[{index}]{{{base}}}"

    def mphantom(self, element: etree._Element, depth: int) -> str:
        """Invisible content that keeps its space."""
        return r"\phantom{" + self.row(element, depth) + "}"

    def menclose(self, element: etree._Element, depth: int) -> str:
        """Enclosed content: box -> \\boxed, strikes -> \\cancel, top/bottom lines, radical."""
        body = self.row(element, depth)
        notation = set(_attr(element, "notation").split()) or {"longdiv"}
        if notation & {"box", "roundedbox", "circle"}:
            return r"\boxed{" + body + "}"
        if notation & {"updiagonalstrike", "downdiagonalstrike", "horizontalstrike"}:
            return r"\cancel{" + body + "}"
        if "radical" in notation:
            return r"\sqrt{" + body + "}"
        if "top" in notation:
            return r"\overline{" + body + "}"
        if "bottom" in notation:
            return r"\underline{" + body + "}"
        return body

    def maction(self, element: etree._Element, depth: int) -> str:
        """An interactive element: its selected child (the first by default)."""
        children = _children(element)
        if not children:
            return ""
        selection = _attr(element, "selection")
        index = int(selection) - 1 if selection.isdigit() and 0 < int(selection) <= len(children) else 0
        return self.convert(children[index], depth)

    def semantics(self, element: etree._Element, depth: int) -> str:
        """Annotated content: an x-tex annotation verbatim if present, else the first child."""
        children = _children(element)
        for child in children[1:]:
            if local_name(child) == "annotation" and _attr(child, "encoding") in TEX_ANNOTATION_ENCODINGS:
                tex = "".join(child.itertext()).strip()
                if tex:
                    return tex
        presentation = [child for child in children if local_name(child) not in ("annotation", "annotation-xml")]
        return self.convert(presentation[0], depth) if presentation else ""

    # -- scripts -------------------------------------------------------------------------------

    def msub(self, element: etree._Element, depth: int) -> str:
        """A subscript."""
        base, sub = (self.convert(child, depth) for child in self._arity(element, 2))
        return _scripts(base, sub, None)

    def msup(self, element: etree._Element, depth: int) -> str:
        """A superscript (primes written as ')."""
        base, sup = (self.convert(child, depth) for child in self._arity(element, 2))
        return _scripts(base, None, sup)

    def msubsup(self, element: etree._Element, depth: int) -> str:
        """Sub- and superscript."""
        base, sub, sup = (self.convert(child, depth) for child in self._arity(element, 3))
        return _scripts(base, sub, sup)

    def munder(self, element: etree._Element, depth: int) -> str:
        """Under: limits of a large operator, an under-accent/brace, or \\underset."""
        base_el, under_el = self._arity(element, 2)
        base = self.convert(base_el, depth)
        under_char = _token_text(under_el) if local_name(under_el) == "mo" else None
        if under_char in UNDER_ACCENTS:
            return UNDER_ACCENTS[under_char] + "{" + base + "}"
        under = self.convert(under_el, depth)
        if _takes_limits(base, base_el):
            return _scripts(base, under, None)
        return rf"\underset{{{under}}}{{{base}}}"

    def mover(self, element: etree._Element, depth: int) -> str:
        """Over: limits of a large operator, an accent/brace, or \\overset."""
        base_el, over_el = self._arity(element, 2)
        base = self.convert(base_el, depth)
        accent = self._over_accent(element, base_el, over_el, base)
        if accent is not None:
            return accent + "{" + base + "}"
        over = self.convert(over_el, depth)
        if _takes_limits(base, base_el):
            return _scripts(base, None, over)
        return rf"\overset{{{over}}}{{{base}}}"

    def munderover(self, element: etree._Element, depth: int) -> str:
        """Under and over: limits of a large operator, else nested \\underset/\\overset."""
        base_el, under_el, over_el = self._arity(element, 3)
        base, under, over = (self.convert(child, depth) for child in (base_el, under_el, over_el))
        if _takes_limits(base, base_el):
            return _scripts(base, under, over)
        return rf"\underset{{{under}}}{{\overset{{{over}}}{{{base}}}}}"

    @staticmethod
    def _over_accent(element: etree._Element, base_el: etree._Element, over_el: etree._Element,
                     base: str) -> str | None:
        """The accent command for an mover, or None when the overscript is not an accent."""
        if local_name(over_el) != "mo":
            return None
        char = _token_text(over_el)
        if char not in OVER_ACCENTS:
            return None
        narrow, wide = OVER_ACCENTS[char]
        if narrow in BRACES:
            return narrow
        stretchy = _attr(over_el, "stretchy")
        if char in "¯ˉ̄":
            # MathJax: \bar has stretchy="false", \overline a stretchy bar (accent="false" in v2)
            return narrow if stretchy == "false" else wide
        if "false" in (_attr(element, "accent"), _attr(over_el, "accent")) and char not in "→⃗←↔":
            return None  # declared not an accent: an \overset
        if stretchy == "false":
            return narrow
        return wide if stretchy == "true" or not _is_atom(base) else narrow

    def mmultiscripts(self, element: etree._Element, depth: int) -> str:
        """Tensor scripts: base, post (sub, sup) pairs, <mprescripts/>, pre (sub, sup) pairs."""
        children = _children(element)
        if not children or local_name(children[0]) == "mprescripts":
            raise MathMLError("mmultiscripts_arity", "no base")
        base = self.convert(children[0], depth)
        post: list[etree._Element] = []
        pre: list[etree._Element] = []
        target = post
        for child in children[1:]:
            if local_name(child) == "mprescripts":
                if target is pre:
                    raise MathMLError("mmultiscripts_arity", "two <mprescripts/>")
                target = pre
                continue
            target.append(child)
        if len(post) % 2 or len(pre) % 2:
            raise MathMLError("mmultiscripts_arity", "scripts must come in sub/sup pairs")
        out = ""
        if pre:
            out += _scripts("{}", self._script_run(pre[0::2], depth), self._script_run(pre[1::2], depth))
        post_sub, post_sup = self._script_run(post[0::2], depth), self._script_run(post[1::2], depth)
        return join_latex([out, _scripts(base, post_sub, post_sup) if post else base])

    def _script_run(self, scripts: list[etree._Element], depth: int) -> str:
        return join_latex([self.convert(script, depth) for script in scripts])

    # -- tables ----------------------------------------------------------------------------------

    def mtable(self, element: etree._Element, depth: int, environment: str | None = None) -> str:
        """A table: rows joined by \\\\, cells by &; matrix (or pmatrix etc.), aligned when the
        columns alternate right/left like MathJax's rendering of aligned environments."""
        rows: list[str] = []
        for row in _children(element):
            name = local_name(row)
            if name in ("mtr", "mlabeledtr"):
                cells = _children(row)[1 if name == "mlabeledtr" else 0:]
                rows.append(" & ".join(self.convert(cell, depth + 1) for cell in cells))
            elif name == "mtd":  # a cell without its row: a row of its own
                rows.append(self.convert(row, depth))
            else:
                raise MathMLError(f"mtable_child:{_safe(name or '_')}",
                                  f"<{name}> in <mtable>, expects <mtr>")
        if environment is None:
            environment = "aligned" if _attr(element, "columnalign").startswith("right left") else "matrix"
        return rf"\begin{{{environment}}}" + r" \\ ".join(rows) + rf"\end{{{environment}}}"


def _apply_variant(latex: str, text: str, variant: str) -> str:
    """Wrap a token's TeX in the command for its mathvariant (letters only for 'normal')."""
    command = MATHVARIANT_COMMANDS.get(variant)
    if not latex or command is None or variant == "italic":
        return latex
    if variant == "normal":
        return rf"\mathrm{{{latex}}}" if text.isascii() and text.isalpha() else latex
    if command == r"\mathbf" and not text.isascii():
        command = r"\boldsymbol"
    return f"{command}{{{latex}}}"


def _fences_balanced(children: list[etree._Element]) -> bool:
    """True unless a closing fence among the (direct) <mo> children closes more than was opened."""
    depth = 0
    for child in children:
        if local_name(child) == "mo":
            text = _token_text(child)
            depth += (text in OPENING_FENCES) - (text in CLOSING_FENCES)
            if depth < 0:
                return False
    return depth == 0


def _is_thick_space(element: etree._Element) -> bool:
    """True for an mspace of 5/18 em (\\;), alone or wrapped in single-child mstyle/mrow."""
    while local_name(element) in ("mstyle", "mrow") and len(_children(element)) == 1:
        element = _children(element)[0]
    if local_name(element) != "mspace":
        return False
    width = _width_em(_attr(element, "width"))
    return width is not None and abs(width - 5 / 18) < 0.01


def _zero_thickness(mfrac: etree._Element) -> bool:
    """True for mfrac linethickness 0 (in any unit)."""
    value = _attr(mfrac, "linethickness")
    return bool(value) and re.fullmatch(r"0*\.?0*(em|ex|pt|px|mu|%)?", value) is not None


def _width_em(value: str) -> float | None:
    """An mspace width in em, or None when absent or unreadable."""
    if not value:
        return None
    negative = value.startswith("negative")
    name = value.removeprefix("negative")
    if name in NAMED_SPACES:
        return -NAMED_SPACES[name] if negative else NAMED_SPACES[name]
    match = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+))\s*([a-z]*)", value)
    if match is None or match.group(2) not in UNIT_EM:
        return None
    return float(match.group(1)) * UNIT_EM[match.group(2)]


def _takes_limits(base: str, base_el: etree._Element) -> bool:
    """True when the base is a large operator or a lim-like word (scripts go as _ and ^)."""
    if base in LARGE_OPERATORS:
        return True
    if local_name(base_el) == "munder" and any(base.startswith(brace) for brace in BRACES):
        return True
    return local_name(base_el) == "mover" and base.startswith(r"\overbrace")


ELEMENT_NAMES = frozenset(_Converter().handlers)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def mathml_to_latex(math: etree._Element) -> str:
    """LaTeX (no surrounding $) for a <math> element (or any presentation-MathML element).

    Raises MathMLError (reason ``not_math``, ``empty_math``, ``too_deep``, ``<name>_arity``,
    ``unknown_element:<name>``, ...) for anything it cannot convert."""
    name = local_name(math)
    if name not in ELEMENT_NAMES and name not in ("mtr", "mlabeledtr"):
        raise MathMLError("not_math", f"root element <{_safe(str(name))}> is not MathML")
    if name == "math" and not _children(math) and not _token_text(math):
        raise MathMLError("empty_math")
    try:
        converter = _Converter()
        if name in ("mtr", "mlabeledtr"):  # a lone table row: its cells
            latex = " & ".join(converter.convert(cell, 1) for cell in _children(math))
        else:
            latex = converter.convert(math, 0)
    except MathMLError:
        raise
    except RecursionError as exc:
        raise MathMLError("too_deep", "Python recursion limit") from exc
    except Exception as exc:  # a converter bug must not fail a whole shard
        logger.debug("MathML conversion failed", exc_info=True)
        raise MathMLError(f"internal_error:{type(exc).__name__}", str(exc)) from exc
    latex = latex.strip()
    if not latex:
        raise MathMLError("empty_math", "the formula renders to nothing")
    return latex


def mathml_string_to_latex(markup: str) -> str:
    """Same as :func:`mathml_to_latex`, from a MathML string (strict XML; errors -> ``xml_syntax``)."""
    parser = etree.XMLParser(recover=False, resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(markup.encode("utf-8") if isinstance(markup, str) else markup, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        # libxml2 refuses documents nested deeper than 256 elements
        reason = "too_deep" if "Excessive depth" in str(exc) else "xml_syntax"
        raise MathMLError(reason, str(exc)) from exc
    if root is None:
        raise MathMLError("xml_syntax", "no root element")
    return mathml_to_latex(root)
