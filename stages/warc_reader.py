"""The WARC input stage: one row per HTTP response record, read with fastwarc.

Row ids are stable: a digest of the WARC file's base name, the record's byte offset and its
WARC-Record-ID, so the same record gets the same id wherever the file is stored. A malformed record or a truncated file
becomes a dropped row (reason ``warc_<kind>``) that names the file and offset; the rest of the file
and the other files go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from typing import ClassVar

import fsspec
import pyarrow as pa
from pydantic import Field

from curator.stage import DROP_REASON, SourceStage
from curator.storage import is_remote

log = logging.getLogger("stages.warc")

WARC_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("url", pa.string()),
    ("warc_record_id", pa.string()),
    ("warc_date", pa.string()),
    ("content_type", pa.string()),
    ("http_charset", pa.string()),
    ("http_status", pa.int32()),
    ("body", pa.binary()),
    ("source", pa.string()),
    (DROP_REASON, pa.string()),
])


def record_id(path: str, offset: int, warc_record_id: str = "") -> str:
    """Stable id of a WARC record: digest of the file's base name, its offset and WARC-Record-ID.

    The record id matters where several records share one gzip member (and so one offset).
    """
    return _record_id(os.path.basename(path.rstrip("/")), offset, warc_record_id)


def _record_id(file_name: str, offset: int, warc_record_id: str) -> str:
    return hashlib.blake2b(f"{file_name}@{offset}/{warc_record_id}".encode(), digest_size=10).hexdigest()


class WarcReader(SourceStage):
    """Read HTTP response records from WARC files (local paths, globs, fsspec URLs) with fastwarc."""

    name = "io.warc"
    adds = tuple(n for n in WARC_SCHEMA.names if n != DROP_REASON)
    schema: ClassVar[pa.Schema] = WARC_SCHEMA

    max_body_mb: float = Field(64.0, gt=0, description="Bodies larger than this are dropped (reason warc_body_too_large).")
    batch_records: int = Field(2000, ge=1, description="Rows per Arrow batch written.")

    def read(self, path: str) -> Iterator[pa.Table]:
        from stages.warc_records import iter_warc_responses

        max_body = int(self.max_body_mb * (1 << 20))
        if is_remote(path):
            with fsspec.open(path, "rb") as fh:
                yield from self._batches(path, iter_warc_responses(fh, max_body_bytes=max_body))
        else:
            yield from self._batches(path, iter_warc_responses(path, max_body_bytes=max_body))

    def _batches(self, path: str, items: Iterator) -> Iterator[pa.Table]:
        from stages.warc_records import WarcProblem

        name = os.path.basename(path.rstrip("/"))
        cols: list[list] = [[] for _ in WARC_SCHEMA.names]
        (ids, urls, record_ids, dates, types, charsets, statuses, bodies, sources, reasons) = cols
        for item in items:
            offset = item.offset
            sources.append(f"{path}@{offset}")
            if isinstance(item, WarcProblem):
                ids.append(_record_id(name, offset, ""))
                log.warning("io.warc: %s at offset %d: %s: %s", path, offset, item.kind, item.message)
                urls.append("")
                record_ids.append("")
                dates.append("")
                types.append("")
                charsets.append(None)
                statuses.append(None)
                bodies.append(b"")
                reasons.append(f"warc_{item.kind}")
            else:
                ids.append(_record_id(name, offset, item.record_id))
                urls.append(item.url)
                record_ids.append(item.record_id)
                dates.append(item.date)
                types.append(item.content_type)
                charsets.append(item.charset)
                statuses.append(item.http_status)
                bodies.append(item.body)
                reasons.append(None)
            if len(ids) >= self.batch_records:
                yield self._table(cols)
                cols = [[] for _ in WARC_SCHEMA.names]
                (ids, urls, record_ids, dates, types, charsets, statuses, bodies, sources, reasons) = cols
        if ids:
            yield self._table(cols)

    @staticmethod
    def _table(cols: list[list]) -> pa.Table:
        arrays = [pa.array(values, type=field.type) for values, field in zip(cols, WARC_SCHEMA)]
        return pa.Table.from_arrays(arrays, schema=WARC_SCHEMA)
