"""The five Nemotron-CC synthetic-data tasks: prompts, answer prefixes, token budgets, default routing.

The prompts are our own wording of the paper's intent (Su et al., 2024, "Nemotron-CC", section
on synthetic data): low-quality text is rewritten in a clean encyclopedic style; high-quality
text is turned into varied question-answer pairs, a shorter distilled version, a textbook-like
extraction of its knowledge, and a list of its key facts.

Every prompt asks the model to start its answer with a fixed prefix. An answer without it is
rejected (``missing_prefix``): a model that ignored the format usually ignored the task too.

``budget`` is the paper's segment size in tokens of the model's tokenizer, counted over the whole
prompt (instructions plus the document segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskName = Literal["wikipedia", "diverse_qa", "distill", "extract_knowledge", "knowledge_list"]
TASK_NAMES: tuple[TaskName, ...] = ("wikipedia", "diverse_qa", "distill", "extract_knowledge", "knowledge_list")
PLACEHOLDER = "{document}"


@dataclass(frozen=True)
class TaskSpec:
    """One synthetic-data task."""

    name: TaskName
    template: str
    """The prompt, with :data:`PLACEHOLDER` where the document segment goes."""
    prefix: str
    """What the answer must start with (checked and stripped)."""
    budget: int
    """Tokens allowed for the prompt with its segment."""
    labels: tuple[str, ...]
    """Quality labels routed to this task by default."""
    keep_bullets: bool = False
    """Keep list markers when stripping Markdown (the knowledge list is a list by design)."""

    def prompt(self, segment: str) -> str:
        """The prompt for one document segment."""
        return self.template.replace(PLACEHOLDER, segment)


_WIKIPEDIA = """Rewrite the passage below so that it reads like a well-written encyclopedia article.
Keep every fact, name, number and date it contains, and add nothing that it does not say.
Use complete sentences in a neutral, formal tone and plain paragraphs. Leave out navigation text,
advertising, greetings and anything else that is not part of the content.

Passage:
{document}

Start your answer with "Here is the passage in encyclopedic style:" and then give the rewritten text only."""

_DIVERSE_QA = """Read the passage below and write questions about it together with their answers.
Vary the kind of question: ask for facts, definitions, reasons, comparisons, steps, numbers, and
yes/no or multiple-choice questions where they fit. Every answer must be supported by the passage
and must make sense without it, so name the subject instead of writing "the passage" or "the
text". Write each pair as a line "Question: ..." followed by a line "Answer: ...", with no
numbering and no other text.

Passage:
{document}

Start your answer with "Here are questions and answers about the passage:" and then list the pairs."""

_DISTILL = """Condense the passage below into a shorter, clearer text for someone learning the
subject. Keep the essential facts, explanations and reasoning; drop repetition, asides and
filler. Write plain prose paragraphs, stay faithful to the passage, and do not add information
of your own.

Passage:
{document}

Start your answer with "Here is the condensed text:" and then give that text only."""

_EXTRACT = """Turn the passage below into a passage of a textbook. Keep the knowledge it conveys:
facts, definitions, explanations, relationships and procedures. Leave out whatever carries no
knowledge: opinions without support, promotion, anecdotes and page clutter. Reorganise the
material so that it is easy to follow, write it as plain prose paragraphs, and do not invent
details.

Passage:
{document}

Start your answer with "Here is the knowledge from the passage:" and then give the rewritten text only."""

_KNOWLEDGE_LIST = """List the pieces of knowledge in the passage below as short, self-contained
statements, one per line, each starting with "- ". Each statement must be true according to the
passage and understandable on its own: name the people, things and places it is about. Include
figures and dates where the passage gives them. Leave out anything that is not knowledge.

Passage:
{document}

Start your answer with "Here is the list of facts:" and then give the list only."""

TASKS: dict[TaskName, TaskSpec] = {
    "wikipedia": TaskSpec("wikipedia", _WIKIPEDIA, "Here is the passage in encyclopedic style:", 512, ("low",)),
    "diverse_qa": TaskSpec("diverse_qa", _DIVERSE_QA, "Here are questions and answers about the passage:", 1000,
                           ("high",)),
    "distill": TaskSpec("distill", _DISTILL, "Here is the condensed text:", 2000, ("high",)),
    "extract_knowledge": TaskSpec("extract_knowledge", _EXTRACT, "Here is the knowledge from the passage:", 1400,
                                  ("high",)),
    "knowledge_list": TaskSpec("knowledge_list", _KNOWLEDGE_LIST, "Here is the list of facts:", 1000, ("high",),
                               keep_bullets=True),
}
"""The five tasks by name."""
