"""URL-list selection: normalisation, list files of each kind, keep and drop modes, errors, a 1M-URL list."""

from __future__ import annotations

import gzip
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.url_lists import UrlListFilter, UrlSet, normalize_url, read_list_urls, url_hashes


@pytest.mark.parametrize(("url", "key"), [
    ("https://example.com/a/b", "example.com/a/b"),
    ("http://example.com/a/b", "example.com/a/b"),
    ("HTTPS://WWW.Example.COM:443/a/b/?q=1#top", "example.com/a/b?q=1"),
    ("http://example.com:80/", "example.com"),
    ("http://example.com", "example.com"),
    ("example.com/page", "example.com/page"),
    ("//example.com/page", "example.com/page"),
    ("  http://example.com/x  \n", "example.com/x"),
    ("http://example.com:8080/x", "example.com:8080/x"),
    ("http://www2.example.com/x", "www2.example.com/x"),
    ("http://user:pw@Example.com./x", "example.com/x"),
    ("http://example.com/Path/Case", "example.com/Path/Case"),
    ("http://example.com/a?b=2&a=1", "example.com/a?b=2&a=1"),
    ("http://example.com/a/?", "example.com/a"),
    ("http://example.com/%7euser/%2f?x=%2f", "example.com/%7Euser/%2F?x=%2F"),
    ("http://example.com/#section", "example.com"),
])
def test_normalize_url(url: str, key: str) -> None:
    assert normalize_url(url) == key


def test_query_strings_stay_distinct() -> None:
    urls = UrlSet.from_urls(["https://forum.example.org/viewtopic.php?t=1"])
    assert "http://www.forum.example.org/viewtopic.php?t=1" in urls
    assert "https://forum.example.org/viewtopic.php?t=2" not in urls
    assert "https://forum.example.org/viewtopic.php" not in urls


def test_url_hashes_are_stable_64_bit() -> None:
    hashes = url_hashes(["http://example.com/", "https://www.example.com"])
    assert hashes.dtype == np.uint64 and hashes[0] == hashes[1]
    assert url_hashes(["http://example.com/"], normalize=False)[0] != hashes[0]
    # The same key always hashes alike, across processes and runs (BLAKE2b, not Python's hash()).
    assert int(url_hashes(["example.com"], normalize=False)[0]) == int.from_bytes(
        __import__("hashlib").blake2b(b"example.com", digest_size=8).digest(), "little")


LISTED = ["https://math.example.org/algebra/quadratics", "http://www.proofs.example.net/pythagoras/",
          "https://forum.example.com/t?id=7"]
ROWS = ["http://math.example.org/algebra/quadratics/",  # scheme and trailing slash differ
        "https://proofs.example.net/pythagoras",        # www. and slash differ
        "https://forum.example.com/t?id=8",             # other query: another page
        "https://news.example.com/today",
        None]


def write_lists(tmp_path: Path) -> dict[str, Path]:
    """The same URLs as a text list, a gzipped text list (with a comment, a blank and a TSV line),
    a Parquet file and a JSONL file."""
    text = tmp_path / "urls.txt"
    text.write_text("\n".join(LISTED) + "\n")
    gz = tmp_path / "urls.txt.gz"
    gz.write_bytes(gzip.compress(("# OpenWebMath sample\n\n" + "\t0.9\n".join(LISTED) + "\t0.9\n").encode()))
    parquet = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"page_url": LISTED, "score": [1.0, 2.0, 3.0]}), parquet)
    jsonl = tmp_path / "urls.jsonl"
    jsonl.write_text("".join(json.dumps({"url": u, "n": i}) + "\n" for i, u in enumerate(LISTED)))
    return {"text": text, "gz": gz, "parquet": parquet, "jsonl": jsonl}


@pytest.mark.parametrize("kind", ["text", "gz", "parquet", "jsonl"])
def test_list_files_of_each_kind(tmp_path: Path, kind: str) -> None:
    path = write_lists(tmp_path)[kind]
    column = "page_url" if kind == "parquet" else "url"
    assert list(read_list_urls(str(path), column)) == LISTED
    stage = UrlListFilter(paths=[str(path)], url_column=column)
    out = stage.process(pa.table({"url": pa.array(ROWS, pa.string())}))
    assert out.column("drop_reason").to_pylist() == [None, None, "url_not_listed", "url_not_listed",
                                                     "url_not_listed"]


def test_drop_mode_and_stage_api(tmp_path: Path) -> None:
    lists = write_lists(tmp_path)
    batch = pa.table({"id": ["a", "b", "c", "d", "e"], "page": pa.array(ROWS, pa.string())})
    stage = UrlListFilter(paths=[str(lists["text"])], column="page", mode="drop")
    assert stage.name == "filter.url_list" and stage.required_columns() == ("page",)
    result = stage.run_batch(batch)
    assert result.kept.column("id").to_pylist() == ["c", "d", "e"]
    assert dict(result.stats.drops) == {"url_listed": 2}
    keep = UrlListFilter(paths=[str(lists["text"])], column="page")(batch)
    assert keep.column("id").to_pylist() == ["a", "b"]


