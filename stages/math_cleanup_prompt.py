"""The instructions sent to the LLM that cleans lynx-rendered math pages, and the reading of its answers.

The wording is ours; the intent is the cleanup step of the Nemotron-CC-Math recipe: keep
the main content, its titles and all of its mathematics; drop page furniture; write every formula
as LaTeX with ``$...$`` inline and ``$$...$$`` for display; keep code unchanged in fenced blocks;
fix typos and broken formatting without adding, answering or solving anything; answer exactly
:data:`NO_USEFUL_CONTENT` when nothing is worth keeping.

Two forms, like :mod:`classifiers.edu_prompt`: one user message for chat models (no system
message, which some chat templates drop), and for base models on the completions endpoint the
same text followed by :data:`COMPLETION_CUE`, so the model starts writing the cleaned page.

Reading an answer (:func:`read_answer`), in order:

1. Surrounding whitespace is removed. An answer that is the marker :data:`NO_USEFUL_CONTENT` (any
   letter case, any spacing between its words), once surrounding quotes, Markdown emphasis, code
   and heading marks (the characters ``*_`#``) and one final period are set aside, means the chunk
   has nothing to keep; so does an answer that is the marker after steps 2 and 3.
2. A first line that announces the answer instead of being part of it is removed: at most 120
   characters, starting with ``here is``/``here's``/``below is`` (optionally after ``Sure``,
   ``Certainly``, ...), naming the cleaning (``clean...``, ``rewritten``, ``revised``,
   ``corrected``, ``formatted``, ``version``, ``output``, ``result``) and ending with a colon:
   ``Here is the cleaned text:``, ``Sure! Below is the cleaned-up version:``. A page's own first
   line such as ``Here is the theorem:`` stays; so does anything else a chatty model adds.
3. When the whole answer is one fenced block (an opening fence line without a language or with
   ``markdown``/``md``/``text``/``txt``/``plaintext``/``latex``/``tex``, a closing bare fence line
   at the end), the outer fences are removed, provided the fences between them form code blocks
   that each open with a language (```` ```python ````) and close with a bare fence: a bare fence
   inside would close the first block, so the answer is several blocks and stays as it is. A block
   labelled as code (``python``, ...) is code the page held and stays.
4. Outside fenced code blocks and inline code spans, ``\\(...\\)`` becomes ``$...$`` and
   ``\\[...\\]`` becomes ``$$...$$`` (inner surrounding whitespace trimmed); ``\\\\[2pt]``, a
   LaTeX line break with spacing, is left alone.
5. Lines that are the marker alone amid other text are removed, so the marker never reaches the
   data; an answer left empty by the steps above is ``empty``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from curator.llm import Prompt

PLACEHOLDER = "{page}"
NO_USEFUL_CONTENT = "NO USEFUL CONTENT"
"""The whole answer the model gives for a page (or a part of one) with nothing worth keeping."""

CLEANUP_INSTRUCTIONS = """You are preparing mathematical web pages as training text. Below is a page \
(or one part of a longer page) as a text browser rendered it. Formulas already written as TeX appear \
between $...$ (inline) or $$...$$ (display).

