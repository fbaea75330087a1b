"""Tests for stages.warc_records on the shared reference WARCs and on damaged copies of them.

Ground truth for offsets and URLs comes from a small zlib-based reading of the gzip members
below, not from fastwarc, so the two readers check each other.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import brotli  # a dependency of fastwarc
import fsspec
import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from stages.warc_records import (
    WarcProblem,
    WarcReadCounts,
    WarcResponse,
    WarcResponseReader,
    iter_warc_responses,
)

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"
EDGE = "edge-cases"

# Start of every gzip member of warcfile.warc.gz that holds a response record, in order.
WARCFILE_RESPONSE_OFFSETS = [940, 12685, 32353, 38503, 42891, 48321, 61090, 70222, 75624, 87298, 99077,
                             106585, 110823, 120465, 125552, 132240]


@pytest.fixture(scope="module")
def warc_dir() -> Path:
    """The shared WARC folder; missing data is a failure, not a skip."""
    assert WARC_DIR.is_dir(), f"reference WARC data not found at {WARC_DIR}"
    return WARC_DIR


def read_all(source: str | Path | BinaryIO, **kwargs: int | bool) -> tuple[list[WarcResponse], list[WarcProblem],
                                                                          WarcReadCounts]:
    """Read a whole file; (responses, problems, counts), checking the counts against the items."""
    reader = WarcResponseReader(source, **kwargs)  # type: ignore[arg-type]
    items = list(reader)
    responses = [i for i in items if isinstance(i, WarcResponse)]
    problems = [i for i in items if isinstance(i, WarcProblem)]
    assert len(responses) + len(problems) == len(items)
    assert reader.counts.responses == len(responses)
    assert reader.counts.problem_count == len(problems)
    return responses, problems, reader.counts


def kinds(problems: list[WarcProblem]) -> list[tuple[int, str]]:
    """(offset, kind) of each problem."""
    return [(p.offset, p.kind) for p in problems]


def gzip_members(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, decompressed bytes) of each gzip member, read with zlib."""
    out = []
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        raw = d.decompress(data[pos:])
        assert d.eof, f"incomplete member at {pos}"
        out.append((pos, raw))
        pos = len(data) - len(d.unused_data)
    return out


def warc_fields(record: bytes) -> dict[str, str]:
    """The WARC header fields of a record's bytes, names lower-cased."""
    head = record.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0].decode("utf-8")
    lines = head.split("\r\n")
    assert lines[0].startswith("WARC/1.")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


def rebuild(members: list[bytes], groups: list[list[int]]) -> tuple[bytes, list[int]]:
    """Recompress records (each a decompressed member) grouped into members; (data, member starts)."""
    data, starts = b"", []
    for group in groups:
        starts.append(len(data))
        data += gzip.compress(b"".join(members[i] for i in group))
    return data, starts


