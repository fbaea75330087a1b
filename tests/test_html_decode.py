"""text.decode: charset from BOM, HTTP header, <meta>, detection; bad bytes replaced and counted."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from stages.html_decode import HtmlDecoder
from stages.warc_reader import WarcReader
from tests.conftest import REPO


def _decode(rows: list[tuple[bytes, str, str | None]]):
    batch = pa.table({
        "id": [str(i) for i in range(len(rows))],
        "body": [r[0] for r in rows],
        "content_type": [r[1] for r in rows],
        "http_charset": pa.array([r[2] for r in rows], pa.string()),
    })
    return HtmlDecoder().run_batch(batch)


def test_charset_sources_in_order() -> None:
    latin = "<html><body><p>Café à la crème</p></body></html>".encode("latin-1")
    meta_only = '<html><head><meta charset="iso-8859-1"></head><body>Größe</body></html>'.encode("latin-1")
    http_equiv = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
                  '</head><body>Привет, мир</body></html>').encode("cp1251")
    bom = b"\xef\xbb\xbf" + "<html><body>naïve</body></html>".encode("utf-8")
    undeclared = "<html><body><p>Ünïcödé text without any declaration, long enough to detect.</p></body></html>"
    result = _decode([
        (latin, "text/html", "iso-8859-1"),
        (meta_only, "text/html", None),
        (http_equiv, "text/html", None),
        (bom, "text/html", "iso-8859-1"),   # the BOM wins over the header
        (undeclared.encode("utf-8"), "text/html", None),
        (latin, "text/html", "x-no-such-charset"),  # unknown label: next source
    ])
    kept = result.kept
    assert kept.column("charset_source").to_pylist() == ["header", "meta", "meta", "bom", "detected", "detected"]
    html = kept.column("html").to_pylist()
    assert "Café à la crème" in html[0]
    assert "Größe" in html[1]
    assert "Привет, мир" in html[2]
    assert "naïve" in html[3] and not html[3].startswith("\ufeff")
    assert "Ünïcödé" in html[4]
    assert kept.column("decode_replaced").to_pylist() == [0] * 6


def test_bad_bytes_are_replaced_and_counted() -> None:
    result = _decode([(b"<html><body>caf\xe9 and \xff\xfe ok</body></html>", "text/html", "utf-8")])
    assert result.kept.column("html")[0].as_py() == "<html><body>caf\ufffd and \ufffd\ufffd ok</body></html>"
    assert result.kept.column("decode_replaced").to_pylist() == [3]


def test_non_html_and_empty_bodies_dropped_with_reasons() -> None:
    result = _decode([
        (b"\x89PNG\r\n\x1a\n....", "image/png", None),
        (b"%PDF-1.4 ...", "application/pdf", None),
        (b"", "text/html", None),
        (b"<!DOCTYPE html><html><body>untyped but HTML</body></html>", "", None),
        (b"\x00\x01binary", "", None),
    ])
    assert result.kept.column("html").to_pylist() == ["<!DOCTYPE html><html><body>untyped but HTML</body></html>"]
    assert dict(result.stats.drops) == {"not_html": 3, "empty_body": 1}


def test_sample_warc_decodes_cleanly() -> None:
    tables = list(WarcReader().read(str(REPO / "sample_data" / "sample.warc.gz")))
    batch = pa.concat_tables(tables).drop_columns(["drop_reason"])
    result = HtmlDecoder().run_batch(batch)
    assert dict(result.stats.drops) == {"not_html": 2}
    kept = result.kept
    assert pc.sum(kept.column("decode_replaced")).as_py() == 0
    sources = dict(zip(kept.column("url").to_pylist(), kept.column("charset_source").to_pylist()))
    assert sources["https://www.heimatblatt.example.de/natur/streuobstwiesen-im-herbst"] == "meta"
    latin = kept.filter(pc.equal(kept.column("url"), "https://saint-aubin.example.org/fr/actualites/marche-du-samedi"))
    assert latin.column("charset").to_pylist() == ["cp1252"]
    assert "é" in latin.column("html")[0].as_py()
