"""Tests for stages.warc_writer and the committed sample WARC (scripts/build_sample_warc.py)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = REPO_ROOT / "sample_data" / "pages"
SAMPLE_WARC = REPO_ROOT / "sample_data" / "sample.warc.gz"

try:
    import stages.warc_writer as warc_writer
except ImportError:  # package not installed yet: import from the checkout
    sys.path.insert(0, str(REPO_ROOT))
    import stages.warc_writer as warc_writer


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_sample_warc", REPO_ROOT / "scripts" / "build_sample_warc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_script = _load_build_script()


def _split_content_type(value: str) -> tuple[str, str | None]:
    """('text/html', 'utf-8') from 'text/html; charset=UTF-8' (charset None when absent)."""
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.strip().partition("=")
        if key.lower() == "charset":
            charset = val.strip().lower()
    return mime.strip().lower(), charset


def _read_records(source: bytes | Path, parse_http: bool = True) -> list[dict[str, Any]]:
    """Read every record with fastwarc into plain dicts."""
    data = source.read_bytes() if isinstance(source, Path) else source
    out = []
    for rec in ArchiveIterator(io.BytesIO(data), parse_http=parse_http, record_types=WarcRecordType.any_type):
        row: dict[str, Any] = {
            "type": rec.record_type,
            "id": rec.record_id,
            "pos": rec.stream_pos,
            "url": rec.headers.get("WARC-Target-URI"),
            "headers": dict(rec.headers.items()),
        }
        if parse_http and rec.record_type == WarcRecordType.response:
            row["status"] = rec.http_headers.status_code
            row["http_headers"] = dict(rec.http_headers.items())
            row["content_type"] = rec.http_content_type
            row["charset"] = rec.http_charset
            row["payload_ok"] = rec.verify_payload_digest()
        elif not parse_http:
            row["block_ok"] = rec.verify_block_digest()
        row["body"] = rec.reader.read()
        out.append(row)
    return out


# -- writer round trip -------------------------------------------------------------------

PAGES: list[dict[str, Any]] = [
    {"url": "https://a.example.com/one", "body": "<html><body>caf\u00e9 \u2713</body></html>".encode("utf-8"),
     "content_type": "text/html; charset=utf-8", "status": 200},
    {"url": "https://b.example.org/zwei?x=1&y=2", "body": "<p>Gr\u00fc\u00dfe</p>".encode("latin-1"),
     "content_type": "text/html; charset=ISO-8859-1", "status": 200},
    {"url": "https://c.example.net/", "body": b"<p>no charset in the header</p>",
     "content_type": "text/html", "status": 404},
    {"url": "https://c.example.net/pixel.bin", "body": bytes(range(256)),
     "content_type": "application/octet-stream", "status": 200},
]


def _write_sample(target: Any) -> list[int]:
    """Write warcinfo + request/response/metadata per PAGES entry; return response offsets."""
    offsets = []
    with warc_writer.WarcWriter(target, filename="t.warc.gz") as writer:
        writer.write_warcinfo({"software": "tests", "format": "WARC File Format 1.0"})
        for i, page in enumerate(PAGES):
            date = f"2024-01-01T00:00:{i:02d}Z"
            writer.write_request(page["url"], date=date)
            offsets.append(
                writer.write_response(
                    page["url"],
                    page["body"],
                    content_type=page["content_type"],
                    status=page["status"],
                    date=date,
                    extra_http_headers={"X-Test": str(i)},
                    concurrent_to=writer.last_record_id,
                )
            )
            writer.write_metadata(page["url"], f"fetchTimeMs: {i}\r\n", date=date)
    return offsets


def test_round_trip_with_fastwarc(tmp_path: Path) -> None:
    path = tmp_path / "t.warc.gz"
    offsets = _write_sample(path)
    records = _read_records(path)
    assert [r["type"] for r in records] == [WarcRecordType.warcinfo] + [
        WarcRecordType.request, WarcRecordType.response, WarcRecordType.metadata
    ] * len(PAGES)

    responses = [r for r in records if r["type"] == WarcRecordType.response]
    assert [r["pos"] for r in responses] == offsets
    for i, (page, rec) in enumerate(zip(PAGES, responses)):
        mime, charset = _split_content_type(page["content_type"])
        assert rec["url"] == page["url"]
        assert rec["body"] == page["body"]
        assert rec["status"] == page["status"]
        assert rec["content_type"] == mime
        assert rec["charset"] == charset
        assert rec["payload_ok"]
        assert rec["http_headers"]["Content-Type"] == page["content_type"]
        assert rec["http_headers"]["Content-Length"] == str(len(page["body"]))
        assert rec["http_headers"]["X-Test"] == str(i)
        assert rec["headers"]["Content-Type"] == "application/http; msgtype=response"
        assert rec["headers"]["WARC-Payload-Digest"] == warc_writer.payload_digest(page["body"])
        assert rec["headers"]["WARC-Date"] == f"2024-01-01T00:00:{i:02d}Z"

    # Record ids are uuid5 over (type, url, date, per-writer counter), and links resolve.
    expected_ids = [warc_writer.record_id("warcinfo", "", "2024-01-01T00:00:00Z", 0)]
    for i, page in enumerate(PAGES):
        date = f"2024-01-01T00:00:{i:02d}Z"
        for j, kind in enumerate(("request", "response", "metadata")):
            expected_ids.append(warc_writer.record_id(kind, page["url"], date, 1 + 3 * i + j))
    assert [r["id"] for r in records] == expected_ids
    assert len(set(expected_ids)) == len(expected_ids)
    for prev, rec in zip(records, records[1:]):
        assert rec["headers"]["WARC-Warcinfo-ID"] == records[0]["id"]
        if rec["type"] == WarcRecordType.response:
            assert rec["headers"]["WARC-Concurrent-To"] == prev["id"]
    assert records[0]["headers"]["WARC-Filename"] == "t.warc.gz"
    assert records[0]["body"] == b"software: tests\r\nformat: WARC File Format 1.0\r\n"
    assert records[3]["body"] == b"fetchTimeMs: 0\r\n"
    assert records[1]["body"] == b""  # request headers are parsed off; the GET has no body


def test_block_digests_and_request_line(tmp_path: Path) -> None:
    path = tmp_path / "t.warc.gz"
    _write_sample(path)
    records = _read_records(path, parse_http=False)
    assert all(r["block_ok"] for r in records)
    request = records[1]["body"]
    assert request.startswith(b"GET /one HTTP/1.1\r\nHost: a.example.com\r\n")
    assert records[4]["body"].startswith(b"GET /zwei?x=1&y=2 HTTP/1.1\r\n")


def test_each_record_is_its_own_deterministic_gzip_member(tmp_path: Path) -> None:
    path = tmp_path / "t.warc.gz"
    _write_sample(path)
    data = path.read_bytes()
    starts = [r["pos"] for r in _read_records(path)] + [len(data)]
    for start, end in zip(starts, starts[1:]):
        member = data[start:end]
        assert member[:2] == b"\x1f\x8b" and member[4:8] == b"\x00\x00\x00\x00"  # mtime=0
        assert gzip.decompress(member).startswith(b"WARC/1.0\r\n")


def test_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    _write_sample(first)
    _write_sample(second)
    assert first.getvalue() == second.getvalue()
    # A path target gives the same bytes as a file object target.
    path = tmp_path / "t.warc.gz"
    _write_sample(path)
    assert path.read_bytes() == first.getvalue()


def test_file_object_offsets_start_at_current_position() -> None:
    buf = io.BytesIO()
    buf.write(b"prefix")
    with warc_writer.WarcWriter(buf) as writer:
        first = writer.write_response("https://example.com/", b"x")
        second = writer.write_response("https://example.com/", b"x")
    assert first == 6
    assert first < second < writer.offset == len(buf.getvalue())
    assert gzip.decompress(buf.getvalue()[second:]).startswith(b"WARC/1.0\r\n")
    assert not buf.closed  # a caller's file object is left open
    assert gzip.decompress(buf.getvalue()[6:]).count(b"WARC/1.0\r\n") == 2


# -- committed sample -------------------------------------------------------------------

def _manifest() -> list[dict[str, Any]]:
    return json.loads((PAGES_DIR / "MANIFEST.json").read_text(encoding="utf-8"))["records"]


def test_sample_rebuilds_byte_identically(tmp_path: Path) -> None:
    out = tmp_path / SAMPLE_WARC.name  # WARC-Filename is the output's name
    count = build_script.build_sample_warc(PAGES_DIR, out)
    assert count == len(_manifest())
    assert out.read_bytes() == SAMPLE_WARC.read_bytes(), (
        "sample_data/sample.warc.gz is stale: run scripts/build_sample_warc.py"
    )
    again = tmp_path / "again" / SAMPLE_WARC.name
    build_script.build_sample_warc(PAGES_DIR, again)
    assert again.read_bytes() == out.read_bytes()


def test_manifest_matches_sample_responses() -> None:
    manifest = _manifest()
    records = _read_records(SAMPLE_WARC)
    assert records[0]["type"] == WarcRecordType.warcinfo
    responses = [r for r in records if r["type"] == WarcRecordType.response]
    assert len(responses) == len(manifest)
    assert len(records) == 1 + 3 * len(manifest)
    for entry, rec in zip(manifest, responses):
        mime, charset = _split_content_type(entry["content_type"])
        assert rec["url"] == entry["url"]
        assert rec["status"] == entry["status"]
        assert rec["content_type"] == mime
        assert rec["charset"] == charset
        assert rec["payload_ok"]
        assert rec["body"] == build_script.record_body(entry, PAGES_DIR)


def test_manifest_kinds_are_consistent() -> None:
    manifest = _manifest()
    by_url = {entry["url"]: entry for entry in manifest}
    assert len(by_url) == len(manifest), "urls must be unique"
    kinds = [entry["kind"] for entry in manifest]
    for kind in ("article", "boilerplate", "latin1", "stub", "not_html"):
        assert kind in kinds
    for kind in ("math:mathjax", "math:katex", "math:mathml"):
        assert kind in kinds
    for entry in manifest:
        kind = entry["kind"]
        if entry["file"]:
            assert (PAGES_DIR / entry["file"]).is_file()
        if kind.startswith("exact_duplicate_of:"):
            original = by_url[kind.split(":", 1)[1]]
            assert original["file"] == entry["file"]
        if kind.startswith("near_duplicate_of:"):
            original = by_url[kind.split(":", 1)[1]]
            a = (PAGES_DIR / original["file"]).read_text(encoding="utf-8")
            b = (PAGES_DIR / entry["file"]).read_text(encoding="utf-8")
            assert a != b and "Updated:" in b
            assert len(set(a.splitlines()) ^ set(b.splitlines())) <= 8
        if kind == "latin1":
            raw = (PAGES_DIR / entry["file"]).read_bytes()
            assert "iso-8859-1" in entry["content_type"].lower()
            assert b'<meta charset="iso-8859-1">' in raw.lower()
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert "march\u00e9" in raw.decode("latin-1")


def test_generated_bodies_are_valid() -> None:
    png = build_script.tiny_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    pdf = build_script.tiny_pdf()
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[startxref:].startswith(b"xref\n")
    entries = pdf[startxref:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        assert pdf[int(entry[:10]):].startswith(b"%d 0 obj\n" % number)