class OneWayStream:
    """A binary stream with read() only, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)

    def seekable(self) -> bool:
        return False


# -- the reference files -------------------------------------------------------------------------

def test_warcfile_yields_its_16_responses(warc_dir: Path) -> None:
    path = warc_dir / "warcfile.warc.gz"
    responses, problems, counts = read_all(path)
    assert problems == []
    expected = []
    for offset, raw in gzip_members(path.read_bytes()):
        fields = warc_fields(raw)
        if fields["warc-type"] == "response":
            expected.append((offset, fields["warc-record-id"], fields["warc-target-uri"], fields["warc-date"]))
    assert [(r.offset, r.record_id, r.url, r.date) for r in responses] == expected
    assert [r.offset for r in responses] == WARCFILE_RESPONSE_OFFSETS
    assert responses[0].url == "http://003338.cn/l41/481397.html"
    assert responses[-1].url == "http://096355.com/video/11073.html?11073-0-2"
    assert counts.records == {"warcinfo": 1, "request": 17, "response": 16, "metadata": 16}
    assert counts.non_http_responses == 0 and counts.shared_member_records == 0
    assert all(r.http_status == 200 and r.content_type == "text/html" for r in responses)


def test_offsets_lead_back_to_the_same_record(warc_dir: Path) -> None:
    path = warc_dir / "warcfile.warc.gz"
    responses, _, _ = read_all(path)
    data = path.read_bytes()
    for response in responses:
        with open(path, "rb") as f:
            f.seek(response.offset)
            record = next(iter(ArchiveIterator(f, parse_http=False)))
            assert record.record_id == response.record_id
        first = zlib.decompressobj(31).decompress(data[response.offset:], 4096)
        assert warc_fields(first)["warc-record-id"] == response.record_id


def test_bodies_charsets_and_languages(warc_dir: Path) -> None:
    by_url = {r.url: r for r in read_all(warc_dir / "warcfile.warc.gz")[0]}
    ru = by_url["http://01spb.ru/company/"]
    assert ru.charset == "windows-1251"
    assert len(ru.body) == 104567
    assert any("\u0400" <= ch <= "\u04ff" for ch in ru.body.decode("windows-1251"))
    zh = by_url["http://037426.cn/"]
    assert zh.charset == "gb2312"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh.body.decode("gb18030"))
    assert by_url["http://003338.cn/l41/481397.html"].charset is None
    for response in by_url.values():
        assert response.body.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<"  # the HTML, not HTTP headers
        assert b"HTTP/1.1 200" not in response.body[:20]


def test_clipped_file_reports_its_partial_record(warc_dir: Path) -> None:
    responses, problems, counts = read_all(warc_dir / "clipped.warc.gz")
    # Its only record is the one cut short: it must come out as a problem, not as a short body.
    assert responses == []
    assert kinds(problems) == [(0, "truncated")]
    assert "74970 of 88038" in problems[0].message
    assert counts.records == {"response": 1}


def test_whirlwind_warc_wet_wat(warc_dir: Path) -> None:
    responses, problems, _ = read_all(warc_dir / "whirlwind.warc.gz")
    assert problems == []
    assert [(r.offset, r.url, r.content_type, r.charset) for r in responses] == [
        (1023, "https://an.wikipedia.org/wiki/Escopete", "text/html", "utf-8")]
    assert b"Escopete" in responses[0].body
    for name, other in (("whirlwind.warc.wet.gz", "conversion"), ("whirlwind.warc.wat.gz", "metadata")):
        responses, problems, counts = read_all(warc_dir / name)
        assert (responses, problems) == ([], []), name  # no response records is not an error
        assert counts.records == {"warcinfo": 1, other: 1}


# file -> (response offsets, problems as (offset, kind), records seen by type, records sharing a member)
EDGE_CASES = {
    "example.warc.gz": ([784], [], {"warcinfo": 2, "response": 1, "request": 2, "revisit": 1}, 0),
    # One gzip member holds all six records: offsets are that member's start, and fastwarc's
    # stream_pos (the compressed file size here) is corrected to it.
    "example-bad-non-chunked.warc.gz": ([0], [], {"warcinfo": 2, "response": 1, "request": 2, "revisit": 1}, 5),
    # Its gzip members split the response, and the WARC record (length, payload digest) holds one
    # byte fewer than the HTTP Content-Length says: the page still ends with </html>, so only
    # check_http_length reports it (see test_wrong_chunks_with_http_length_check).
    "example-wrong-chunks.warc.gz": ([0], [], {"response": 1, "request": 1}, 0),
    "example-iana.org-chunked.warc": ([405], [], {"warcinfo": 1, "response": 1, "request": 1}, 0),
    "example-resource.warc.gz": ([], [], {"warcinfo": 2, "resource": 1}, 0),
    "post-test.warc.gz": ([0, 1196, 2395], [], {"response": 3, "request": 3}, 0),
    "example.arc.gz": ([], [(0, "not_a_warc")], {}, 0),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases(warc_dir: Path, name: str) -> None:
    offsets, expected_problems, records, shared = EDGE_CASES[name]
    responses, problems, counts = read_all(warc_dir / EDGE / name)
    assert [r.offset for r in responses] == offsets
    assert kinds(problems) == expected_problems
    assert counts.records == records
    assert counts.shared_member_records == shared


def test_edge_case_folder_is_covered(warc_dir: Path) -> None:
    names = {p.name for p in (warc_dir / EDGE).iterdir() if not p.name.startswith("LICENSE")}
    assert names == set(EDGE_CASES)


def test_wrong_chunks_with_http_length_check(warc_dir: Path) -> None:
    (response,), _, _ = read_all(warc_dir / EDGE / "example-wrong-chunks.warc.gz")
    assert len(response.body) == 1270 and response.body.rstrip().endswith(b"</html>")
    responses, problems, _ = read_all(warc_dir / EDGE / "example-wrong-chunks.warc.gz", check_http_length=True)
    assert responses == []
    assert kinds(problems) == [(0, "bad_http")]
    assert "1270 bytes but HTTP Content-Length is 1271" in problems[0].message


def test_chunked_transfer_encoding_is_decoded(warc_dir: Path) -> None:
    path = warc_dir / EDGE / "example-iana.org-chunked.warc"
    (response,), _, _ = read_all(path)
    raw = next(iter(ArchiveIterator(str(path), record_types=WarcRecordType.response))).reader.read()
    assert int(raw.split(b"\r\n", 1)[0], 16) > 0  # stored chunked: it starts with a chunk size
    assert response.body.startswith(b"<!doctype html>")
    assert response.body.rstrip().endswith(b"</html>")
    assert len(response.body) == 7223 < len(raw)
    decoded = next(iter(ArchiveIterator(str(path), record_types=WarcRecordType.response,
                                        auto_decode="transfer"))).reader.read()
    assert response.body == decoded
    assert (response.content_type, response.charset, response.http_status) == ("text/html", "utf-8", 200)


def test_gzip_content_encoding_is_decoded(warc_dir: Path) -> None:
    (response,), _, _ = read_all(warc_dir / EDGE / "example.warc.gz")
    assert response.body.startswith(b"<!doctype html>")
    assert b"Example Domain" in response.body


def recoded_example(warc_dir: Path, coding: bytes | None, payload: bytes, http_length: int | None = None) -> bytes:
    """example.warc.gz's response record with its payload and Content-Encoding replaced, gzipped."""
    data = (warc_dir / EDGE / "example.warc.gz").read_bytes()
    record = zlib.decompressobj(31).decompress(data[784:])
    warc_head, _, block = record.partition(b"\r\n\r\n")
    http_head = block.partition(b"\r\n\r\n")[0]
    lines = [line for line in http_head.split(b"\r\n")
             if not line.lower().startswith((b"content-encoding:", b"content-length:"))]
    if coding is not None:
        lines.append(b"Content-Encoding: " + coding)
    lines.append(b"Content-Length: %d" % (len(payload) if http_length is None else http_length))
    block = b"\r\n".join(lines) + b"\r\n\r\n" + payload
    warc_lines = [line for line in warc_head.split(b"\r\n")  # the digests no longer hold
                  if not line.lower().startswith((b"content-length:", b"warc-block-digest:", b"warc-payload-digest:"))]
    warc_head = b"\r\n".join(warc_lines) + b"\r\nContent-Length: %d" % len(block)
    return gzip.compress(warc_head + b"\r\n\r\n" + block + b"\r\n\r\n")


