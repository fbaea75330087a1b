"""Selecting pages by URL lists: ``filter.url_list`` keeps (or removes) rows whose URL is listed.

Nemotron-CC-Math picks its candidate pages by URL from the OpenWebMath, FineMath and MegaMath
lists. Those lists and a crawl differ in small ways (http or https, ``www.`` or not, a trailing
slash), so both sides are normalised the same way before matching (see :func:`normalize_url`).

List files, by name: ``*.parquet`` (the column ``url_column``), ``*.jsonl`` / ``*.ndjson`` /
``*.json`` (one object per line, the key ``url_column``; optionally ``.gz``), anything else is text
with one URL per line (gzip detected by its magic bytes, whatever the name), where blank lines and
lines starting with ``#`` are skipped and only the part before a tab is read (so a TSV of
``url<TAB>score`` works). Paths may be globs and fsspec URLs.

Memory: the list is held as a sorted numpy array of 64-bit BLAKE2b hashes of the normalised URLs,
8 bytes per distinct URL (10 million URLs: 80 MB per worker; building it peaks at about twice
that plus one chunk of a million strings). Lookups are ``np.searchsorted``. With 64-bit hashes a
false match needs a collision: for a list of N URLs a row matches by chance with probability
about N / 2**64 (5e-12 for 100 million URLs).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from hashlib import blake2b
from typing import IO, ClassVar, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from curator.expressions import RowCondition
from curator.filter_stage import FilterStage
from curator.stage import PathParam
from curator.storage import expand_paths

log = logging.getLogger("stages.url_lists")

REASON_NOT_LISTED = "url_not_listed"
REASON_LISTED = "url_listed"
CHUNK_URLS = 1_000_000
_DEFAULT_PORTS = (":80", ":443")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")


def normalize_url(url: str) -> str:
    """The matching key of a URL: no scheme, lower-case host without ``www.``, userinfo or default
    port, no fragment, no trailing slash; path and query kept (their case too), percent-escapes
    upper-cased.

    ``HTTPS://WWW.Example.com:443/a/b/?q=1#top`` and ``http://example.com/a/b?q=1`` both give
    ``example.com/a/b?q=1``. Dropping the scheme makes http and https match (other schemes are
    dropped too; lists hold web pages only). A leading ``www.`` is dropped because lists and crawls
    disagree on it for the same page, and a site's ``www.`` host and bare host serve the same site
    nearly always; ``www2.`` and other subdomains are kept. Query strings are kept as they are
    (not reordered): they often choose the page (``?p=123``, ``?id=...``). A URL without a scheme
    (``example.com/page``) is taken as a host and path.
    """
    u = url.strip()
    cut = u.find("#")
    if cut >= 0:
        u = u[:cut]
    scheme_end = u.find("://")
    if scheme_end >= 0 and u[:scheme_end].isalnum():
        u = u[scheme_end + 3:]
    elif u.startswith("//"):
        u = u[2:]
    end = len(u)
    for sep in ("/", "?"):
        pos = u.find(sep)
        if 0 <= pos < end:
            end = pos
    host, tail = u[:end].lower(), u[end:]
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    if host.endswith(_DEFAULT_PORTS):
        host = host[:host.rfind(":")]
    host = host.rstrip(":").rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    path, mark, query = tail.partition("?")
    path = path.rstrip("/")
    if "%" in tail:
        path = _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), path)
        query = _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), query)
    return host + path + ("?" + query if query else "")


def url_hashes(urls: Iterable[str], normalize: bool = True) -> np.ndarray:
    """64-bit BLAKE2b hashes (uint64) of URLs, normalised first unless ``normalize`` is false."""
    keys = (normalize_url(u) if normalize else u for u in urls)
    digests = b"".join(blake2b(k.encode("utf-8", "surrogatepass"), digest_size=8).digest() for k in keys)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64, copy=False)


class UrlSet:
    """A set of URLs held as sorted 64-bit hashes of their normalised form (8 bytes per URL)."""

    def __init__(self, hashes: np.ndarray, normalize: bool = True) -> None:
        self.hashes = np.unique(np.asarray(hashes, dtype=np.uint64))
        self.normalize = normalize

    @classmethod
    def from_urls(cls, urls: Iterable[str], normalize: bool = True) -> UrlSet:
        """A set of the given URLs, hashed in chunks of a million (so an iterator is never all held)."""
        return cls(np.concatenate([np.empty(0, np.uint64), *_hash_chunks(urls, normalize)]), normalize)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        """Memory the set holds: 8 bytes per distinct URL."""
        return int(self.hashes.nbytes)

    def contains(self, urls: list[str | None]) -> np.ndarray:
        """A boolean array: whether each URL is in the set (a null URL never is)."""
        present = np.array([u is not None for u in urls], dtype=bool)
        out = np.zeros(len(urls), dtype=bool)
        if not present.any() or not len(self.hashes):
            return out
        keys = url_hashes([u for u in urls if u is not None], self.normalize)
        pos = np.searchsorted(self.hashes, keys)
        found = self.hashes[np.minimum(pos, len(self.hashes) - 1)] == keys
        out[present] = found
        return out

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and bool(self.contains([url])[0])


def _hash_chunks(urls: Iterable[str], normalize: bool) -> Iterator[np.ndarray]:
    chunk: list[str] = []
    for url in urls:
        chunk.append(url)
        if len(chunk) >= CHUNK_URLS:
            yield url_hashes(chunk, normalize)
            chunk = []
    if chunk:
        yield url_hashes(chunk, normalize)


@contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    """A file opened for reading, gunzipped when it starts with gzip's magic bytes."""
    with fsspec.open(path, "rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def read_text_urls(path: str) -> Iterator[str]:
    """URLs of a text list: one a line, blank and ``#`` lines skipped, only the part before a tab."""
    with _open_binary(path) as fh:
        for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
            line = line.split("\t", 1)[0].strip()
            if line and not line.startswith("#"):
                yield line


def read_parquet_urls(path: str, column: str) -> Iterator[str]:
    """Non-null values of ``column`` in a Parquet file, read in batches."""
    with fsspec.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        if column not in pf.schema_arrow.names:
            raise KeyError(f"URL list {path} has no column {column!r} (columns: {', '.join(pf.schema_arrow.names)}); "
                           f"set url_column")
        for batch in pf.iter_batches(columns=[column], batch_size=100_000):
            yield from (u for u in batch.column(0).to_pylist() if u)


def read_jsonl_urls(path: str, key: str) -> Iterator[str]:
    """Values of ``key`` in a JSON-lines file; lines without it are counted and logged, bad JSON raises."""
    missing = 0
    with _open_binary(path) as fh:
        for number, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8", errors="replace"), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line).get(key)
            except (json.JSONDecodeError, AttributeError) as exc:
                raise ValueError(f"URL list {path}, line {number}: not a JSON object: {exc}") from None
            if value:
                yield str(value)
            else:
                missing += 1
    if missing:
        log.warning("URL list %s: %d lines without %r skipped", path, missing, key)


def read_list_urls(path: str, url_column: str = "url") -> Iterator[str]:
    """The URLs of one list file, by its kind (see the module docstring)."""
    name = path.lower()
    if name.endswith(".parquet"):
        return read_parquet_urls(path, url_column)
    if name.endswith(_JSON_SUFFIXES):
        return read_jsonl_urls(path, url_column)
    return read_text_urls(path)


class UrlListFilter(FilterStage):
    """Keep only rows whose URL is in the given URL lists (or, in drop mode, remove them).

    Dropped rows get ``url_not_listed`` (keep mode; a null URL is never listed) or ``url_listed``
    (drop mode). The lists are loaded once per worker by ``setup()``.
    """

    name: ClassVar[str] = "filter.url_list"
    requires: ClassVar[tuple[str, ...]] = ("url",)

    paths: list[PathParam] = Field(..., min_length=1, description=(
        "URL list files (globs and fsspec URLs allowed): *.parquet (column url_column), *.jsonl "
        "(key url_column), or text with one URL a line (gzip or not)."))
    column: str = Field("url", description="The column of the batch holding each page's URL.")
    url_column: str = Field("url", description="The column (Parquet) or key (JSONL) of the URL in list files.")
    normalize: bool = Field(True, description=(
        "Match on normalised URLs (scheme, www., default port, trailing slash and fragment ignored; "
        "host case-folded; query kept). False: exact strings."))
    mode: Literal["keep", "drop"] = Field("keep", description=(
        "keep: keep only listed URLs (others: url_not_listed); drop: remove listed URLs (url_listed)."))
    allow_empty: bool = Field(False, description=(
        "Accept lists holding no URL at all. Off by default: an empty list is usually a wrong path "
        "or column, and would drop every row in keep mode."))

    # The loaded list: rebuilt by setup() in each process, never pickled (see __getstate__).
    _urls: UrlSet | None = PrivateAttr(default=None)
    unpicklable: ClassVar[tuple[str, ...]] = ("_urls",)  # up to hundreds of MB

    def required_columns(self) -> tuple[str, ...]:
        columns = [self.column]
        if self.condition:
            columns += [c for c in RowCondition.parse(self.condition).columns if c not in columns]
        return tuple(columns)

    def list_files(self) -> list[str]:
        """The list files ``paths`` name (globs expanded; relative paths taken from the working directory)."""
        try:
            return expand_paths(self.paths, os.getcwd())
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"stage {self.name}: URL list not found: {exc.args[0] if exc.args else exc} "
                f"(paths={self.paths!r}, working directory {os.getcwd()})") from None

    def setup(self) -> None:
        """Load and hash every list (once; later calls do nothing)."""
        if self._urls is not None:
            return
        start = time.perf_counter()
        files = self.list_files()

        def every_url() -> Iterator[str]:
            for path in files:
                try:
                    yield from read_list_urls(path, self.url_column)
                except (KeyError, ValueError) as exc:
                    raise type(exc)(f"stage {self.name}: {exc.args[0] if exc.args else exc}") from None

        urls = UrlSet.from_urls(every_url(), self.normalize)
        if not len(urls) and not self.allow_empty:
            raise ValueError(f"stage {self.name}: the URL lists hold no URL ({', '.join(files)}); "
                             f"check paths and url_column, or set allow_empty: true")
        log.info("stage %s: loaded %d distinct URLs from %d file(s) in %.1f s (%.1f MB)",
                 self.name, len(urls), len(files), time.perf_counter() - start, urls.nbytes / 1e6)
        self._urls = urls

    @property
    def urls(self) -> UrlSet:
        """The loaded URL set (loading it first if needed)."""
        self.setup()
        assert self._urls is not None
        return self._urls

    def reasons(self, batch: pa.Table) -> pa.Array:
        if self.column not in batch.column_names:
            raise KeyError(f"stage {self.name}: column {self.column!r} not in the batch "
                           f"(columns: {', '.join(batch.column_names)})")
        listed = self.urls.contains(batch.column(self.column).to_pylist())
        out = np.full(batch.num_rows, None, dtype=object)
        if self.mode == "keep":
            out[~listed] = REASON_NOT_LISTED
        else:
            out[listed] = REASON_LISTED
        return pa.array(out, pa.string())
