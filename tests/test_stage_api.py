"""The stage-level Python API: stages used directly, outside any pipeline."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from pydantic import ValidationError

from curator.registry import StageRegistry
from curator.stage import DROP_REASON, MapStage, split_drops
from stages.exact_dedup import normalize_text, text_hashes
from stages.html_text import HtmlToText
from tests.conftest import REPO


def test_html_to_text_on_a_batch() -> None:
    stage = HtmlToText(min_chars=10)
    stage.setup()
    batch = pa.table({
        "id": ["a", "b", "c"],
        "body": [b"<html><body><h1>Title</h1><p>First paragraph here.</p><script>x=1</script></body></html>",
                 b"\x89PNG...", b"<p>tiny</p>"],
        "content_type": ["text/html", "image/png", "text/html"],
        "http_charset": [None, None, None],
    })
    result = stage.run_batch(batch)
    assert result.kept.column("text").to_pylist() == ["Title\nFirst paragraph here."]
    assert "body" not in result.kept.column_names
    assert result.rejected.column(DROP_REASON).to_pylist() == ["not_html", "empty_text"]
    assert dict(result.stats.drops) == {"not_html": 1, "empty_text": 1}
    assert (result.stats.docs_in, result.stats.docs_out) == (3, 1)
    assert stage(batch).num_rows == 1  # calling the stage returns the kept rows


def test_parameters_are_validated() -> None:
    with pytest.raises(ValidationError):
        HtmlToText(min_chars="many")
    with pytest.raises(ValidationError):
        HtmlToText(min_chars=3, no_such_parameter=1)


def test_split_drops_counts_reasons() -> None:
    table = pa.table({"x": [1, 2, 3, 4], DROP_REASON: [None, "a", "b", "a"]})
    res = split_drops(table)
    assert res.kept.column_names == ["x"] and res.kept.column("x").to_pylist() == [1]
    assert dict(res.stats.drops) == {"a": 2, "b": 1}


def test_registry_lists_installed_stages() -> None:
    registry = StageRegistry.discover()
    assert {"io.warc", "text.html_plain", "dedup.exact", "util.identity"} <= set(registry.names())
    assert issubclass(registry.get("util.identity"), MapStage)


def test_hash_normalisation() -> None:
    texts = pa.array(["  a  b\n c ", "a b c", "A B C", None])
    h1, h2 = text_hashes(normalize_text(texts, "whitespace"))
    assert h1[0] == h1[1] and h1[1] != h1[2]
    h1, _ = text_hashes(normalize_text(texts, "lower_whitespace"))
    assert h1[0] == h1[2]


def test_readme_python_example_runs() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README shows the stage-level API"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