def test_content_encodings(warc_dir: Path, tmp_path: Path) -> None:
    (page,), _, _ = read_all(warc_dir / EDGE / "example.warc.gz")
    html = page.body
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_deflate = deflate.compress(html) + deflate.flush()
    cases = {
        "gzip": (b"gzip", gzip.compress(html), html),
        "x-gzip": (b"x-gzip", gzip.compress(html), html),
        "zlib-deflate": (b"deflate", zlib.compress(html), html),
        "raw-deflate": (b"deflate", raw_deflate, html),
        "br": (b"br", brotli.compress(html), html),
        "gzip-label-on-plain-body": (b"gzip", html, html),
        "identity": (b"identity", html, html),
        "cut-gzip": (b"gzip", gzip.compress(html)[:300], "bad_http"),
        "corrupt-gzip": (b"gzip", gzip.compress(html)[:20] + b"\x00" * 200, "bad_http"),
        "unknown-on-plain-body": (b"compress", html, html),  # HTML as it is: nothing to decode
        "unknown": (b"compress", zlib.compress(html), "bad_http"),
        "bomb": (b"gzip", gzip.compress(b"\x00" * 5_000_000), "body_too_large"),
    }
    for name, (coding, payload, expected) in cases.items():
        path = tmp_path / f"{name}.warc.gz"
        path.write_bytes(recoded_example(warc_dir, coding, payload))
        responses, problems, _ = read_all(path, max_body_bytes=1 << 20)
        if isinstance(expected, bytes):
            assert problems == [], name
            assert [r.body for r in responses] == [expected], name
        else:
            assert responses == [], name
            assert kinds(problems) == [(0, expected)], name
        # check_http_length goes by the headers even where the payload is plainly not encoded.
        by_headers = "bad_http" if name == "unknown-on-plain-body" else expected
        responses, problems, _ = read_all(path, max_body_bytes=1 << 20, check_http_length=True)
        if isinstance(by_headers, bytes):
            assert [r.body for r in responses] == [by_headers], name
        else:
            assert kinds(problems) == [(0, by_headers)], name


