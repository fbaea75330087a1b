#!/usr/bin/env python3
"""Rebuild ``sample_data/sample.warc.gz`` from ``sample_data/pages/MANIFEST.json``.

The output is byte-for-byte deterministic: every date, record id and generated body is
derived from the manifest alone. Usage::

    python scripts/build_sample_warc.py [--pages DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAGES = REPO_ROOT / "sample_data" / "pages"
DEFAULT_OUT = REPO_ROOT / "sample_data" / "sample.warc.gz"

try:
    from stages.warc_writer import WarcWriter
except ImportError:  # not installed yet: run straight from a checkout
    sys.path.insert(0, str(REPO_ROOT))
    from stages.warc_writer import WarcWriter

_CRAWL_START = datetime(2024, 3, 4, 5, 6, 0, tzinfo=timezone.utc)
_FETCH_SPACING = timedelta(seconds=41)


def tiny_png() -> bytes:
    """Return a valid 4x4 RGB PNG (a warm-to-cool gradient), built with zlib only."""
    width = height = 4
    rows = b"".join(
        b"\x00" + b"".join(bytes((200 - 40 * x, 120 + 20 * y, 60 + 40 * x)) for x in range(width))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def tiny_pdf() -> bytes:
    """Return a minimal valid one-page PDF 1.4 with a correct xref table."""
    text = b"BT /F1 18 Tf 72 720 Td (Rivertown budget summary, fiscal 2024) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    return bytes(out)


def load_manifest(pages_dir: Path) -> list[dict[str, Any]]:
    """Return the manifest's records, in WARC order."""
    manifest = json.loads((pages_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    return list(manifest["records"])


def record_body(entry: dict[str, Any], pages_dir: Path) -> bytes:
    """Return the HTTP payload for one manifest record (file bytes as stored, or generated)."""
    if entry.get("file"):
        return (pages_dir / entry["file"]).read_bytes()
    generator = entry.get("generate")
    if generator == "png":
        return tiny_png()
    if generator == "pdf":
        return tiny_pdf()
    raise ValueError(f"record {entry['url']!r} has neither a file nor a known generator")


def _warc_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fetch_time_ms(url: str) -> int:
    """A stable, plausible fetch duration, so metadata records look like Common Crawl's."""
    return 80 + int.from_bytes(hashlib.sha1(url.encode("utf-8")).digest()[:2], "big") % 900


def build_sample_warc(pages_dir: Path, out: Path) -> int:
    """Write the sample WARC for ``pages_dir`` to ``out``; return the number of response records.

    Layout follows Common Crawl: one warcinfo record, then request, response and metadata
    records per page, linked with WARC-Concurrent-To.
    """
    records = load_manifest(pages_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    responses = 0
    with WarcWriter(out, filename=out.name) as writer:
        writer.write_warcinfo(
            {
                "software": "curator scripts/build_sample_warc.py",
                "format": "WARC File Format 1.0",
                "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/",
                "isPartOf": "curator-sample",
                "description": "Hand-written sample pages for tests and benchmarks; all text written for this project.",
            },
            date=_warc_date(_CRAWL_START),
        )
        for index, entry in enumerate(records):
            url = entry["url"]
            fetched = _CRAWL_START + _FETCH_SPACING * (index + 1)
            date = _warc_date(fetched)
            writer.write_request(url, date=date)
            request_id = writer.last_record_id
            writer.write_response(
                url,
                record_body(entry, pages_dir),
                content_type=entry["content_type"],
                status=int(entry["status"]),
                date=date,
                extra_http_headers={"Date": format_datetime(fetched, usegmt=True)},
                concurrent_to=request_id,
            )
            responses += 1
            writer.write_metadata(
                url,
                f"fetchTimeMs: {_fetch_time_ms(url)}\r\n",
                date=date,
                concurrent_to=writer.last_record_id,
            )
    return responses


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: build the WARC and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES, help="directory with MANIFEST.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .warc.gz path")
    args = parser.parse_args(argv)
    count = build_sample_warc(args.pages, args.out)
    print(f"wrote {count} response records to {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
