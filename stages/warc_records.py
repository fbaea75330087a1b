"""Record-level core of the WARC input stage: HTTP responses out of one WARC file, with fastwarc.

This module depends on nothing else in the project. ``WarcResponseReader(source)`` (or
``iter_warc_responses(source)``) yields one :class:`WarcResponse` per WARC ``response`` record
that carries an HTTP message, and a :class:`WarcProblem` for everything that could not be read,
so a file never loses data silently. Other record types are skipped and counted in
``reader.counts`` (:class:`WarcReadCounts`).

How fastwarc 2.0.1 behaves, and what is done about it:

* A truncated gzip stream ends the iteration with no error; the last record's body is simply
  short, or a record whose header was cut is yielded with ``content_length == 0``, or a record
  whose member was cut before any of its bytes decompress is not yielded at all. Hence: every
  response body is checked against its WARC length, and when fastwarc stops, the rest of the file
  from the last record it yielded is walked again here (``_TailWalker``) to check that it holds
  complete gzip members and complete WARC records up to the end of the file.
* A corrupt gzip member, bytes between members, or a member that is not WARC make fastwarc raise
  ``OSError``. The walk then finds the first bad offset, a problem is reported there, and reading
  goes on at the next gzip member (or, uncompressed, the next ``WARC/1.x`` line) that starts a
  WARC record. A file that does not start as WARC at all gives one ``not_a_warc`` problem.
* ``stream_pos`` is the start of the gzip member holding the record, except that records after
  the first one in the first member of a stream get the compressed read position instead. The
  first such position of a run is checked against the file and corrected. Several records in one
  member share that member's offset (``counts.shared_member_records``).
* fastwarc checks no digest by default, and ``ArchiveIterator(verify_digests=True)`` drops
  records without a digest or with a wrong one silently, so it is not used; ``verify_digests=True``
  here checks payload digests in Python and reports mismatches. fastwarc's HTTP parser never fails on
  garbage: a status line it cannot parse gives ``status_code None``, and LF-only headers end up
  in the status line. Its own decoding (``auto_decode``) returns a gzip body cut short without
  an error, so decoding is done here.
* fastwarc needs ``tell()`` on a Python stream and panics (``PanicException``, not an
  ``Exception``) without it, so a file object (and a restart inside a local file) goes through a
  small reader that has one and remembers what the source raised. A local file read from its
  start is opened by fastwarc itself, which is ~2% faster.
* fastwarc's header access is dear (a header by name ~1.5 us, the HTTP header list ~3 us), and
  a frozen dataclass's ``__init__`` takes ~1.8 us: at ~10k responses/s per core these matter,
  see ``_response`` and ``_response_constructor``.

``WarcResponse.body`` is the payload with HTTP chunked transfer encoding and any Content-Encoding
(gzip, deflate, br) undone, so that it is the document itself; Common Crawl WARCs store decoded
payloads already (their headers say ``X-Crawler-Content-Encoding``), other crawlers do not. A
payload that is plainly text (ASCII, starting like HTML, XML or JSON) is taken as it is, whatever
its headers claim.

The recovery checks need random access: a non-seekable stream, or a zstd/lz4-compressed file,
still gets every per-record check, but an error ends the file and truncation of a record fastwarc
does not yield cannot be seen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, fields
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, HeaderMap, WarcHeader, WarcRecord

__all__ = [
    "WarcProblem",
    "WarcReadCounts",
    "WarcResponse",
    "WarcResponseReader",
    "iter_warc_responses",
]

_H_LENGTH = WarcHeader.CONTENT_LENGTH
_H_URI = WarcHeader.WARC_TARGET_URI
_H_DATE = WarcHeader.WARC_DATE
_H_TRUNCATED = WarcHeader.WARC_TRUNCATED
_H_PAYLOAD_DIGEST = WarcHeader.WARC_PAYLOAD_DIGEST
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_MAX_WARC_HEADER = 64 << 10
_MAX_HTTP_HEADER = 256 << 10
_SCAN_CHUNK = 1 << 20
_MAX_HELD_BYTES = 256 << 20
# HTTP statuses whose responses have no body whatever Content-Length says.
_NO_BODY_STATUSES = frozenset({204, 304})
_TEXT_STARTS = (b"<", b"{", b"[")
# fastwarc's messages for bytes it cannot frame as WARC (the rest are decompression errors).
_FRAMING_ERRORS = ("invalid warc header", "maximum header length")


@dataclass(frozen=True, slots=True)
class WarcResponse:
    """One HTTP response read from a WARC ``response`` record."""

    offset: int  # start of the record in the file as stored; for .gz the start of its gzip member
    record_id: str  # WARC-Record-ID ('' if absent)
    url: str  # WARC-Target-URI
    date: str  # WARC-Date as given (ISO 8601), '' if absent
    content_type: str  # HTTP Content-Type media type, lower-cased, no parameters ('' if absent)
    charset: str | None  # charset parameter of the HTTP Content-Type, lower-cased, None if absent
    http_status: int | None
    body: bytes  # HTTP payload: transfer- and content-encodings decoded


@dataclass(frozen=True, slots=True)
class WarcProblem:
    """Something in the file that could not be read as a response, and where it is."""

    offset: int  # where in the file it happened (best known; record or gzip member start)
    kind: str  # short reason code, see WarcResponseReader
    message: str


@dataclass(slots=True)
class WarcReadCounts:
    """Tallies of one reader pass, updated while iterating."""

    records: dict[str, int] = field(default_factory=dict)  # WARC records seen, by WARC-Type
    responses: int = 0  # WarcResponse values yielded
    non_http_responses: int = 0  # response records without an HTTP message (skipped)
    problems: dict[str, int] = field(default_factory=dict)  # WarcProblem values yielded, by kind
    warc_truncated: int = 0  # yielded responses the crawler cut short itself (WARC-Truncated)
    shared_member_records: int = 0  # records in a gzip member that starts an earlier record

    @property
    def problem_count(self) -> int:
        """Total problems yielded."""
        return sum(self.problems.values())


class WarcResponseReader:
    """Iterate the HTTP responses of one WARC file (.warc, .warc.gz; zstd/lz4 with fewer checks).

    ``source`` is a local path (str or PathLike; no URLs) or a binary file object (e.g.
    ``fsspec.open(url, "rb")``); a file object is read from its current position, seeked for the
    checks, and not closed. Offsets are file offsets either way. The reader is single-use;
    ``counts`` is live while iterating and final afterwards.

    Problem kinds: ``truncated`` (the file ends inside a record or gzip member), ``malformed_record``
    (bytes that are not a WARC record, a WARC header without a valid Content-Length, a record
    fastwarc rejects), ``read_error`` (corrupt compressed data), ``not_a_warc`` (the file does
    not start with a WARC record, or is empty), ``body_too_large``, ``bad_http`` (HTTP header or
    status line unreadable, bad chunked or content encoding, or a payload shorter than its HTTP
    Content-Length and not ending as an HTML page does), ``digest_mismatch`` (``verify_digests``). An
    exception raised by the source itself (an I/O error, a network timeout) is not a problem of
    the file: it propagates.

    Opt-in checks, each at a cost: ``check_http_length=True`` reads every response's HTTP headers
    and compares the payload with its Content-Length (~3% of the read time);
    ``verify_digests=True`` also verifies WARC-Payload-Digest.
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, *, max_body_bytes: int = 64 << 20,
                 check_http_length: bool = False, verify_digests: bool = False) -> None:
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must be >= 0")
        self._source = source
        self._max_body = max_body_bytes
        self._by_headers = check_http_length or verify_digests
        self._verify_digests = verify_digests
        self._started = False
        self.counts = WarcReadCounts()

    def __iter__(self) -> Iterator[WarcResponse | WarcProblem]:
        """Responses and problems in file order (a gzip member's items once it is read whole)."""
        if self._started:
            raise RuntimeError("a WarcResponseReader can be iterated only once")
        self._started = True
        return self._read()

    def _read(self) -> Iterator[WarcResponse | WarcProblem]:
        inp = _Input(self._source)
        try:
            yield from self._read_input(inp)
        finally:
            inp.close()

    def _counted(self, problem: WarcProblem, state: _FileState) -> WarcProblem:
        """Count a problem that is about to be yielded."""
        problems = self.counts.problems
        problems[problem.kind] = problems.get(problem.kind, 0) + 1
        if problem.kind == "truncated":
            state.truncated_at.add(problem.offset)
        return problem

    def _release(self, items: list[WarcResponse | WarcProblem], state: _FileState
                 ) -> Iterator[WarcResponse | WarcProblem]:
        """Yield held-back items, counting them."""
        counts = self.counts
        for item in items:
            if type(item) is WarcResponse:
                counts.responses += 1
                yield item
            else:
                yield self._counted(item, state)  # type: ignore[arg-type]
        items.clear()

    def _read_input(self, inp: _Input) -> Iterator[WarcResponse | WarcProblem]:
        """Run fastwarc over the file, check where it stopped, and go on after damage."""
        state = _FileState()
        if inp.size == 0:
            yield self._counted(WarcProblem(inp.start, "not_a_warc", "the file is empty"), state)
            return
        fmt = inp.detect_format()
        recoverable = inp.seekable and fmt in ("gzip", "plain")
        start = inp.start
        while True:
            run = _Run(start, fmt)
            error = yield from self._iterate(inp, run, state)
            stopped_at = run.last_offset if run.last_offset is not None else start
            if not recoverable:
                yield from self._release(run.held, state)
                if error is not None:
                    kind = _error_kind(error)
                    if not state.any_record and kind == "malformed_record":
                        kind = "not_a_warc"
                    yield self._counted(WarcProblem(stopped_at, kind, f"{_error_text(error)}; reading stopped here"),
                                        state)
                return
            trouble = _TailWalker(inp, fmt).check(run)
            if trouble is None:
                yield from self._release(run.held, state)
                if error is not None:
                    # The walk found nothing wrong, so fastwarc stopped at something it alone rejects.
                    yield self._counted(WarcProblem(stopped_at, _error_kind(error),
                                                    f"{_error_text(error)}; reading stopped here"), state)
                return
            offset, kind, message = trouble
            if kind == "truncated":
                # What was read before the end of the file is whole (only its CRC cannot be checked);
                # a record fastwarc took for one with a bad header was cut by the end of the file.
                run.held[:] = [WarcProblem(offset, kind, f"{message}: {item.message}")
                               if type(item) is WarcProblem and item.offset == offset
                               and item.kind == "malformed_record" else item for item in run.held]
                yield from self._release(run.held, state)
                if offset not in state.truncated_at:
                    yield self._counted(WarcProblem(offset, kind, message), state)
                return
            if kind == "unread":
                if error is not None:
                    kind, message = _error_kind(error), f"{_error_text(error)} in this record"
                else:
                    kind, message = "malformed_record", "fastwarc stopped before this record"
            elif error is not None and kind == "malformed_record":
                message = f"{message} ({_error_text(error)})"
            if offset == run.held_offset and run.held:
                # The member these came from is damaged: their bytes cannot be trusted.
                message += f"; {len(run.held)} record(s) read from this gzip member are dropped"
                run.held.clear()
            yield from self._release(run.held, state)
            if not state.any_record and offset == inp.start and kind == "malformed_record":
                yield self._counted(WarcProblem(offset, "not_a_warc", "the file does not start with a WARC record: "
                                                + message), state)
                return
            resume = _next_record_start(inp, fmt, offset)
            tail = f"; reading resumes at offset {resume}" if resume is not None else "; nothing readable after it"
            yield self._counted(WarcProblem(offset, kind, message + tail), state)
            if resume is None:
                return
            start = resume

    def _iterate(self, inp: _Input, run: _Run, state: _FileState
                 ) -> Generator[WarcResponse | WarcProblem, None, BaseException | None]:
        """Read records with fastwarc from ``run.start``; return the exception that stopped it.

        The items of a gzip member are held back until fastwarc has read the member to its end,
        where it checks the CRC: fastwarc yields a record before that, and a corrupt member can
        decompress into a body of the right length with wrong bytes. What is still held when
        fastwarc stops is left in ``run.held`` for ``_read_input`` to release or drop.
        """
        reader = inp.reader_at(run.start)
        # A local file from its start is opened by fastwarc itself: that reads ~2% faster than
        # through Python, and needs nothing the counting reader gives.
        source: str | _CountingReader = inp.path if inp.path is not None and run.start == 0 else reader
        start = run.start
        first_member_open = run.fmt == "gzip"
        last_offset: int | None = None
        at_last = 0
        held = run.held
        held_bytes = 0
        counts = self.counts
        type_counts = counts.records
        respond = self._response
        try:
            try:
                records = ArchiveIterator(source, parse_http=False, max_header_len=_MAX_WARC_HEADER,
                                          fsspec_args=False)
            except BaseException as exc:  # noqa: BLE001 - fastwarc panics are BaseExceptions
                return _reraise_fatal(exc, reader)
            next_record = records.__next__
            while True:
                try:
                    rec = next_record()
                except StopIteration:
                    return None
                except BaseException as exc:  # noqa: BLE001
                    return _reraise_fatal(exc, reader)
                offset = rec.stream_pos
                if first_member_open and offset != start:
                    # fastwarc reports the compressed read position, not the member start, for the
                    # later records of a stream's first gzip member: check the first new position.
                    if inp.member_starts_record(offset, rec.record_id):
                        first_member_open = False
                    else:
                        offset = start
                if offset == last_offset:
                    at_last += 1
                    counts.shared_member_records += 1
                else:
                    at_last = 1
                    last_offset = offset
                    if held:
                        # _release, inlined: this runs once per record, and a generator per
                        # record costs measurably on the bare-loop benchmark.
                        for item in held:
                            if type(item) is WarcResponse:
                                counts.responses += 1
                                yield item
                            else:
                                yield self._counted(item, state)  # type: ignore[arg-type]
                        held.clear()
                        held_bytes = 0
                rtype = rec.record_type
                name = str(rtype)  # fastwarc's WarcRecordType is not hashable; str() is its name
                type_counts[name] = type_counts.get(name, 0) + 1
                if name != "response":
                    continue
                if not rec.is_http:
                    counts.non_http_responses += 1
                    continue
                try:
                    item = respond(rec, offset)
                except BaseException as exc:  # noqa: BLE001 - an error while reading this record's body
                    run.failed_in_record = True
                    return _reraise_fatal(exc, reader)
                held.append(item)
                if type(item) is WarcResponse:
                    held_bytes += len(item.body)
                    if held_bytes > _MAX_HELD_BYTES:
                        # A huge member of many records (a whole file gzipped as one stream).
                        yield from self._release(held, state)
                        held_bytes = 0
        finally:
            run.last_offset = last_offset
            run.at_last_offset = at_last
            run.held_offset = last_offset
            if last_offset is not None:
                state.any_record = True

    def _response(self, rec: WarcRecord, offset: int) -> WarcResponse | WarcProblem:
        """Turn one HTTP ``response`` record into a WarcResponse, or the problem that prevents it.

        At ~10k responses/s per core every microsecond is 1%, and fastwarc's header access is
        dear: a WARC header by name ~1.5 us (by WarcHeader constant ~0.25 us), the HTTP header list
        ~3 us. So WARC headers go by constant, and the HTTP headers are read only when the
        payload may be encoded or cut short.
        """
        headers = rec.headers
        if not rec.content_length:
            # fastwarc takes a missing or unreadable Content-Length for 0, as in a header cut short;
            # a real HTTP response block is never empty.
            # Where the file ends here, the walk after the run says so and the kind becomes truncated.
            length_field = headers.get(_H_LENGTH)
            return WarcProblem(offset, "malformed_record",
                               f"response record with an empty or unreadable block length "
                               f"(Content-Length {length_field!r}) in record {rec.record_id or '?'}")
        try:
            rec.parse_http(max_header_len=_MAX_HTTP_HEADER)
        except OSError as exc:
            return WarcProblem(offset, "bad_http", f"HTTP header unreadable ({exc}) in {_describe(rec)}")
        size = rec.content_length
        max_body = self._max_body
        if size > max_body:
            return WarcProblem(offset, "body_too_large",
                               f"HTTP payload of {size} bytes > {max_body} in {_describe(rec)}")
        raw = rec.reader.read(size) if size else b""
        if len(raw) < size:
            return WarcProblem(offset, "truncated", f"payload cut at {len(raw)} of {size} bytes (the file ends) "
                                                    f"in {_describe(rec)}")
        http = rec.http_headers
        status = http.status_code
        if status is None or (not size and b"\n" in (http.status_line_bytes or b"")):
            return WarcProblem(offset, "bad_http", f"unreadable HTTP status line {http.status_line!r:.80} "
                                                   f"in {_describe(rec)}")
        head = raw[:64]
        if self._by_headers or not (head.isascii() and head.lstrip()[:1] in _TEXT_STARTS):
            decoded = self._decode(rec, http, raw, status, offset)
            if type(decoded) is WarcProblem:
                return decoded
            body = decoded
        else:
            # ASCII text that starts like HTML, XML or JSON is neither chunked (a chunk starts with
            # its hex size) nor compressed (gzip, zlib, deflate and brotli streams are binary in
            # their first bytes), whatever the headers say; so they are not read: that costs ~5%.
            body = raw
            if not raw[-64:].rstrip().lower().endswith(b"</html>"):
                # Only a page that does not end as one could be cut short behind the WARC's back.
                problem = _short_payload(_http_fields(http)[1], size, status, headers, offset, rec)
                if problem is not None:
                    return problem
        if headers.get(_H_TRUNCATED) is not None:
            self.counts.warc_truncated += 1
        # fastwarc's parse of Content-Type is the cheapest way to it (a third of parsing it here);
        # it keeps the media type's case and the charset's quotes.
        content_type = rec.http_content_type
        if content_type:
            content_type = content_type.lower()
            if " " in content_type:
                content_type = content_type.split()[0]
        charset = rec.http_charset
        if charset is not None and (not charset or charset[0] in "\"'"):
            charset = charset.strip("\"' \t") or None
        return _new_response(offset, rec.record_id or "", headers.get(_H_URI) or "", headers.get(_H_DATE) or "",
                             content_type or "", charset, status, body)

    def _decode(self, rec: WarcRecord, http: HeaderMap, raw: bytes, status: int, offset: int
                ) -> bytes | WarcProblem:
        """The payload with its transfer and content codings undone, or the problem met."""
        headers = rec.headers
        transfer, http_length, encoding = _http_fields(http)
        body = raw
        chunked = transfer is not None and b"chunked" in transfer
        if chunked:
            body = _dechunk(raw)
            if body is None:
                return WarcProblem(offset, "bad_http", f"bad chunked transfer encoding in {_describe(rec)}")
        else:
            problem = _short_payload(http_length, len(raw), status, headers, offset, rec)
            if problem is not None:
                return problem
        if self._verify_digests:
            problem = _check_payload_digest(headers.get(_H_PAYLOAD_DIGEST), raw, body, offset, rec)
            if problem is not None:
                return problem
        if body and (encoding is not None or (chunked and b"gzip" in transfer)):  # type: ignore[operator]
            try:
                if chunked and b"gzip" in transfer:  # type: ignore[operator]
                    body = _decode_content(body, "gzip", self._max_body)  # "Transfer-Encoding: gzip, chunked"
                if encoding is not None:
                    body = _decode_content(body, encoding.decode("latin-1"), self._max_body)
            except _PayloadError as exc:
                return WarcProblem(offset, exc.kind, f"{exc} in {_describe(rec)}")
        return body