def test_payload_shorter_than_http_content_length(warc_dir: Path, tmp_path: Path) -> None:
    (page,), _, _ = read_all(warc_dir / EDGE / "example.warc.gz")
    html = page.body
    cut = html[:-200]  # no longer ends with </html>
    for name, payload, claimed, expected in (("cut", cut, len(html), [(0, "bad_http")]),
                                             ("whole", cut, len(cut), []),
                                             ("page-ends", html, len(html) + 5, []),
                                             ("json-cut", b'{"a": [1, 2', 40, [(0, "bad_http")])):
        path = tmp_path / f"{name}.warc.gz"
        path.write_bytes(recoded_example(warc_dir, None, payload, http_length=claimed))
        responses, problems, _ = read_all(path)
        assert kinds(problems) == expected, name
        assert len(responses) == 1 - len(expected), name
        if name == "page-ends":  # a whole page is compared with its HTTP length only on request
            assert kinds(read_all(path, check_http_length=True)[1]) == [(0, "bad_http")]


def test_arc_and_random_bytes_are_not_warc(warc_dir: Path, tmp_path: Path) -> None:
    _, problems, _ = read_all(warc_dir / EDGE / "example.arc.gz")
    assert kinds(problems) == [(0, "not_a_warc")]
    noise = random.Random(7).randbytes(100_000)
    for name, data in (("noise.warc", noise), ("noise.warc.gz", gzip.compress(noise)), ("empty.warc.gz", b""),
                       ("text.warc", b"just some text\r\n\r\nand more\r\n")):
        path = tmp_path / name
        path.write_bytes(data)
        responses, problems, counts = read_all(path)
        assert responses == [], name
        assert kinds(problems) == [(0, "not_a_warc")], name
        assert counts.records == {}, name


# -- damaged copies of the reference files -------------------------------------------------------

@pytest.fixture(scope="module")
def warcfile(warc_dir: Path) -> bytes:
    """The bytes of warcfile.warc.gz."""
    return (warc_dir / "warcfile.warc.gz").read_bytes()


