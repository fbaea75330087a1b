"""The lynx renderer (stages/lynx_render.py) with the real lynx binary: rendering, batched == one
process per page, broken pages in a batch, timeouts, a missing binary, and the sandbox."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.lynx_render import (
    REASON_FAILED,
    REASON_TIMEOUT,
    LynxRenderer,
    LynxResult,
    LynxSettings,
    render_one_process_per_page,
)

REPO = Path(__file__).resolve().parents[1]
LONG_LINE = " ".join(f"w{i:03d}" for i in range(120))  # 599 characters


@pytest.fixture(scope="module")
def renderer() -> Iterator[LynxRenderer]:
    """A renderer with small batches and two workers, so that a few pages already use the pool."""
    with LynxRenderer(LynxSettings(batch_pages=6, workers=2)) as instance:
        yield instance


def neighbour(index: int) -> str:
    """A well-formed page whose text is known exactly."""
    return (f"<html><head><title>T{index}</title></head><body><h2>Neighbour {index}</h2>"
            f"<p>Paragraph of page {index}.</p><ul><li>item {index}</li></ul></body></html>")


def neighbour_text(index: int) -> str:
    return f"Neighbour {index}\n\n   Paragraph of page {index}.\n     * item {index}"


def test_renders_structure_code_unicode_and_long_lines(renderer: LynxRenderer) -> None:
    html = f"""<html><head><title>Ignored title</title></head><body>
<h1>Main heading</h1>
<p>A paragraph with αβγ — ü and ∑ᵢ xᵢ².</p>
<ul><li>first</li><li>second</li></ul>
<table><tr><th>name</th><th>value</th></tr><tr><td>alpha</td><td>1</td></tr></table>
<pre>def f(x):
    if x:
        return 1</pre>
<p>{LONG_LINE}</p>
</body></html>"""
    result = renderer.render(html)
    assert result.error is None and result.text is not None
    lines = result.text.splitlines()
    assert lines[0] == "Main heading"  # left-aligned, not centred across 1000 columns
    assert "   A paragraph with αβγ — ü and ∑ᵢ xᵢ²." in lines
    assert "     * first" in lines and "     * second" in lines
    assert "   name  value" in lines and "   alpha 1" in lines
    start = lines.index("def f(x):")
    assert lines[start + 1:start + 3] == ["    if x:", "        return 1"]
    assert f"   {LONG_LINE}" in lines  # one line: not wrapped at the default width
    assert "Ignored title" not in result.text
    assert all(line == line.rstrip() for line in lines)


def test_layout_is_left_aligned_and_html5_blocks_break_lines(renderer: LynxRenderer) -> None:
    html = ("<center>centred</center><p align=right>right</p><section>one</section><section>two</section>"
            "<hr><table><tr><td align=right>12</td></tr><tr><td>1234</td></tr></table>")
    text = renderer.render(html).text
    assert text is not None
    assert [line for line in text.splitlines() if line][:4] == ["   centred", "   right", "   one", "   two"]
    rule = next(line for line in text.splitlines() if "___" in line)
    assert len(rule.strip()) < 100
    assert "     12" in text.splitlines()  # alignment inside a table column is kept


def real_pages() -> list[str]:
    """About 30 real pages: the repository's samples, the math pages and some aeb-dev articles."""
    shared = REPO.parent / "shared" / "data"
    paths = sorted((REPO / "sample_data" / "pages").glob("*.html"))[:10]
    paths += sorted((shared / "math").rglob("*.html"))[:10]
    paths += sorted((shared / "extraction" / "aeb-dev" / "html").glob("*.html.gz"))[:10]
    assert len(paths) == 30, f"expected 30 sample pages, found {len(paths)}"
    pages = []
    for path in paths:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        pages.append(data.decode("utf-8", "replace"))
    return pages


def test_batched_equals_one_process_per_page(renderer: LynxRenderer) -> None:
    pages = real_pages()
    batched = renderer.render_many(pages)
    single = [renderer.render(page) for page in pages]
    assert [result.error for result in single] == [None] * len(pages)
    for index, (one, many) in enumerate(zip(single, batched)):
        assert many == one, f"page {index} differs between the batched and the one-process path"
    assert sum(len(result.text or "") for result in single) > 100_000
    assert renderer.render_many(pages[:7]) == batched[:7]  # deterministic, whatever the batch split


BROKEN_PAGES = [
    "<div><p><b>bold <i>italic <table><tr><td>cell",
    "<p>before the comment</p><!-- an unclosed comment <p>hidden",
    "<p>before the script</p><script>var x = '<p>not text</p>';",
    "<p>before plaintext</p><plaintext><p>literal markup",
    "<p>before xmp</p><xmp><b>literal</b>",
    "<pre>unclosed pre\n  indented",
    "<p>a form <textarea>unclosed text area <select><option>one",
    "<p>contains CURATORPAGEBREAK and a title</p><title>late title",
    "<?xml version='1.0' encoding='utf-8'?><html><body><p>xml declared</p>",
    "",
]


