"""A small, deterministic WARC/1.0 writer (stdlib only) for building test and benchmark data.

Each record is written as its own gzip member, as Common Crawl does, so a record's
byte offset can be used to seek straight to it. Nothing depends on the clock or on
randomness: record ids come from uuid5 and gzip members carry ``mtime=0``, so the same
calls always produce the same bytes (for a given zlib build).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import uuid
from http import HTTPStatus
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

__all__ = ["WarcWriter", "payload_digest", "record_id"]

# Fixed namespace for uuid5 record ids; changing it changes every record id.
_RECORD_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://curator.example/warc-writer")
_CRLF = b"\r\n"
_DEFAULT_DATE = "2024-01-01T00:00:00Z"
_DEFAULT_USER_AGENT = "curator-sample-builder/0.1 (+https://curator.example/bot)"


def payload_digest(data: bytes) -> str:
    """Return the WARC digest string ``sha1:<BASE32>`` of ``data``."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def record_id(record_type: str, url: str, date: str, counter: int) -> str:
    """Return the deterministic ``<urn:uuid:...>`` id for one record."""
    name = f"{record_type}\n{url}\n{date}\n{counter}"
    return f"<urn:uuid:{uuid.uuid5(_RECORD_ID_NAMESPACE, name)}>"


def _header_block(lines: list[tuple[str, str]]) -> bytes:
    """Encode ``Name: value`` lines followed by the blank line that ends a header block."""
    out = bytearray()
    for name, value in lines:
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        out += f"{name}: {value}".encode("utf-8") + _CRLF
    out += _CRLF
    return bytes(out)


class WarcWriter:
    """Write WARC/1.0 records, one gzip member per record, to a path or a binary file object.

    A path is opened (and truncated) by the writer and closed on exit; a file object is
    written to but left open. Use as a context manager::

        with WarcWriter("out.warc.gz") as w:
            w.write_warcinfo({"software": "me"})
            offset = w.write_response("https://example.com/", b"<html>...</html>")
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        compresslevel: int = 9,
        filename: str | None = None,
    ) -> None:
        """Open ``target``; ``filename`` is recorded as WARC-Filename in warcinfo records."""
        if isinstance(target, (str, os.PathLike)):
            self._fh: BinaryIO = open(target, "wb")
            self._owns_fh = True
            self._filename = filename or os.path.basename(os.fspath(target))
        else:
            self._fh = target
            self._owns_fh = False
            self._filename = filename
        try:
            self._offset = self._fh.tell()
        except (OSError, AttributeError):
            self._offset = 0  # non-seekable stream: offsets are relative to where we started
        self._compresslevel = compresslevel
        self._counter = 0
        self._warcinfo_id: str | None = None
        self.last_record_id: str | None = None
        """Record id of the most recently written record (for WARC-Concurrent-To links)."""

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> WarcWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Flush, and close the file if the writer opened it."""
        if self._fh.closed:
            return
        self._fh.flush()
        if self._owns_fh:
            self._fh.close()

    @property
    def offset(self) -> int:
        """Byte offset at which the next record will start."""
        return self._offset

    # -- record writers ----------------------------------------------------------------

    def write_warcinfo(self, fields: dict[str, str], *, date: str = _DEFAULT_DATE) -> int:
        """Write a warcinfo record whose block is ``fields`` as warc-fields; return its offset.

        Later records carry its id in WARC-Warcinfo-ID.
        """
        block = _header_block(list(fields.items()))[:-2]  # warc-fields: no trailing blank line
        extra = [("WARC-Filename", self._filename)] if self._filename else []
        offset = self._write_record(
            "warcinfo", "", date, block, "application/warc-fields", extra_headers=extra
        )
        self._warcinfo_id = self.last_record_id
        return offset

    def write_request(
        self,
        url: str,
        *,
        date: str = _DEFAULT_DATE,
        headers: dict[str, str] | None = None,
        concurrent_to: str | None = None,
    ) -> int:
        """Write an HTTP GET request record for ``url``; return its offset."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            ("Host", parts.netloc),
            ("User-Agent", _DEFAULT_USER_AGENT),
            ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("Accept-Encoding", "identity"),
        ]
        lines = _merge(lines, headers)
        block = f"GET {target} HTTP/1.1".encode("ascii") + _CRLF + _header_block(lines)
        return self._write_record(
            "request",
            url,
            date,
            block,
            "application/http; msgtype=request",
            concurrent_to=concurrent_to,
        )

    def write_response(
        self,
        url: str,
        body: bytes,
        *,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        date: str = _DEFAULT_DATE,
        extra_http_headers: dict[str, str] | None = None,
        concurrent_to: str | None = None,
    ) -> int:
        """Write an HTTP response record for ``url`` with payload ``body``; return its offset."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = _merge(
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
            extra_http_headers,
        )
        block = f"HTTP/1.1 {status} {reason}".encode("ascii") + _CRLF + _header_block(lines) + body
        return self._write_record(
            "response",
            url,
            date,
            block,
            "application/http; msgtype=response",
            payload=body,
            concurrent_to=concurrent_to,
        )

    def write_metadata(
        self,
        url: str,
        text: str,
        *,
        date: str = _DEFAULT_DATE,
        concurrent_to: str | None = None,
    ) -> int:
        """Write a metadata record (``application/warc-fields``) with block ``text``; return its offset."""
        return self._write_record(
            "metadata",
            url,
            date,
            text.encode("utf-8"),
            "application/warc-fields",
            concurrent_to=concurrent_to,
        )

    # -- internals ---------------------------------------------------------------------

    def _write_record(
        self,
        record_type: str,
        url: str,
        date: str,
        block: bytes,
        content_type: str,
        *,
        payload: bytes | None = None,
        concurrent_to: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> int:
        rid = record_id(record_type, url, date, self._counter)
        self._counter += 1
        lines: list[tuple[str, str]] = [("WARC-Type", record_type), ("WARC-Date", date)]
        lines.append(("WARC-Record-ID", rid))
        if url:
            lines.append(("WARC-Target-URI", url))
        if self._warcinfo_id and record_type != "warcinfo":
            lines.append(("WARC-Warcinfo-ID", self._warcinfo_id))
        if concurrent_to:
            lines.append(("WARC-Concurrent-To", concurrent_to))
        lines += extra_headers or []
        lines.append(("Content-Type", content_type))
        lines.append(("Content-Length", str(len(block))))
        lines.append(("WARC-Block-Digest", payload_digest(block)))
        if payload is not None:
            lines.append(("WARC-Payload-Digest", payload_digest(payload)))
        raw = b"WARC/1.0" + _CRLF + _header_block(lines) + block + _CRLF + _CRLF
        member = gzip.compress(raw, compresslevel=self._compresslevel, mtime=0)
        offset = self._offset
        self._fh.write(member)
        self._offset += len(member)
        self.last_record_id = rid
        return offset


def _merge(
    base: list[tuple[str, str]], extra: dict[str, str] | None
) -> list[tuple[str, str]]:
    """Return ``base`` with ``extra`` applied: same-named headers (case-insensitive) replaced, others appended."""
    if not extra:
        return base
    lowered = {k.lower(): (k, v) for k, v in extra.items()}
    merged = [lowered.pop(name.lower(), (name, value)) for name, value in base]
    return merged + list(lowered.values())
