"""Main-content extraction from decoded HTML, with three engines behind one stage.

- ``justext`` (the Nemotron-CC default) with the recipe's parameters: length_low 70,
  length_high 200, stopwords_low 0.30, stopwords_high 0.32, max_link_density 0.2. jusText judges
  paragraphs by their share of stop words, so the stop list must be the page's language: a quick
  guess (stop-word hits of every jusText language on the page's main text) picks it.
- ``trafilatura``, with its precision / recall switches exposed.
- ``resiliparse`` in main-content mode.
- ``best``, our own: resiliparse's speed with trafilatura's accuracy. On resiliparse's DOM, comment
  sections are removed (by their common ids and classes); resiliparse extracts the main content;
  then lines that are not text are trimmed: leading and trailing lines that are not sentences
  (titles, bylines, share bars, tag lists) and short caption, credit and cookie-notice lines.
  Measured on aeb-dev before choosing it (benchmarks/README.md): each part pays for itself.

Paragraphs are separated by single newlines. Documents whose extracted text is shorter than
``min_chars`` are dropped with reason ``extract_empty``. Pages are extracted in a child process
with a time and memory limit (:mod:`curator.time_limit`), so one pathological page is dropped
(``extract_timeout``, ``extract_crash``, ``extract_error``) instead of stalling the worker.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from curator.stage import DROP_REASON, MapStage
from curator.time_limit import ItemFailed, TimeLimitedCalls

_WORDS = re.compile(r"\w+", re.U)
_COMMENT_SECTIONS = ("#comments, #respond, .comments, .comment-list, .commentlist, #disqus_thread, "
                     ".comments-area, #comment-section")
_SENTENCE_END = re.compile(r"[.!?…\"”’)\]:。！？]$")
_BOILERPLATE_LINE = re.compile(
    r"^(photo|image \d|caption|close|advertisement|getty images|credit|source:|by\b|posted by|share|"
    r"this website uses cookies|we use cookies|read more|related|sign up|subscribe|follow us)", re.I)


class StopListGuesser:
    """Guesses a page's language among jusText's stop lists by counting stop-word hits."""

    def __init__(self) -> None:
        import justext

        self._languages: dict[str, frozenset[str]] = {
            name: frozenset(justext.get_stoplist(name)) for name in justext.get_stoplists()}
        index: dict[str, list[str]] = {}
        for name, words in self._languages.items():
            for word in words:
                index.setdefault(word, []).append(name)
        self._index = index

    def stoplist(self, language: str) -> frozenset[str]:
        """The stop list of a jusText language name."""
        return self._languages[language]

    def guess(self, html: str, max_words: int = 1500, default: str = "English") -> str:
        """The jusText language whose stop words best cover the page's main text.

        Words come from resiliparse's main-content text (tags, scripts and menus would add noise);
        each word counts 1/k for each of the k languages that list it, so words shared by many
        stop lists ("a", "on", "me") do not make large stop lists win.
        """
        from resiliparse.extract.html2text import extract_plain_text

        words = _WORDS.findall(extract_plain_text(html, main_content=True).lower())[:max_words]
        hits: Counter[str] = Counter()
        for word in words:
            languages = self._index.get(word, ())
            for language in languages:
                hits[language] += 1 / len(languages)
        if not hits:
            return default
        best, score = hits.most_common(1)[0]
        return best if score >= 2 else default


class TextExtractor(MapStage):
    """Main-content text from HTML: jusText (Nemotron-CC parameters), trafilatura or resiliparse."""

    name = "text.extract"
    requires = ("html",)
    adds = ("text", "extract_stoplist")

    engine: Literal["justext", "trafilatura", "resiliparse", "best"] = Field("justext", description="Extraction engine.")
    min_sentence_words: int = Field(8, ge=1, description="best: a line with this many words ending like a sentence is text.")
    length_low: int = Field(70, description="jusText: paragraphs shorter than this are bad (Nemotron-CC: 70).")
    length_high: int = Field(200, description="jusText: paragraphs longer than this can be good (Nemotron-CC: 200).")
    stopwords_low: float = Field(0.30, description="jusText: stop-word density below this is bad (Nemotron-CC: 0.30).")
    stopwords_high: float = Field(0.32, description="jusText: stop-word density above this is good (Nemotron-CC: 0.32).")
    max_link_density: float = Field(0.2, description="jusText: link density above this is bad (Nemotron-CC: 0.2).")
    language: str | None = Field(None, description="jusText stop-list language (e.g. English); default: guessed per page.")
    favor_precision: bool = Field(False, description="trafilatura: prefer precision.")
    favor_recall: bool = Field(False, description="trafilatura: prefer recall.")
    include_tables: bool = Field(True, description="trafilatura: keep table text.")
    min_chars: int = Field(1, ge=0, description="Drop documents with less extracted text (reason extract_empty).")
    time_limit_s: float | None = Field(
        10.0, gt=0, description="Per-page limit (reason extract_timeout); pages run in a child process. None: in process.")
    memory_limit_mb: int | None = Field(
        4096, ge=256, description="Address-space limit of the child process (reason extract_error on a blow-up).")
    keep_html: bool = Field(False, description="Keep the html column after extraction.")

    _guesser: StopListGuesser | None = PrivateAttr(default=None)
    _child: TimeLimitedCalls | None = PrivateAttr(default=None)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        cols = [c for c in input_columns if self.keep_html or c != "html"]
        return cols + [c for c in self.adds if c not in cols]

    def setup(self) -> None:
        if self.engine == "justext" and self._guesser is None:
            self._guesser = StopListGuesser()
        if self.time_limit_s is not None and self._child is None:
            in_child = self.model_dump() | {"time_limit_s": None}
            self._child = TimeLimitedCalls("stages.extract:child_extractor", in_child, self.time_limit_s,
                                           self.memory_limit_mb)

    def extract(self, html: str) -> tuple[str, str | None]:
        """The main text of one page, and the stop list used (jusText only)."""
        if self.engine == "best":
            return best_of_extract(html, self.min_sentence_words), None
        if self.engine == "resiliparse":
            from resiliparse.extract.html2text import extract_plain_text

            # Pass the string: resiliparse's parsed trees are bound to the thread that made them.
            text = extract_plain_text(html, main_content=True, alt_texts=False, preserve_formatting=True)
            return _paragraphs(text.splitlines()), None
        if self.engine == "trafilatura":
            import trafilatura

            text = trafilatura.extract(html, favor_precision=self.favor_precision, favor_recall=self.favor_recall,
                                       include_comments=False, include_tables=self.include_tables) or ""
            return _paragraphs(text.splitlines()), None
        import justext

        self.setup()
        assert self._guesser is not None
        language = self.language or self._guesser.guess(html)
        paragraphs = justext.justext(
            html, self._guesser.stoplist(language), length_low=self.length_low, length_high=self.length_high,
            stopwords_low=self.stopwords_low, stopwords_high=self.stopwords_high,
            max_link_density=self.max_link_density)
        return _paragraphs(p.text for p in paragraphs if not p.is_boilerplate), language

    def _extract_all(self, htmls: list[str | None]) -> list[tuple[str, str | None, str | None]]:
        """(text, stop list, drop reason or None) per page.

        With a time limit, pages go to the child process in chunks (one pipe round trip for many
        fast pages); a chunk that fails or runs over the limit is retried page by page, so a bad
        page costs at most twice the limit and is the only page dropped.
        """
        results: list[tuple[str, str | None, str | None]] = [("", None, None)] * len(htmls)
        if self._child is None:
            for i, html in enumerate(htmls):
                if html:
                    text, stoplist = self.extract(html)
                    results[i] = (text, stoplist, None)
            return results
        for group in _chunks(htmls):
            try:
                outputs = self._child.call([htmls[i] for i in group])
            except ItemFailed:
                outputs = None
            if outputs is not None:
                for i, output in zip(group, outputs):
                    results[i] = (output[0], output[1], None)
                continue
            for i in group:
                try:
                    (text, stoplist), = self._child.call([htmls[i]])
                    results[i] = (text, stoplist, None)
                except ItemFailed as exc:
                    results[i] = ("", None, f"extract_{exc.kind}")
        return results

    def process(self, batch: pa.Table) -> pa.Table:
        texts: list[str | None] = []
        stoplists: list[str | None] = []
        reasons: list[str | None] = []
        self.setup()
        htmls = batch.column("html").to_pylist()
        for html, (text, stoplist, reason) in zip(htmls, self._extract_all(htmls)):
            texts.append(text)
            stoplists.append(stoplist)
            reasons.append(reason or ("extract_empty" if len(text) < max(self.min_chars, 1) else None))
        out = batch if self.keep_html else batch.drop_columns(["html"])
        out = out.append_column("text", pa.array(texts, pa.string()))
        out = out.append_column("extract_stoplist", pa.array(stoplists, pa.string()))
        return out.append_column(DROP_REASON, pa.array(reasons, pa.string()))


_CHUNK_PAGES = 32
_CHUNK_BYTES = 4 << 20


def _chunks(htmls: list[str | None]) -> list[list[int]]:
    """Indices of non-empty pages in groups of at most _CHUNK_PAGES pages or _CHUNK_BYTES."""
    groups: list[list[int]] = [[]]
    size = 0
    for i, html in enumerate(htmls):
        if not html:
            continue
        if groups[-1] and (len(groups[-1]) >= _CHUNK_PAGES or size + len(html) > _CHUNK_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(html)
    return [g for g in groups if g]


def best_of_extract(html: str, min_sentence_words: int = 8) -> str:
    """The ``best`` engine: resiliparse main content without comments, trimmed to the text lines."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    # The tree and its nodes live and die inside this call: resiliparse's trees are thread-bound.
    tree = HTMLTree.parse(html)
    if tree.body is not None:
        for element in tree.body.query_selector_all(_COMMENT_SECTIONS):
            element.decompose()
    text = extract_plain_text(tree, main_content=True, preserve_formatting=True, alt_texts=False)
    del tree
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line and not (len(line.split()) < 10 and _BOILERPLATE_LINE.match(line))]
    text_lines = [i for i, line in enumerate(lines)
                  if len(line.split()) >= min_sentence_words and _SENTENCE_END.search(line)]
    if text_lines:
        lines = lines[text_lines[0]: text_lines[-1] + 1]
    return "\n".join(lines)


def child_extractor(params: dict) -> Callable[[list[str]], list[tuple[str, str | None]]]:
    """Built once in the time-limited child process: extracts a chunk of pages for ``params``."""
    stage = TextExtractor(**params)
    stage.setup()
    return lambda htmls: [stage.extract(html) for html in htmls]


def _paragraphs(lines) -> str:  # noqa: ANN001 - any iterable of str
    return "\n".join(s for s in (" ".join(line.split()) for line in lines) if s)