@pytest.fixture(scope="module")
def warcfile_responses(warc_dir: Path) -> dict[int, WarcResponse]:
    """The responses of the intact warcfile.warc.gz by offset."""
    return {r.offset: r for r in read_all(warc_dir / "warcfile.warc.gz")[0]}


def test_gzip_member_cut_in_a_body_is_a_problem_not_a_short_body(
        warcfile: bytes, warcfile_responses: dict[int, WarcResponse], tmp_path: Path) -> None:
    last = WARCFILE_RESPONSE_OFFSETS[:-1]
    for cut, before in ((940 + 4000, []), (12685 + 9000, [940]), (len(warcfile) - 1500, last)):
        path = tmp_path / f"cut{cut}.warc.gz"
        path.write_bytes(warcfile[:cut])
        responses, problems, _ = read_all(path)
        assert [r.offset for r in responses] == before
        assert all(r == warcfile_responses[r.offset] for r in responses)
        cut_member = max(o for o in WARCFILE_RESPONSE_OFFSETS if o < cut)
        assert kinds(problems) == [(cut_member, "truncated")]


@pytest.mark.parametrize("into_member", [3, 10, 200])
def test_file_cut_in_a_gzip_or_warc_header(warcfile: bytes, tmp_path: Path, into_member: int) -> None:
    # 3 and 10 bytes: inside the gzip header (fastwarc yields nothing for that member);
    # 200 bytes: inside the WARC header (fastwarc yields a record without Content-Length).
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(warcfile[:12685 + into_member])
    responses, problems, _ = read_all(path)
    assert [r.offset for r in responses] == [940]
    assert kinds(problems) == [(12685, "truncated")]


