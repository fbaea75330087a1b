"""HTML to text with the lynx text browser (``lynx -dump``), sandboxed, batched and pooled.

Nemotron-CC-Math renders math pages with lynx because it keeps the layout of equations and code.
One lynx process per page costs about 25 ms, nearly all of it start-up, so :class:`LynxRenderer`
renders ``batch_pages`` pages per process: each page becomes one ``<div>`` of a single document,
with a paragraph holding a per-batch random token between pages, and the output is split on
those token lines. A batch whose separators do not all come back, or that times out or fails,
is rendered again one process per page, so a bad page costs only itself. Batches run
concurrently on a small thread pool (each thread drives one lynx process).

What lynx sees, in both the batched and the one-process-per-page path (so that both give the
same text for a page): the page is parsed with lxml and only its ``<body>`` content is kept
(lynx does not print the ``<title>``, and the ``<head>`` would only add REFRESH lines); comments,
``<script>``, ``<style>``, ``<title>``, ``<meta>``, ``<link>`` and ``<base>`` are removed (lynx
prints none of them); ``<plaintext>``, ``<xmp>`` and ``<listing>`` become ``<pre>`` (lynx would
otherwise read the rest of the batch as literal text); HTML5 block elements that lynx does not know
(``<section>``, ``<article>``, ``<header>``, ...) become ``<div>`` (lynx would run their texts together
on one line). Centring and right alignment are turned
into left alignment (``<center>``, ``align=center|right`` and lynx's centred ``<h1>``) and rules
(``<hr>``) are drawn about 72 columns long: at the width that keeps formulas on one line (1000
columns) lynx would otherwise put hundreds of spaces before a centred heading or draw a 1000
character rule.

Sandbox: lynx reads the page from stdin and writes the dump to stdout; it gets a private
``lynx.cfg`` (cookies off, no local execution, no lynxrc), ``-restrictions=all``, a clean
environment whose HOME and temp space are a private directory and whose proxies point at
127.0.0.1:9 (any network attempt fails at once), and it runs in its own session so that a timeout
kills its whole process group. No shell is involved.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lxml.html
from lxml import etree

log = logging.getLogger(__name__)

REASON_TIMEOUT = "lynx_timeout"
REASON_FAILED = "lynx_failed"
REASON_MISSING_OUTPUT = "lynx_missing_output"
REASON_BAD_HTML = "lynx_bad_html"

MAX_WIDTH = 1024  # lynx's longest line (LINESIZE); it wraps at about 1000 columns whatever -width says
MIN_WIDTH = 64  # the page separator line (48 characters) must never wrap
SEPARATOR_PREFIX = "CURATORPAGEBREAK"
BATCH_TIMEOUT_PAGES = 3  # a batch gets timeout_s * min(pages, this): a slow batch falls back to one page a process
RULE_COLUMNS = 72  # how long an <hr> is drawn

# Elements lynx never prints (or, for meta refresh, prints as a REFRESH line): removed before rendering.
DROPPED_TAGS = ("script", "style", "title", "meta", "link", "base", "head")
# Elements whose content lynx reads as literal text up to their end tag (or, <plaintext>, to the end of the file).
LITERAL_TAGS = ("plaintext", "xmp", "listing")
# HTML5 block elements lynx does not know: it would run their texts together ("ab" for <section>a</section>
# <section>b</section>); as <div>s each starts a line.
HTML5_BLOCK_TAGS = ("section", "article", "header", "footer", "nav", "aside", "main", "figure", "figcaption",
                    "details", "summary", "hgroup", "dialog", "search")
HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Alignment inside a table column is kept: it is bounded by the column's width and right-aligned numbers read well.
CELL_TAGS = frozenset(("td", "th", "tr", "thead", "tbody", "tfoot", "col", "colgroup"))

LYNX_CFG = """\
CHARACTER_SET:utf-8
ASSUME_CHARSET:utf-8
ASSUME_LOCAL_CHARSET:utf-8
LOCALE_CHARSET:FALSE
SET_COOKIES:FALSE
ACCEPT_ALL_COOKIES:FALSE
PERSISTENT_COOKIES:FALSE
NO_FROM_HEADER:TRUE
NO_REFERER_HEADER:TRUE
NO_FILE_REFERER:TRUE
MINIMAL_COMMENTS:TRUE
NESTED_TABLES:FALSE
NO_TABLE_CENTER:TRUE
LOCAL_EXECUTION_LINKS_ALWAYS_ON:FALSE
LOCAL_EXECUTION_LINKS_ON_BUT_NOT_REMOTE:FALSE
TRUSTED_EXEC:none
ALWAYS_TRUSTED_EXEC:none
TRUSTED_LYNXCGI:none
ENABLE_LYNXRC:ALL:OFF
CONNECT_TIMEOUT:1
READ_TIMEOUT:1
"""

DEAD_PROXY = "http://127.0.0.1:9/"


@dataclass(frozen=True)
class LynxSettings:
    """How lynx is run.

    ``width``: dump width in columns (lynx wraps lines at about 1000 columns whatever it is told,
    so 1000 keeps formulas and code lines whole). ``timeout_s``: per page; a batch gets
    ``timeout_s * min(pages, 3)`` before it is retried one page a process, each page with
    ``timeout_s``. ``batch_pages``: pages rendered by one lynx process. ``binary``: the lynx
    executable (a name looked up on PATH, or a path). ``workers``: batches rendered at once
    (threads driving lynx processes); 0 means one per CPU this process may use. Inside a Dask
    worker that already runs one task per core, use 1.
    """

    width: int = 1000
    timeout_s: float = 10.0
    batch_pages: int = 32
    binary: str = "lynx"
    workers: int = 0

    def __post_init__(self) -> None:
        if not MIN_WIDTH <= self.width <= MAX_WIDTH:
            raise ValueError(f"LynxSettings.width must be in [{MIN_WIDTH}, {MAX_WIDTH}], got {self.width}")
        if self.timeout_s <= 0:
            raise ValueError(f"LynxSettings.timeout_s must be > 0, got {self.timeout_s}")
        if self.batch_pages < 1:
            raise ValueError(f"LynxSettings.batch_pages must be >= 1, got {self.batch_pages}")
        if self.workers < 0:
            raise ValueError(f"LynxSettings.workers must be >= 0, got {self.workers}")

    def pool_size(self) -> int:
        """The number of batches rendered at once."""
        return self.workers or len(os.sched_getaffinity(0))


@dataclass
class LynxResult:
    """One page's rendering: ``text`` (lines right-stripped, no leading or trailing blank lines)
    or ``text=None`` and ``error`` naming why (a drop reason such as ``lynx_timeout``)."""

    text: str | None
    error: str | None = None


@dataclass
class _PreparedPage:
    """A page as lynx will see it: the ``<div>`` holding its body content, or the reason it has none."""

    fragment: str | None
    error: str | None = None


def _parse(html: str) -> etree._Element | None:
    """The page's lxml tree (None for an empty page). Parsed from UTF-8 bytes, so an XML encoding
    declaration in the text does not stop lxml."""
    data = html.encode("utf-8", "replace")
    if not data.strip():
        return None
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        return lxml.html.document_fromstring(data, parser=parser)
    except etree.ParserError:  # "Document is empty": nothing but whitespace or markup lxml drops
        return None


def _body_of(root: etree._Element) -> etree._Element:
    """The page's ``<body>``, or for a page without one (a frameset) a ``<div>`` of the root's children."""
    body = root.find("body")
    if body is not None:
        return body
    body = lxml.html.Element("div")
    for child in list(root):
        if child.tag != "head":
            body.append(child)
    return body


def _normalise(body: etree._Element, width: int) -> None:
    """Make ``body`` safe to put next to other pages and left-aligned (see the module docstring)."""
    for element in list(body.iter(*DROPPED_TAGS)):
        element.drop_tree()
    for element in list(body.iter(*LITERAL_TAGS)):
        element.tag = "pre"
    for element in list(body.iter("center", *HTML5_BLOCK_TAGS)):
        element.tag = "div"
    for element in body.iter():
        if not isinstance(element.tag, str) or element.tag in CELL_TAGS:
            continue
        align = element.get("align")
        if align is not None and align.strip().lower() in ("center", "middle", "right"):
            element.set("align", "left")
        if element.tag in HEADING_TAGS and align is None:
            element.set("align", "left")
    rule_percent = str(max(1, min(100, round(100 * RULE_COLUMNS / width)))) + "%"
    for element in list(body.iter("hr")):
        element.attrib.clear()
        element.set("align", "left")
        element.set("width", rule_percent)


def prepare_page(html: str, width: int) -> _PreparedPage:
    """``html`` reduced to the ``<div>`` lynx renders for it (both paths use this)."""
    try:
        root = _parse(html)
    except (etree.LxmlError, ValueError) as error:
        log.warning("lynx render: page not parseable as HTML (%s): %.80r", error, html)
        return _PreparedPage(None, REASON_BAD_HTML)
    if root is None:
        return _PreparedPage("<div></div>")
    body = _body_of(root)
    _normalise(body, width)
    body.tag = "div"
    body.attrib.clear()
    body.tail = None
    return _PreparedPage(lxml.html.tostring(body, encoding="unicode"))


def clean_dump(text: str) -> str:
    """Lines right-stripped, leading and trailing blank lines removed."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1]:
        end -= 1
    return "\n".join(lines[start:end])