def test_exact_matching_without_normalize(tmp_path: Path) -> None:
    path = write_lists(tmp_path)["text"]
    stage = UrlListFilter(paths=[str(path)], normalize=False)
    rows = [LISTED[0], ROWS[0], LISTED[2]]
    assert stage.process(pa.table({"url": rows})).column("drop_reason").to_pylist() == [
        None, "url_not_listed", None]


def test_globs_and_several_files_with_condition(tmp_path: Path) -> None:
    write_lists(tmp_path)
    (tmp_path / "more.txt").write_text("https://news.example.com/today\n")
    stage = UrlListFilter(paths=[str(tmp_path / "*.txt")], condition="source == 'cc'")
    batch = pa.table({"url": pa.array(ROWS, pa.string()), "source": ["cc", "cc", "cc", "cc", "other"]})
    assert stage.process(batch).column("drop_reason").to_pylist() == [None, None, "url_not_listed", None, None]
    assert len(stage.urls) == 4


def test_missing_file_names_the_file_and_stage(tmp_path: Path) -> None:
    missing = tmp_path / "lists" / "finemath_urls.txt.gz"
    stage = UrlListFilter(paths=[str(missing)])
    with pytest.raises(FileNotFoundError, match=r"filter\.url_list.*finemath_urls\.txt\.gz"):
        stage.setup()


def test_empty_list_is_an_error_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match=r"filter\.url_list.*no URL.*allow_empty"):
        UrlListFilter(paths=[str(empty)]).setup()
    allowed = UrlListFilter(paths=[str(empty)], allow_empty=True)
    assert allowed.process(pa.table({"url": ["http://a.example/"]})).column("drop_reason").to_pylist() == [
        "url_not_listed"]
    assert UrlListFilter(paths=[str(empty)], allow_empty=True, mode="drop").process(
        pa.table({"url": ["http://a.example/"]})).column("drop_reason").to_pylist() == [None]


def test_bad_list_files_raise_clearly(tmp_path: Path) -> None:
    lists = write_lists(tmp_path)
    with pytest.raises(KeyError, match=r"filter\.url_list.*urls\.parquet.*no column 'url'.*page_url"):
        UrlListFilter(paths=[str(lists["parquet"])]).setup()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "http://a.example/"}\nnot json\n')
    with pytest.raises(ValueError, match=r"filter\.url_list.*bad\.jsonl, line 2"):
        UrlListFilter(paths=[str(bad)]).setup()
    with pytest.raises(KeyError, match="column 'url' not in the batch"):
        UrlListFilter(paths=[str(lists["text"])]).process(pa.table({"link": ["x"]}))
    with pytest.raises(ValueError):
        UrlListFilter(paths=[])


def test_loaded_list_is_not_pickled(tmp_path: Path) -> None:
    stage = UrlListFilter(paths=[str(write_lists(tmp_path)["text"])])
    stage.setup()
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._urls is None and len(stage.urls) == 3
    assert copy.process(pa.table({"url": [ROWS[0]]})).column("drop_reason").to_pylist() == [None]


def test_million_url_list(tmp_path: Path) -> None:
    # Measured here (2 shared cores): writing 1M URLs (gzip) ~2 s, setup() ~6 s (normalising ~3 us
    # and hashing ~0.8 us per URL), 8.0 MB held; looking up 100k rows ~0.6 s.
    path = tmp_path / "million.txt.gz"
    urls = [f"https://www.site{i % 5000}.example/p/{i}/index.html?x={i}" for i in range(1_000_000)]
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write("\n".join(urls))
    stage = UrlListFilter(paths=[str(path)])
    start = time.perf_counter()
    stage.setup()
    seconds = time.perf_counter() - start
    assert len(stage.urls) == 1_000_000 and stage.urls.nbytes == 8_000_000
    probe = [f"http://site{i % 5000}.example/p/{i}/index.html/?x={i}" for i in range(0, 2_000_000, 20)]
    found = stage.urls.contains(probe)
    assert found.sum() == 50_000 and found[:50_000].all()
    print(f"1M URLs loaded in {seconds:.1f} s")


def test_relative_list_paths_in_a_pipeline_file_are_resolved_against_the_file(tmp_path: Path) -> None:
    from curator.pipeline import load_pipeline

    folder = tmp_path / "pipelines"
    (folder / "lists").mkdir(parents=True)
    (folder / "lists" / "a.txt").write_text("https://example.org/a\n")
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": ["1"], "url": ["https://example.org/a"]}), tmp_path / "data" / "part-00000.parquet")
    (folder / "p.yaml").write_text(
        "name: p\ninputs:\n  docs: {dataset: ../data}\nstages:\n"
        "  - {id: keep, uses: filter.url_list, from: docs, with: {paths: [lists/a.txt]}}\n"
        "outputs:\n  out: {from: keep}\n")
    pipeline = load_pipeline(str(folder / "p.yaml"), run_dir=str(tmp_path / "run"))
    stage = next(s for s in pipeline.stages if s.id == "keep").stage
    assert stage.paths == [str(folder / "lists" / "a.txt")]