def _http_fields(http: HeaderMap) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(Transfer-Encoding lower-cased, Content-Length, Content-Encoding) of HTTP headers, in one pass."""
    transfer = length = encoding = None
    for key, value in http.items_bytes():  # case-insensitive, by length first
        n = len(key)
        if n == 14:
            if key.lower() == b"content-length":
                length = value
        elif n == 16:
            if key.lower() == b"content-encoding":
                encoding = value
        elif n == 17 and key.lower() == b"transfer-encoding":
            transfer = value.lower()
    return transfer, length, encoding


def _short_payload(http_length: bytes | None, size: int, status: int, headers: HeaderMap, offset: int,
                   rec: WarcRecord) -> WarcProblem | None:
    """A bad_http problem if the payload is shorter than the HTTP Content-Length says it is."""
    if (http_length is None or status < 200 or status in _NO_BODY_STATUSES or not http_length.strip().isdigit()
            or int(http_length) <= size or headers.get(_H_TRUNCATED) is not None):
        return None
    return WarcProblem(offset, "bad_http", f"payload has {size} bytes but HTTP Content-Length is "
                                           f"{int(http_length)} in {_describe(rec)}")


def _response_constructor() -> Callable[[int, str, str, str, str, str | None, int | None, bytes], WarcResponse]:
    """A WarcResponse constructor that writes the slots directly.

    The generated ``__init__`` of a frozen dataclass sets each field through ``object.__setattr__``
    (about 1.8 us for eight fields, 1-2% of the time per row); this takes half that.
    """
    names = [f.name for f in fields(WarcResponse)]
    set_offset, set_id, set_url, set_date, set_type, set_charset, set_status, set_body = (
        getattr(WarcResponse, name).__set__ for name in names)
    new = object.__new__

    def make(offset: int, record_id: str, url: str, date: str, content_type: str, charset: str | None,
             http_status: int | None, body: bytes) -> WarcResponse:
        response = new(WarcResponse)
        set_offset(response, offset)
        set_id(response, record_id)
        set_url(response, url)
        set_date(response, date)
        set_type(response, content_type)
        set_charset(response, charset)
        set_status(response, http_status)
        set_body(response, body)
        return response
    return make


_new_response = _response_constructor()


def iter_warc_responses(source: str | os.PathLike[str] | BinaryIO, *, max_body_bytes: int = 64 << 20,
                        check_http_length: bool = False, verify_digests: bool = False
                        ) -> Iterator[WarcResponse | WarcProblem]:
    """Yield the HTTP responses of one WARC file and the problems met; see WarcResponseReader."""
    return iter(WarcResponseReader(source, max_body_bytes=max_body_bytes, check_http_length=check_http_length,
                                   verify_digests=verify_digests))


# -- state ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class _FileState:
    any_record: bool = False  # fastwarc yielded at least one record somewhere in the file
    truncated_at: set[int] = field(default_factory=set)  # offsets already reported as truncated


@dataclass(slots=True)
class _Run:
    """One fastwarc pass over the file, from ``start`` to wherever it stopped."""

    start: int
    fmt: str
    last_offset: int | None = None  # offset of the last record fastwarc yielded
    at_last_offset: int = 0  # records yielded at last_offset (several share one gzip member)
    failed_in_record: bool = False  # fastwarc raised while the record at last_offset was read
    held: list[WarcResponse | WarcProblem] = field(default_factory=list)  # items not yet yielded
    held_offset: int | None = None  # the offset (gzip member) the held items come from


# -- input ---------------------------------------------------------------------------------------

class _CountingReader:
    """What fastwarc reads from: ``read``/``tell`` over the input, counting the position."""

    __slots__ = ("_read", "pos", "error")

    def __init__(self, read: Callable[[int, int], bytes], pos: int) -> None:
        self._read = read
        self.pos = pos
        self.error: BaseException | None = None  # what the source raised, if it did

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (all that is left if ``n`` < 0)."""
        try:
            data = self._read(self.pos, n)
        except BaseException as exc:
            self.error = exc
            raise
        self.pos += len(data)
        return data

    def tell(self) -> int:
        """Position in the file."""
        return self.pos


