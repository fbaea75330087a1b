"""HTML decoding: raw HTTP bodies to text, with the charset chosen the way browsers choose it.

Order: a byte-order mark, then the HTTP header's charset, then a ``<meta>`` declaration in the
first 4 KB, then detection (resiliparse's detector). A label Python does not know falls through to
the next source. Bytes that do not decode are replaced with U+FFFD and counted in
``decode_replaced``, so a row with mojibake can be found and filtered. Bodies that are not HTML
(by Content-Type, or by sniffing when it is missing) are dropped with reason ``not_html``; empty
bodies with ``empty_body``.
"""

from __future__ import annotations

import codecs
import re

import pyarrow as pa
from pydantic import Field
from resiliparse.parse.encoding import detect_encoding

from curator.stage import DROP_REASON, MapStage

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_HTML_SNIFF = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<!--|<p\b|<div\b|<meta\b|<title\b)", re.I)
# Labels that browsers map to a superset encoding (WHATWG Encoding Standard).
_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
            "ascii": "cp1252", "gb2312": "gb18030", "gbk": "gb18030", "x-sjis": "shift_jis",
            "tis-620": "cp874", "iso-8859-9": "cp1254"}


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label, or None if Python does not know it."""
    if not label:
        return None
    name = _ALIASES.get(label.strip().lower(), label.strip().lower())
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def choose_charset(body: bytes, http_charset: str | None) -> tuple[str, str]:
    """The codec to decode ``body`` with, and where it came from (bom, header, meta, detected)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, "bom"
    codec = _codec(http_charset)
    if codec:
        return codec, "header"
    match = _META_CHARSET.search(body[:4096])
    if match:
        codec = _codec(match.group(1).decode("ascii", "ignore"))
        if codec:
            return codec, "meta"
    return _codec(detect_encoding(body)) or "utf-8", "detected"


def looks_like_html(body: bytes) -> bool:
    """Whether a body without a usable Content-Type starts like an HTML document."""
    return bool(_HTML_SNIFF.match(body[:512].lstrip(b"\xef\xbb\xbf")))


def is_html(body: bytes, content_type: str | None, sniff_untyped: bool = True) -> bool:
    """Whether a response is HTML: by its Content-Type, or by sniffing when it has none."""
    ctype = (content_type or "").lower()
    return ctype in HTML_TYPES or (ctype == "" and sniff_untyped and looks_like_html(body))


class HtmlDecoder(MapStage):
    """Decode HTTP bodies to HTML text: BOM, HTTP charset, <meta>, then detection; bad bytes replaced."""

    name = "text.decode"
    requires = ("body", "content_type")
    adds = ("html", "charset", "charset_source", "decode_replaced")

    keep_body: bool = Field(False, description="Keep the raw body column after decoding.")
    sniff_untyped: bool = Field(True, description="Treat bodies without a Content-Type as HTML if they look like it.")

    def output_columns(self, input_columns: list[str]) -> list[str]:
        cols = [c for c in input_columns if self.keep_body or c != "body"]
        return cols + [c for c in self.adds if c not in cols]

    def process(self, batch: pa.Table) -> pa.Table:
        bodies = batch.column("body").to_pylist()
        types = batch.column("content_type").to_pylist()
        charsets = (batch.column("http_charset").to_pylist() if "http_charset" in batch.column_names
                    else [None] * batch.num_rows)
        html: list[str | None] = []
        used: list[str | None] = []
        sources: list[str | None] = []
        replaced: list[int] = []
        reasons: list[str | None] = []
        for body, ctype, header_charset in zip(bodies, types, charsets):
            body = body or b""
            reason = None
            if not body:
                reason = "empty_body"
            elif not is_html(body, ctype, self.sniff_untyped):
                reason = "not_html"
            if reason:
                html.append(None)
                used.append(None)
                sources.append(None)
                replaced.append(0)
                reasons.append(reason)
                continue
            codec, source = choose_charset(body, header_charset)
            text = body.decode(codec, errors="replace")
            html.append(text)
            used.append(codec)
            sources.append(source)
            replaced.append(max(0, text.count("\ufffd") - _fffd_in_source(body)))
            reasons.append(None)
        out = batch if self.keep_body else batch.drop_columns(["body"])
        out = out.append_column("html", pa.array(html, pa.string()))
        out = out.append_column("charset", pa.array(used, pa.string()))
        out = out.append_column("charset_source", pa.array(sources, pa.string()))
        out = out.append_column("decode_replaced", pa.array(replaced, pa.int32()))
        return out.append_column(DROP_REASON, pa.array(reasons, pa.string()))


def _fffd_in_source(body: bytes) -> int:
    """U+FFFD characters the page itself contains (UTF-8 encoded), not produced by decoding."""
    return body.count(b"\xef\xbf\xbd")