def test_file_cut_between_members_is_a_shorter_good_file(warcfile: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(warcfile[:31493])  # ends after the second response's member
    responses, problems, _ = read_all(path)
    assert [r.offset for r in responses] == [940, 12685]
    assert problems == []


def test_missing_gzip_trailer_is_reported_at_the_end(warcfile: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(warcfile[:-4])
    responses, problems, _ = read_all(path)
    assert len(responses) == 16
    assert kinds(problems) == [(len(warcfile) - 4, "truncated")]


def test_every_cut_of_a_small_file(warc_dir: Path) -> None:
    data = (warc_dir / EDGE / "example.warc.gz").read_bytes()
    full, _, _ = read_all(io.BytesIO(data))
    clean_cuts = {offset for offset, _ in gzip_members(data)}  # a cut at a member start loses nothing
    for cut in range(1, len(data)):
        responses, problems, _ = read_all(io.BytesIO(data[:cut]))
        assert all(r in full for r in responses), cut  # never a partial response
        if cut not in clean_cuts:
            assert problems, cut
        missing = [r for r in full if r.offset < cut and r not in responses]
        assert not missing or problems, cut


def test_uncompressed_file_cut_in_a_body(warcfile: bytes, tmp_path: Path) -> None:
    plain = gzip.decompress(warcfile)
    start = plain.index(b"WARC/1.0\r\nWARC-Type: response")
    path = tmp_path / "cut.warc"
    path.write_bytes(plain[:start + 20_000])
    responses, problems, _ = read_all(path)
    assert responses == []
    assert kinds(problems) == [(start, "truncated")]


def test_corrupt_member_is_reported_and_the_rest_is_read(
        warcfile: bytes, warcfile_responses: dict[int, WarcResponse], tmp_path: Path) -> None:
    damaged = bytearray(warcfile)
    damaged[5000] ^= 0xFF  # inside the deflate data of the first response's member
    path = tmp_path / "flip.warc.gz"
    path.write_bytes(bytes(damaged))
    responses, problems, _ = read_all(path)
    assert kinds(problems) == [(940, "read_error")]
    assert "resumes at offset 11845" in problems[0].message
    assert [r.offset for r in responses] == WARCFILE_RESPONSE_OFFSETS[1:]
    assert all(r == warcfile_responses[r.offset] for r in responses)


def test_member_that_inflates_to_wrong_bytes_is_not_passed_on(
        warcfile: bytes, warcfile_responses: dict[int, WarcResponse], tmp_path: Path) -> None:
    damaged = bytearray(warcfile)
    assert damaged[119096] == 4
    damaged[119096] = 203  # in the member at 110823: it still inflates, to wrong bytes
    bare = {}
    with pytest.raises(OSError):
        for record in ArchiveIterator(io.BytesIO(bytes(damaged)), record_types=WarcRecordType.response):
            bare[record.stream_pos] = record.reader.read()
    # fastwarc hands out the body before the member's CRC is reached: right length, wrong bytes.
    assert len(bare[110823]) == len(warcfile_responses[110823].body)
    assert bare[110823] != warcfile_responses[110823].body
    path = tmp_path / "inflates-wrong.warc.gz"
    path.write_bytes(bytes(damaged))
    responses, problems, _ = read_all(path)
    assert [p.offset for p in problems] == [110823]
    assert problems[0].kind in ("malformed_record", "read_error")
    assert [r.offset for r in responses] == [o for o in WARCFILE_RESPONSE_OFFSETS if o != 110823]
    assert all(r == warcfile_responses[r.offset] for r in responses)


def test_junk_between_and_as_members_is_skipped(warcfile: bytes, warcfile_responses: dict[int, WarcResponse],
                                                tmp_path: Path) -> None:
    junk = b"this is not gzip\r\n" * 3
    for name, inserted in (("bytes", junk), ("member", gzip.compress(junk))):
        path = tmp_path / f"junk-{name}.warc.gz"
        path.write_bytes(warcfile[:11845] + inserted + warcfile[11845:])
        responses, problems, _ = read_all(path)
        assert kinds(problems) == [(11845, "malformed_record")], name
        assert f"resumes at offset {11845 + len(inserted)}" in problems[0].message
        shift = len(inserted)
        assert [r.offset for r in responses] == [o if o < 11845 else o + shift for o in WARCFILE_RESPONSE_OFFSETS]
        assert [dataclasses.replace(r, offset=0) for r in responses] == [
            dataclasses.replace(r, offset=0) for r in warcfile_responses.values()]


def test_junk_in_an_uncompressed_file_is_skipped(warcfile: bytes, tmp_path: Path) -> None:
    plain = gzip.decompress(warcfile)
    at = plain.index(b"WARC/1.0", 10_000)
    path = tmp_path / "junk.warc"
    path.write_bytes(plain[:at] + b"JUNK JUNK\r\n" + plain[at:])
    responses, problems, _ = read_all(path)
    assert kinds(problems) == [(at, "malformed_record")]
    assert len(responses) == 16


def test_records_sharing_gzip_members(warcfile: bytes, tmp_path: Path) -> None:
    records = [raw for _, raw in gzip_members(warcfile)]
    types = [warc_fields(r)["warc-type"] for r in records[:12]]
    assert types[2] == types[5] == types[8] == types[11] == "response"
    # The first group exercises fastwarc's wrong stream_pos for later records of a first member.
    data, starts = rebuild(records, [[0, 1, 2], [3, 4], [5, 6], [7, 8, 9, 10, 11]])
    path = tmp_path / "shared.warc.gz"
    path.write_bytes(data)
    responses, problems, counts = read_all(path)
    assert problems == []
    assert [r.offset for r in responses] == [starts[0], starts[2], starts[3], starts[3]]
    assert counts.shared_member_records == 2 + 1 + 1 + 4
    ids = [warc_fields(records[i])["warc-record-id"] for i in (2, 5, 8, 11)]
    assert [r.record_id for r in responses] == ids


def test_body_too_large(warc_dir: Path) -> None:
    responses, problems, _ = read_all(warc_dir / "warcfile.warc.gz", max_body_bytes=20_000)
    big = {940, 12685, 48321, 61090, 75624, 87298, 99077, 110823}
    assert kinds(problems) == [(o, "body_too_large") for o in WARCFILE_RESPONSE_OFFSETS if o in big]
    assert [r.offset for r in responses] == [o for o in WARCFILE_RESPONSE_OFFSETS if o not in big]
    assert all(len(r.body) <= 20_000 for r in responses)


def test_digest_verification_is_opt_in(warcfile: bytes, tmp_path: Path) -> None:
    assert read_all(io.BytesIO(warcfile), verify_digests=True)[1] == []
    plain = bytearray(gzip.decompress(warcfile))
    at = plain.index(b"<html", plain.index(b"WARC-Target-URI: http://01spb.ru/company/"))
    plain[at + 1] = ord("H")  # same length, different payload
    path = tmp_path / "tampered.warc"
    path.write_bytes(bytes(plain))
    assert read_all(path)[1] == []  # without digests the change cannot be seen
    responses, problems, _ = read_all(path, verify_digests=True)
    assert [p.kind for p in problems] == ["digest_mismatch"]
    assert len(responses) == 15


# -- sources -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["warcfile.warc.gz", "clipped.warc.gz", f"{EDGE}/example-iana.org-chunked.warc",
                                  f"{EDGE}/example-bad-non-chunked.warc.gz", f"{EDGE}/example.arc.gz"])