class _Input:
    """The file: a local path (read with pread) or a caller's binary file object."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        self._owned: BinaryIO | None = None
        self._fd: int | None = None
        self.path: str | None = None  # a local file's path
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self._owned = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
            self._fd = self._owned.fileno()
            self._file: BinaryIO = self._owned
            self.seekable = True
            self.start = 0
            self.size: int | None = os.fstat(self._fd).st_size
            return
        self._file = source
        self.start = 0
        self.size = None
        try:
            self.seekable = bool(source.seekable())
            if self.seekable:
                self.start = source.tell()
                self.size = source.seek(0, os.SEEK_END)
                source.seek(self.start)
        except (AttributeError, OSError, ValueError):
            self.seekable = False
            self.start, self.size = 0, None

    def close(self) -> None:
        """Close the file if this object opened it."""
        if self._owned is not None:
            self._owned.close()

    def pread(self, offset: int, n: int) -> bytes:
        """Read ``n`` bytes at ``offset`` without disturbing a running fastwarc pass."""
        if self._fd is not None:
            return os.pread(self._fd, n, offset)
        f = self._file
        here = f.tell()
        try:
            f.seek(offset)
            return f.read(n)
        finally:
            f.seek(here)

    def reader_at(self, offset: int) -> _CountingReader:
        """A fresh reader for fastwarc that starts at ``offset``."""
        if self._fd is not None:
            fd = self._fd

            def read_fd(pos: int, n: int) -> bytes:
                return os.pread(fd, n if n >= 0 else max(0, (self.size or 0) - pos), pos)
            return _CountingReader(read_fd, offset)
        f = self._file
        if self.seekable:
            f.seek(offset)

        def read_file(pos: int, n: int) -> bytes:
            return f.read(n)
        return _CountingReader(read_file, offset)

    def detect_format(self) -> str:
        """'gzip', 'zstd', 'lz4', 'plain' from the magic bytes ('unknown' for a one-way stream)."""
        if not self.seekable:
            return "unknown"
        head = self.pread(self.start, 4)
        if head.startswith(_GZIP_MAGIC):
            return "gzip"
        if head.startswith(_ZSTD_MAGIC):
            return "zstd"
        if head.startswith(_LZ4_MAGIC):
            return "lz4"
        return "plain"

    def member_starts_record(self, offset: int, record_id: str | None) -> bool:
        """Whether a gzip member starts at ``offset`` and begins with this record's WARC header."""
        if not self.seekable:
            return True
        head = _gunzip_prefix(self.pread(offset, 64 << 10), _MAX_WARC_HEADER)
        head = head.lstrip(b"\r\n") if head is not None else b""
        if not head.startswith(b"WARC/"):
            return False
        if not record_id:
            return True
        end = head.find(b"\r\n\r\n")
        for line in (head if end < 0 else head[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            # Only this field: other headers (WARC-Concurrent-To, ...) name neighbouring records.
            if name.strip().lower() == b"warc-record-id":
                return value.strip() == record_id.encode("utf-8", "replace")
        return False


# -- checking and resynchronising ----------------------------------------------------------------

class _TailWalker:
    """Walk the file from the last record fastwarc yielded and find the first thing wrong.

    Returns None when the rest of the file holds exactly the records fastwarc yielded there, in
    complete gzip members (or bytes) up to the end of the file; otherwise (offset, kind, message).
    It stops at the first record fastwarc did not yield, so it reads a record or two (all of the
    last gzip member, when that holds many records).
    """

    def __init__(self, inp: _Input, fmt: str) -> None:
        self._inp = inp
        self._gz = fmt == "gzip"

    def check(self, run: _Run) -> tuple[int, str, str] | None:
        """The first thing wrong after ``run.last_offset`` (or ``run.start``), None if nothing is."""
        start = run.start if run.last_offset is None else run.last_offset
        expected = 0 if run.last_offset is None else run.at_last_offset
        if run.failed_in_record:
            expected -= 1  # the record at last_offset was not read to its end
        pieces = self._gunzip_pieces(start) if self._gz else self._plain_pieces(start)
        return _walk_records(pieces, expected, self._inp.size or 0, exact=not self._gz)

    def _plain_pieces(self, start: int) -> Iterator[tuple[int, bytes] | tuple[int, str, str]]:
        pos = start
        while True:
            data = self._inp.pread(pos, _SCAN_CHUNK)
            if not data:
                return
            yield pos, data
            pos += len(data)

    def _gunzip_pieces(self, start: int) -> Iterator[tuple[int, bytes] | tuple[int, str, str]]:
        """Decompressed bytes member by member as (member offset, bytes), or (offset, kind, message)."""
        inp = self._inp
        size = inp.size or 0
        member = start
        while member < size:
            data = inp.pread(member, _SCAN_CHUNK)
            if not data.startswith(_GZIP_MAGIC):
                if len(data) < len(_GZIP_MAGIC) and _GZIP_MAGIC.startswith(data):
                    yield member, "truncated_member", ""
                else:
                    yield member, "malformed_record", "bytes that are not a gzip member"
                return
            d = zlib.decompressobj(31)
            pos = member
            while True:
                try:
                    out = d.decompress(data, _SCAN_CHUNK)
                    while out:
                        yield member, out
                        out = d.decompress(d.unconsumed_tail, _SCAN_CHUNK) if d.unconsumed_tail else b""
                except zlib.error as exc:
                    yield member, "read_error", f"corrupt gzip member ({exc})"
                    return
                if d.eof:
                    member = pos + len(data) - len(d.unused_data)
                    break
                pos += len(data)
                data = inp.pread(pos, _SCAN_CHUNK)
                if not data:
                    yield member, "truncated_member", ""
                    return


def _walk_records(pieces: Iterator[tuple[int, bytes] | tuple[int, str, str]], expected: int,
                  size: int, *, exact: bool) -> tuple[int, str, str] | None:
    """Parse WARC framing over ``pieces``; see _TailWalker. Kind ``unread`` marks the first record
    fastwarc did not yield. ``exact``: piece offsets are file offsets of their first byte
    (uncompressed), not gzip member starts."""
    seen = 0
    header = bytearray()
    record_at = -1  # offset (member) where the current record starts; -1 between records
    remaining = -1  # block bytes still to skip; -1 while reading the header
    last_member = -1  # last member that gave decompressed bytes
    for piece in pieces:
        if len(piece) == 3:
            offset, kind, message = piece  # type: ignore[misc]
            if kind != "truncated_member":
                return offset, kind, message
            if record_at >= 0:
                return record_at, "truncated", "the file ends inside this record"
            if offset != last_member:
                return offset, "truncated", "the file ends inside this gzip member"
            return size, "truncated", "the gzip stream ends without its trailer (the records in it are complete)"
        member, data = piece  # type: ignore[misc]
        last_member = member
        i, n = 0, len(data)
        while i < n:
            if record_at < 0:
                while i < n and data[i] in b"\r\n":
                    i += 1
                if i == n:
                    break
                record_at, remaining = (member + i if exact else member), -1
                header.clear()
            if remaining < 0:
                before = len(header)
                header += data[i:i + _MAX_WARC_HEADER]
                end = header.find(b"\r\n\r\n", max(0, before - 3))
                if end < 0:
                    if len(header) >= _MAX_WARC_HEADER:
                        return record_at, "malformed_record", "no WARC header (or one over 64 KiB) here"
                    if not header.startswith(b"WARC/"[: len(header)]):
                        return record_at, "malformed_record", "bytes that are not a WARC record"
                    i = n
                    continue
                length = _warc_content_length(bytes(header[:end]))
                if length is None:
                    return record_at, "malformed_record", "bytes that are not a WARC record"
                if seen == expected:
                    return record_at, "unread", "a record the reader stopped at"
                i += end + 4 - before
                remaining = length
            take = min(remaining, n - i)
            i += take
            remaining -= take
            if remaining == 0:
                seen += 1
                record_at, remaining = -1, -1
    if record_at >= 0:
        return record_at, "truncated", "the file ends inside this record"
    return None


def _warc_content_length(header: bytes) -> int | None:
    """The Content-Length of a WARC header block, None if it is not one."""
    if not header.startswith(b"WARC/"):
        return None
    for line in header.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


def _next_record_start(inp: _Input, fmt: str, after: int) -> int | None:
    """The first offset > ``after`` where a WARC record starts (a gzip member of one, if gzip)."""
    pattern = _GZIP_MAGIC if fmt == "gzip" else b"WARC/1."
    pos = after + 1
    carry = len(pattern) - 1
    while True:
        chunk = inp.pread(pos, _SCAN_CHUNK)
        if len(chunk) < len(pattern):
            return None
        hit = chunk.find(pattern)
        while hit >= 0:
            cand = pos + hit
            if fmt == "gzip":
                head = _gunzip_prefix(inp.pread(cand, 16 << 10), 64)
                if head is not None and head.lstrip(b"\r\n").startswith(b"WARC/"):
                    return cand
            elif cand == 0 or inp.pread(cand - 1, 1) == b"\n":
                return cand
            hit = chunk.find(pattern, hit + 1)
        pos += len(chunk) - carry


def _gunzip_prefix(data: bytes, limit: int) -> bytes | None:
    """Up to ``limit`` decompressed bytes of the gzip member at the start of ``data``, None if none."""
    if not data.startswith(_GZIP_MAGIC):
        return None
    try:
        return zlib.decompressobj(31).decompress(data, limit)
    except zlib.error:
        return None


# -- HTTP helpers --------------------------------------------------------------------------------

def _dechunk(data: bytes) -> bytes | None:
    """Decode HTTP chunked transfer encoding; None if the framing is broken or incomplete."""
    parts: list[bytes] = []
    i, n = 0, len(data)
    while True:
        eol = data.find(b"\n", i)
        if eol < 0:
            return None
        digits = data[i:eol].split(b";", 1)[0].strip()
        if not digits or digits.strip(b"0123456789abcdefABCDEF"):
            return None
        size = int(digits, 16)
        i = eol + 1
        if size == 0:
            return b"".join(parts)
        if i + size > n:
            return None
        parts.append(data[i:i + size])
        i += size
        if data.startswith(b"\r\n", i):
            i += 2
        elif data.startswith(b"\n", i):
            i += 1
        else:
            return None


class _PayloadError(Exception):
    """A payload that cannot be decoded: ``kind`` is the WarcProblem kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo a Content-Encoding (a list of codings, applied in order); raises _PayloadError."""
    for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
        if coding in ("", "identity", "none"):
            continue
        if coding in ("gzip", "x-gzip"):
            if not body.startswith(b"\x1f\x8b"):
                # A server that labels a plain body gzip: the bytes are the payload as they are.
                continue
            body = _inflate(body, 31, limit)
        elif coding == "deflate":
            try:
                body = _inflate(body, 15, limit)
            except _PayloadError as exc:
                if exc.kind != "bad_http":
                    raise
                body = _inflate(body, -15, limit)  # raw deflate, which many servers send
        elif coding == "br":
            body = _unbrotli(body, limit)
        else:
            raise _PayloadError("bad_http", f"unsupported Content-Encoding {encoding!r}")
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _PayloadError("bad_http", f"corrupt compressed payload ({exc})") from None
    if len(out) > limit:
        raise _PayloadError("body_too_large", f"decoded payload larger than {limit} bytes")
    if not d.eof:
        raise _PayloadError("bad_http", "compressed payload cut short")
    return out


def _unbrotli(data: bytes, limit: int) -> bytes:
    import brotli  # a dependency of fastwarc; imported here as few payloads need it

    d = brotli.Decompressor()
    try:
        try:
            out = d.process(data, output_buffer_limit=limit + 1)
        except TypeError:  # brotli < 1.2 has no output limit
            out = d.process(data)
    except brotli.error as exc:
        raise _PayloadError("bad_http", f"corrupt compressed payload ({exc})") from None
    if len(out) > limit:
        raise _PayloadError("body_too_large", f"decoded payload larger than {limit} bytes")
    if not d.is_finished():
        raise _PayloadError("bad_http", "compressed payload cut short")
    return out


def _check_payload_digest(digest: str | None, raw: bytes, body: bytes, offset: int,
                          rec: WarcRecord) -> WarcProblem | None:
    """A digest_mismatch problem if WARC-Payload-Digest matches neither the stored nor the de-chunked payload."""
    if not digest:
        return None
    algorithm, _, encoded = digest.partition(":")
    algorithm = algorithm.strip().lower().replace("-", "")
    if algorithm not in hashlib.algorithms_available:
        return None
    expected = _digest_bytes(encoded.strip())
    if expected is None:
        return None
    for candidate in (raw, body) if body is not raw else (raw,):
        if hashlib.new(algorithm, candidate).digest() == expected:
            return None
    return WarcProblem(offset, "digest_mismatch", f"payload does not match {digest} in {_describe(rec)}")


def _digest_bytes(encoded: str) -> bytes | None:
    for decode in (lambda s: base64.b32decode(s.upper() + "=" * (-len(s) % 8)), bytes.fromhex,
                   base64.b64decode):
        try:
            return decode(encoded)
        except (ValueError, binascii.Error):
            continue
    return None


# -- small helpers -------------------------------------------------------------------------------

def _describe(rec: WarcRecord) -> str:
    return f"record {rec.record_id or '?'} ({rec.headers.get('WARC-Target-URI') or 'no URI'})"


def _reraise_fatal(exc: BaseException, reader: _CountingReader) -> BaseException:
    """Return an error of fastwarc's about the data; re-raise the source's own I/O errors and the like.

    fastwarc raises ``OSError`` for bad data, panics (``PanicException``, a BaseException) on
    bugs, and passes on whatever the source's ``read`` raised: that one is an I/O failure (maybe a
    transient one of remote storage), which the caller must see rather than a problem record.
    """
    if exc is reader.error or isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)):
        raise exc
    return exc


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _error_kind(exc: BaseException) -> str:
    text = str(exc).lower()
    return "malformed_record" if any(e in text for e in _FRAMING_ERRORS) else "read_error"
