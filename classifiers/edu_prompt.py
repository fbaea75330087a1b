"""The educational-value rubric sent to an annotating LLM, and the strict parser of its answers.

The rubric is our own wording of the FineWeb-Edu intent (Penedo et al., 2024): an additive
five-point scale of how useful a web extract is for teaching at primary-school to grade-school
level, one point per criterion met, 0 to 5 in all. The model is asked for a short justification
followed by a last line ``Educational score: N``.

Parsing is strict, so that a label used as training data is a label the model gave on purpose.
An answer is parsed as follows (``parse_edu_answer``):

1. Blank lines are ignored; the last remaining line is the score line. Empty answer: ``empty``.
2. On that line, surrounding whitespace and every Markdown emphasis character (``*`` and ``_``)
   are removed, so ``**Educational score: 3**``, ``**Educational score:** 3`` and
   ``*Educational score: 3*`` read as ``Educational score: 3``. Nothing else is removed: a
   heading mark (``#``), a bullet other than ``*``, quotes or a prefix such as ``Final answer:``
   make the line not a score line.
3. The line must then be, as a whole, the label ``Educational score:`` (letter case free; any
   spaces or tabs between the two words and around the colon) followed by a value and at most one
   final ``.``. Otherwise: ``malformed_score_line`` when the label is on that line among other
   text (``### Educational score: 3``, ``Final answer: Educational score: 3``),
   ``score_not_last`` when it is on an earlier line only (the model scored and went on
   writing), else ``no_score``.
4. The value must be an integer in ASCII digits, optionally signed (``not_an_integer``
   otherwise: ``2.5``, ``3/5``, ``three``, ``<3>``, ``3 points``), and within 0..5
   (``out_of_range`` otherwise: ``6``, ``-1``).
5. Every earlier ``Educational score:`` label followed by a number must give the same number;
   one that differs makes the answer ``conflicting_scores``. Labels followed by no number (the
   model repeating the instructions' ``N``) are ignored.

Anything that fails one of these steps is unparseable, with the step's reason; nothing is
guessed. The stage adds one reason of its own, ``cut_at_max_tokens``, for answers that stopped at
``max_tokens`` (their last line is not known to be final).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from curator.llm import Prompt

PLACEHOLDER = "{document}"
MIN_SCORE = 0
MAX_SCORE = 5

UNPARSEABLE_REASONS = ("empty", "no_score", "malformed_score_line", "score_not_last", "not_an_integer",
                       "out_of_range", "conflicting_scores")
"""Why :func:`parse_edu_answer` found no score (see the module docstring for each)."""

EDU_RUBRIC = """You are rating web text as teaching material for children and young teenagers, from \
primary school through grade school (about ages 6 to 14). Read the extract below and score it \
against five criteria. Each criterion the extract meets earns one point, so the total runs from 0 \
(none met) to 5 (all met). Take the criteria in order: as a rule a criterion is only met when the \
ones before it are met too.

1. Informative: some part of the extract teaches a fact, skill or idea that a school subject \
covers (science, mathematics, history, geography, languages, arts, health, ...). Advertising, \
navigation text or unrelated chatter elsewhere in the extract do not rule this point out.
2. Substantial: the educational part is more than a passing mention, even if it stays shallow, is \
mixed with unrelated material or is poorly organised.
3. Usable for learning: the extract is coherent and explains at least one concept found in school \
curricula, the way the opening of a textbook chapter or a basic tutorial would. It may be \
incomplete, carry some clutter, or go beyond what grade-school students can follow.
4. Well suited: the writing is clear and focused, close to a textbook section or a lesson, with \
substantial content (explanations, worked examples, exercises with their solutions), little that \
is off topic, and ideas that a grade-school student can follow.
5. Excellent: a teacher could use it as it stands. It reasons step by step, reads easily, gives \
real insight into its subject, and holds nothing that is not educational or beyond the level.

Score what the text teaches, not how interesting its subject is. Explicit, hateful or otherwise \
unsuitable material for children earns no points. The extract may be cut off at the end; judge \
what is there.

Extract:
\"\"\"
{document}
\"\"\"

Write a justification of at most 100 words. Then give the total on a line of its own, as the \
last line of your answer, in this form, where N is a whole number from 0 to 5:
Educational score: N"""

COMPLETION_CUE = "\n\nJustification:"
"""Appended to completion prompts, so that a base model starts the justification the rubric asks
for; chat prompts end with the rubric itself."""


def edu_prompt_text(document: str) -> str:
    """The rubric with ``document`` in place (the text of the user message, or of the completion
    prompt before :data:`COMPLETION_CUE`)."""
    return EDU_RUBRIC.replace(PLACEHOLDER, document)


def edu_prompt(document: str, endpoint: Literal["chat", "completions"]) -> Prompt:
    """The request for one document: a single user message (chat), or the rubric followed by
    :data:`COMPLETION_CUE` (completions)."""
    text = edu_prompt_text(document)
    if endpoint == "chat":
        return Prompt.chat([{"role": "user", "content": text}])
    return Prompt.completion(text + COMPLETION_CUE)


@dataclass(frozen=True)
class EduParse:
    """The outcome of parsing one answer: a score, or the reason there is none."""

    score: int | None
    reason: str | None = None
    """One of :data:`UNPARSEABLE_REASONS` when ``score`` is None, else None."""

    @property
    def ok(self) -> bool:
        """Whether the answer gave a usable score."""
        return self.score is not None


_EMPHASIS = re.compile(r"[*_]")
_LABEL = r"educational[ \t]+score[ \t]*:"
_SCORE_LINE = re.compile(rf"{_LABEL}[ \t]*(?P<value>.*?)\.?", re.IGNORECASE)
_ANY_LABEL = re.compile(_LABEL, re.IGNORECASE)
_LABELLED_NUMBER = re.compile(rf"{_LABEL}[ \t]*(?P<value>[+-]?[0-9]+(?:[.,][0-9]+)?)", re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _clean(line: str) -> str:
    return _EMPHASIS.sub("", line).strip()


def parse_edu_answer(answer: str | None) -> EduParse:
    """The score an answer ends with, or why it has none (the rules are in the module docstring)."""
    lines = [line for line in (answer or "").splitlines() if line.strip()]
    if not lines:
        return EduParse(None, "empty")
    last_line = _clean(lines[-1])
    last = _SCORE_LINE.fullmatch(last_line)
    if last is None:
        if _ANY_LABEL.search(last_line):
            return EduParse(None, "malformed_score_line")
        earlier = any(_ANY_LABEL.search(line) for line in lines[:-1])
        return EduParse(None, "score_not_last" if earlier else "no_score")
    value = last.group("value").strip()
    if not _INTEGER.fullmatch(value):
        return EduParse(None, "not_an_integer")
    score = int(value)
    if not MIN_SCORE <= score <= MAX_SCORE:
        return EduParse(None, "out_of_range")
    for line in lines[:-1]:
        for mention in _LABELLED_NUMBER.finditer(_clean(line)):
            if float(mention.group("value").replace(",", ".")) != score:
                return EduParse(None, "conflicting_scores")
    return EduParse(score)