def test_broken_pages_do_not_swallow_their_neighbours(renderer: LynxRenderer) -> None:
    pages: list[str] = []
    for index, broken in enumerate(BROKEN_PAGES):
        pages += [neighbour(index), broken]
    pages.append(neighbour(len(BROKEN_PAGES)))
    settings = LynxSettings(batch_pages=len(pages), workers=1)
    with LynxRenderer(settings) as one_batch:
        results = one_batch.render_many(pages)
        assert results == [one_batch.render(page) for page in pages]
    assert len(results) == len(pages)
    for index in range(len(BROKEN_PAGES) + 1):
        assert results[2 * index] == LynxResult(neighbour_text(index))
    broken = {page: result.text for page, result in zip(BROKEN_PAGES, results[1::2])}
    assert "literal markup" in (broken[BROKEN_PAGES[3]] or "") and "<p>" in (broken[BROKEN_PAGES[3]] or "")
    assert "<b>literal</b>" in (broken[BROKEN_PAGES[4]] or "")
    assert "not text" not in (broken[BROKEN_PAGES[2]] or "")
    assert "xml declared" in (broken[BROKEN_PAGES[8]] or "")
    assert broken[""] == ""


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_timeout_costs_only_the_slow_page(tmp_path: Path) -> None:
    # A lynx stand-in that hangs on pages holding SLOWPAGE and runs the real lynx on the others.
    script = write_script(tmp_path / "slow-lynx", f"""input=$(cat)
case "$input" in *SLOWPAGE*) sleep 30;; esac
printf '%s' "$input" | exec {shutil.which("lynx")} "$@"
""")
    pages = [neighbour(0), "<p>SLOWPAGE</p>", neighbour(1), neighbour(2)]
    with LynxRenderer(LynxSettings(binary=str(script), timeout_s=0.5, batch_pages=4, workers=1)) as slow:
        start = time.perf_counter()
        results = slow.render_many(pages)
        elapsed = time.perf_counter() - start
    assert results[1] == LynxResult(None, REASON_TIMEOUT)
    assert [results[0], results[2], results[3]] == [LynxResult(neighbour_text(i)) for i in range(3)]
    assert elapsed < 10


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    script = write_script(tmp_path / "hang", f"sleep 60 &\necho $! > {child_pid_file}\nwait\n")
    result = render_one_process_per_page("<p>x</p>", LynxSettings(binary=str(script), timeout_s=0.5))
    assert result == LynxResult(None, REASON_TIMEOUT)
    child = int(child_pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # killed; the init process reaps it
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_failing_binary_gives_lynx_failed(tmp_path: Path) -> None:
    script = write_script(tmp_path / "broken-lynx", "cat > /dev/null\necho boom >&2\nexit 3\n")
    with LynxRenderer(LynxSettings(binary=str(script), batch_pages=3, workers=1)) as broken:
        assert broken.render_many(["<p>a</p>", "<p>b</p>"]) == [LynxResult(None, REASON_FAILED)] * 2


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"no-such-lynx.*apt-get install lynx"):
        LynxRenderer(LynxSettings(binary="no-such-lynx"))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="width"):
        LynxSettings(width=5000)
    with pytest.raises(ValueError, match="batch_pages"):
        LynxSettings(batch_pages=0)


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request and records its path on the server."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<p>SERVED CONTENT</p>")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_sandbox_fetches_nothing_and_reads_no_file(renderer: LynxRenderer) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = f"""<html><head>
<meta http-equiv="refresh" content="0;url={url}/refresh">
<link rel="stylesheet" href="{url}/style.css"><link rel="next" href="{url}/next">
<base href="{url}/base/"><script src="{url}/script.js"></script>
</head><body>
<meta http-equiv="refresh" content="0;url={url}/body-refresh">
<p>Sandboxed page <a href="file:///etc/passwd">passwd</a> <a href="{url}/link">link</a></p>
<img src="{url}/image.png" alt="an image"><iframe src="{url}/frame"></iframe>
<iframe src="file:///etc/passwd"></iframe><object data="{url}/object"></object>
<form action="{url}/form"><input type="image" src="{url}/button.png"></form>
</body></html>"""
        results = [renderer.render(page)] + renderer.render_many([page, neighbour(0), page])
        time.sleep(0.3)  # a request in flight would have arrived by now
    finally:
        server.shutdown()
        server.server_close()
    assert server.requests == []  # type: ignore[attr-defined]
    for result in (results[0], results[1], results[3]):
        assert result.error is None and "Sandboxed page" in (result.text or "")
        assert "root:" not in (result.text or "") and "SERVED CONTENT" not in (result.text or "")


def test_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch, renderer: LynxRenderer) -> None:
    monkeypatch.setenv("LYNX_CFG", "/nonexistent/lynx.cfg")
    monkeypatch.setenv("no_proxy", "*")
    with LynxRenderer(LynxSettings(workers=1)) as fresh:
        assert fresh.render(neighbour(3)) == LynxResult(neighbour_text(3))
        assert "no_proxy" not in fresh.environment and fresh.environment["HOME"] != os.environ.get("HOME")