def test_file_objects_give_the_same_result_as_paths(warc_dir: Path, name: str) -> None:
    path = warc_dir / name
    expected = list(WarcResponseReader(path))
    with open(path, "rb") as f:
        assert list(WarcResponseReader(f)) == expected
        assert not f.closed
    with fsspec.open(f"file://{path}", "rb") as f:
        assert list(WarcResponseReader(f)) == expected
    assert list(WarcResponseReader(io.BytesIO(path.read_bytes()))) == expected
    assert list(WarcResponseReader(str(path))) == expected
    assert list(iter_warc_responses(path)) == expected


def test_file_object_read_from_its_position(warcfile: bytes) -> None:
    prefix = b"\x00" * 100
    stream = io.BytesIO(prefix + warcfile)
    stream.seek(len(prefix))
    responses, problems, _ = read_all(stream)
    assert problems == []
    assert [r.offset for r in responses] == [o + len(prefix) for o in WARCFILE_RESPONSE_OFFSETS]


def test_one_way_stream(warc_dir: Path, warcfile: bytes) -> None:
    expected = list(WarcResponseReader(io.BytesIO(warcfile)))
    assert list(WarcResponseReader(OneWayStream(warcfile))) == expected
    _, problems, _ = read_all(OneWayStream((warc_dir / "clipped.warc.gz").read_bytes()))
    assert kinds(problems) == [(0, "truncated")]
    _, problems, _ = read_all(OneWayStream((warc_dir / EDGE / "example.arc.gz").read_bytes()))
    assert [p.kind for p in problems] == ["not_a_warc"]


def test_errors_of_the_source_propagate(warcfile: bytes) -> None:
    class FailingStream(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() > 40_000:
                raise ConnectionResetError("storage went away")
            return super().read(n)

    with pytest.raises(ConnectionResetError):
        list(WarcResponseReader(FailingStream(warcfile)))


def test_reader_counts_and_single_use(warc_dir: Path) -> None:
    reader = WarcResponseReader(warc_dir / "warcfile.warc.gz")
    items: Iterator[WarcResponse | WarcProblem] = iter(reader)
    first = next(items)
    assert isinstance(first, WarcResponse)
    assert reader.counts.responses == 1  # live while iterating
    assert sum(1 for _ in items) == 15
    assert reader.counts.responses == 16
    with pytest.raises(RuntimeError):
        iter(reader)
    with pytest.raises(ValueError):
        WarcResponseReader(warc_dir / "warcfile.warc.gz", max_body_bytes=-1)