Rewrite the page as clean text, following these rules:
1. Keep the main content: the title, section headings, explanations, definitions, theorems, proofs, \
examples, exercises, questions and answers, and every piece of mathematics in it.
2. Remove what is not content: navigation menus, breadcrumbs, advertisements, cookie and login \
notices, "share this" and social media buttons, related-article lists, tag clouds, page footers, \
copyright lines, and comment sections.
3. Write every formula in LaTeX: inline math between single dollar signs, $...$, and displayed \
equations between double dollar signs, $$...$$. Never use \\( \\) or \\[ \\]. Turn math written as \
plain text or Unicode symbols (such as x², √2, a/b, ≤) into LaTeX. Keep TeX that is already there \
as it is, and never change what a formula says.
4. Keep program code exactly as it is, inside fenced code blocks (```).
5. Correct typos, broken line wraps, stray characters and damaged formatting, but otherwise keep \
the wording. Keep the language of the page; do not translate.
6. Do not answer questions, solve exercises, finish proofs or add explanations, summaries or \
comments of your own. Add nothing that is not on the page. If the page stops in the middle, stop \
there too.
7. If nothing on the page is worth keeping, answer with exactly these words and nothing else: \
NO USEFUL CONTENT

Reply with the cleaned text only, without any introduction or closing remark.

--- PAGE START ---
{page}
--- PAGE END ---"""

COMPLETION_CUE = "\n\nCleaned text:\n"
"""Appended to completion prompts, so that a base model starts writing the cleaned page."""


def cleanup_prompt_text(page: str) -> str:
    """The instructions with ``page`` in place (the user message, or the completion prompt before
    :data:`COMPLETION_CUE`)."""
    return CLEANUP_INSTRUCTIONS.replace(PLACEHOLDER, page)


def cleanup_prompt_for_counting(page: str, endpoint: Literal["chat", "completions"]) -> str:
    """The text whose tokens a request of ``page`` costs (chat markup aside)."""
    text = cleanup_prompt_text(page)
    return text + COMPLETION_CUE if endpoint == "completions" else text


def cleanup_prompt(page: str, endpoint: Literal["chat", "completions"]) -> Prompt:
    """The request for one page (or chunk): a single user message (chat), or the instructions
    followed by :data:`COMPLETION_CUE` (completions)."""
    if endpoint == "chat":
        return Prompt.chat([{"role": "user", "content": cleanup_prompt_text(page)}])
    return Prompt.completion(cleanup_prompt_text(page) + COMPLETION_CUE)


# ---------------------------------------------------------------------- reading answers

AnswerKind = Literal["text", "no_useful_content", "empty"]


@dataclass(frozen=True)
class CleanedChunk:
    """One answer read: its kind, and the cleaned text when the kind is ``text``."""

    kind: AnswerKind
    text: str | None = None


_DECORATION = "*_`#\"'\u201c\u201d "
_PREAMBLE = re.compile(
    r"(?:(?:sure|certainly|of course|okay|ok)\b[^\n]{0,40}?[,.!]\s*)?(?:here\s+is|here's|below\s+is)\b"
    r"[^\n]*\b(?:clean\w*|rewritten|revised|corrected|(?:re)?formatted|version|output|result)\b[^\n]*:",
    re.IGNORECASE)
_PREAMBLE_MAX_CHARS = 120
_FENCE_LINE = re.compile(r"^\s*(```|~~~)(.*)$")
_PROSE_FENCE_LABELS = {"", "markdown", "md", "text", "txt", "plaintext", "latex", "tex"}
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_DISPLAY = re.compile(r"(?<!\\)\\\[(.+?)(?<!\\)\\\]", re.DOTALL)
_INLINE = re.compile(r"(?<!\\)\\\((.+?)(?<!\\)\\\)", re.DOTALL)


def is_no_useful_content(text: str) -> bool:
    """Whether ``text`` is the marker, give or take case, decoration and a final period."""
    core = text.strip().strip(_DECORATION).rstrip(".").strip(_DECORATION)
    return " ".join(core.split()).upper() == NO_USEFUL_CONTENT


def strip_preamble(text: str) -> str:
    """``text`` without a first line that only announces the answer (see the module docstring)."""
    first, sep, rest = text.lstrip().partition("\n")
    line = first.strip().strip("*_ ")
    if len(line) <= _PREAMBLE_MAX_CHARS and _PREAMBLE.fullmatch(line):
        return rest
    return text


def strip_outer_fence(text: str) -> str:
    """``text`` without fences around the whole of it, when they wrap prose (not a code block)."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        return text
    opening, closing = _FENCE_LINE.match(lines[0]), _FENCE_LINE.match(lines[-1])
    if opening is None or closing is None or closing.group(2).strip():
        return text
    if opening.group(1) != closing.group(1) or opening.group(2).strip().lower() not in _PROSE_FENCE_LABELS:
        return text
    inner = lines[1:-1]
    open_fence: str | None = None
    for line in inner:
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        if open_fence is None:
            if not match.group(2).strip():
                return text  # a bare fence inside closes the first block: these are several blocks
            open_fence = match.group(1)
        elif match.group(1) == open_fence and not match.group(2).strip():
            open_fence = None
    return text if open_fence is not None else "\n".join(inner)


def _normalise_delimiters_in_prose(text: str) -> str:
    pieces: list[str] = []
    last = 0
    for code in _INLINE_CODE.finditer(text):
        pieces.append(_to_dollars(text[last:code.start()]))
        pieces.append(code.group(0))
        last = code.end()
    pieces.append(_to_dollars(text[last:]))
    return "".join(pieces)


def _to_dollars(text: str) -> str:
    text = _DISPLAY.sub(lambda m: f"$${m.group(1).strip()}$$", text)
    return _INLINE.sub(lambda m: f"${m.group(1).strip()}$", text)


def normalise_math_delimiters(text: str) -> str:
    """``\\(..\\)`` as ``$..$`` and ``\\[..\\]`` as ``$$..$$``, outside fenced code and inline code."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if fence is None and match is not None:
            out.append(_normalise_delimiters_in_prose("\n".join(prose)))
            prose = []
            fence = match.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if match is not None and match.group(1) == fence and not match.group(2).strip():
                fence = None
        else:
            prose.append(line)
    if prose or not out:
        out.append(_normalise_delimiters_in_prose("\n".join(prose)))
    return "\n".join(out)


def read_answer(answer: str | None) -> CleanedChunk:
    """The cleaned text of one chunk's answer, or why there is none (rules in the module docstring)."""
    text = (answer or "").strip()
    if is_no_useful_content(text):
        return CleanedChunk("no_useful_content")
    text = strip_outer_fence(strip_preamble(text).strip()).strip()
    if is_no_useful_content(text):  # the marker under a preamble or inside a fence
        return CleanedChunk("no_useful_content")
    text = normalise_math_delimiters(text)
    text = "\n".join(line for line in text.split("\n") if not is_no_useful_content(line)).strip()
    if not text:
        return CleanedChunk("empty")
    return CleanedChunk("text", text)