def _document(fragments: list[str], separator: str) -> bytes:
    """One HTML document holding ``fragments``, a paragraph holding ``separator`` between each two."""
    joiner = f"\n<p>{separator}</p>\n"
    return ("<html><body>\n" + joiner.join(fragments) + "\n</body></html>\n").encode("utf-8")


class _Sandbox:
    """A private directory with the lynx.cfg, HOME and temp space of the lynx processes, their
    environment and command line. Removed by :meth:`close` (or when garbage-collected)."""

    def __init__(self, binary: str, width: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="curator-lynx-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.directory, True)
        config = self.directory / "lynx.cfg"
        config.write_text(LYNX_CFG, encoding="utf-8")
        self.env = {
            "HOME": str(self.directory),
            "TERM": "dumb",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PATH": "/usr/bin:/bin",
            "LYNX_CFG": str(config),
            "LYNX_LSS": os.devnull,
            "LYNX_TEMP_SPACE": str(self.directory),
            "LYNX_SAVE_SPACE": str(self.directory),
            "TMPDIR": str(self.directory),
        }
        for scheme in ("http", "https", "ftp", "gopher", "news", "nntp", "wais", "finger", "cso"):
            self.env[f"{scheme}_proxy"] = DEAD_PROXY
        self.argv = [
            binary, f"-cfg={config}", f"-lss={os.devnull}",
            "-dump", "-stdin", "-nolist", "-force_html", f"-width={width}", "-dont_wrap_pre",
            "-display_charset=utf-8", "-assume_charset=utf-8", "-assume_local_charset=utf-8",
            "-restrictions=all", "-noexec", "-nobrowse", "-noredir", "-noreferer", "-nolog", "-noprint",
            "-localhost", "-nocolor", "-nostatus", "-nopause", "-hiddenlinks=ignore",
            "-connect_timeout=1", "-read_timeout=1",
        ]

    def run(self, document: bytes, timeout_s: float) -> tuple[str | None, str | None]:
        """Run lynx on ``document``: (its stdout, None), or (None, a drop reason)."""
        process = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.directory, start_new_session=True, close_fds=True)
        try:
            out, err = process.communicate(document, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return None, REASON_TIMEOUT
        except BaseException:
            _kill_group(process)
            raise
        if process.returncode != 0:
            log.warning("lynx render: %s exited with %s: %s", self.argv[0], process.returncode,
                        err.decode("utf-8", "replace")[-300:].strip())
            return None, REASON_FAILED
        return out.decode("utf-8", "replace"), None

    def close(self) -> None:
        """Remove the sandbox directory."""
        self._finalizer()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` and everything it started (its own session), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def _resolve_binary(binary: str) -> str:
    """The absolute path of the lynx executable, or FileNotFoundError saying how to install it."""
    found = shutil.which(binary)
    if found is None:
        raise FileNotFoundError(
            f"lynx render: the lynx binary {binary!r} was not found (not on PATH or not executable); "
            "install it with `apt-get install lynx`")
    return os.path.abspath(found)


class LynxRenderer:
    """Renders HTML pages to text with lynx: one page (:meth:`render`) or many, batched and pooled
    (:meth:`render_many`). Holds a sandbox directory and a thread pool; call :meth:`close` (or use
    it as a context manager) when done."""

    def __init__(self, settings: LynxSettings = LynxSettings()) -> None:
        self.settings = settings
        self._sandbox = _Sandbox(_resolve_binary(settings.binary), settings.width)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def binary_path(self) -> str:
        """The absolute path of the lynx executable in use."""
        return self._sandbox.argv[0]

    @property
    def environment(self) -> dict[str, str]:
        """The environment the lynx processes get (a copy)."""
        return dict(self._sandbox.env)

    def __enter__(self) -> LynxRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def render(self, html: str) -> LynxResult:
        """Render one page in its own lynx process."""
        return self._render_prepared(prepare_page(html, self.settings.width))

    def render_many(self, pages: list[str]) -> list[LynxResult]:
        """Render ``pages`` (results in the same order): ``batch_pages`` pages per lynx process,
        up to ``workers`` processes at once; a failed batch is retried one page a process."""
        size = self.settings.batch_pages
        batches = [pages[start:start + size] for start in range(0, len(pages), size)]
        if len(batches) <= 1 or self.settings.pool_size() == 1:
            rendered = [self._render_batch(batch) for batch in batches]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.pool_size(), thread_name_prefix="lynx")
            rendered = list(self._pool.map(self._render_batch, batches))
        return [result for batch in rendered for result in batch]

    def close(self) -> None:
        """Stop the thread pool and remove the sandbox directory."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._sandbox.close()

    def _render_prepared(self, page: _PreparedPage) -> LynxResult:
        if page.fragment is None:
            return LynxResult(None, page.error)
        out, error = self._sandbox.run(_document([page.fragment], ""), self.settings.timeout_s)
        if out is None:
            return LynxResult(None, error)
        return LynxResult(clean_dump(out))

    def _render_batch(self, pages: list[str]) -> list[LynxResult]:
        prepared = [prepare_page(html, self.settings.width) for html in pages]
        ready = [index for index, page in enumerate(prepared) if page.fragment is not None]
        results = [LynxResult(None, page.error) for page in prepared]
        if len(ready) == 1:
            results[ready[0]] = self._render_prepared(prepared[ready[0]])
        elif ready:
            texts = self._render_together([prepared[index].fragment or "" for index in ready])
            if texts is None:
                for index in ready:
                    results[index] = self._render_prepared(prepared[index])
            else:
                for index, text in zip(ready, texts):
                    results[index] = LynxResult(text)
        return results

    def _render_together(self, fragments: list[str]) -> list[str] | None:
        """The texts of ``fragments`` rendered by one lynx process, or None when that failed
        (timeout, error, or not exactly one separator between each two pages)."""
        separator = SEPARATOR_PREFIX + secrets.token_hex(16)
        timeout_s = self.settings.timeout_s * min(len(fragments), BATCH_TIMEOUT_PAGES)
        out, error = self._sandbox.run(_document(fragments, separator), timeout_s)
        if out is None:
            log.warning("lynx render: a batch of %d pages failed (%s); rendering them one at a time",
                        len(fragments), error)
            return None
        texts: list[str] = []
        current: list[str] = []
        for line in out.splitlines():
            if line.strip() == separator:
                texts.append(clean_dump("\n".join(current)))
                current = []
            else:
                current.append(line)
        texts.append(clean_dump("\n".join(current)))
        if len(texts) != len(fragments):
            log.warning("lynx render: a batch of %d pages came back as %d; rendering them one at a time",
                        len(fragments), len(texts))
            return None
        return texts


def render_one_process_per_page(html: str, settings: LynxSettings) -> LynxResult:
    """The baseline: render ``html`` with a lynx process (and sandbox) of its own."""
    with LynxRenderer(settings) as renderer:
        return renderer.render(html)
