"""Labelled documents for training classifiers: (text, label) records read from JSONL or Parquet.

Accepted inputs: ``*.jsonl`` / ``*.json`` / ``*.ndjson`` (one JSON object per line, optionally
gzip-compressed: ``*.jsonl.gz``), ``*.parquet``, and folders of such files (a curator dataset is a
folder of Parquet shards). Records are yielded with their raw values, missing ones as ``None``:
deciding what an empty text or an unknown label means is the trainer's job, which counts them.

Problems with a file as a whole (unreadable, not JSON, a column no record has) raise
:class:`LabelledDataError` naming the file, and the line for JSONL.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_BATCH_ROWS = 10_000


class LabelledDataError(ValueError):
    """A labelled input file that cannot be read or lacks a column; the message names the file."""


@dataclass(frozen=True)
class LabelledRecord:
    """One input record: its raw text and label values (``None`` when missing) and where it came from."""

    text: Any
    label: Any
    where: str
    """``file:line`` for JSONL, ``file row N`` (0-based) for Parquet."""


def _format(path: Path) -> str:
    """``jsonl`` or ``parquet`` by the file name (a ``.gz`` suffix is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in JSONL_SUFFIXES:
        return "jsonl"
    if last in PARQUET_SUFFIXES:
        return "parquet"
    raise LabelledDataError(f"{path}: unknown file type (expected {', '.join(JSONL_SUFFIXES)} "
                            f"optionally .gz, or {', '.join(PARQUET_SUFFIXES)})")


def input_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named by ``paths``: files as given, folders expanded to their JSONL and Parquet files
    (sorted). A path that does not exist raises ``FileNotFoundError`` naming it."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
                           and _is_data_file(p))
            if not found:
                raise LabelledDataError(f"{path}: folder holds no JSONL or Parquet files")
            files += found
        elif path.is_file():
            _format(path)
            files.append(path)
        else:
            raise FileNotFoundError(f"labelled input not found: {path}")
    if not files:
        raise LabelledDataError("no labelled input files given")
    return files


def _is_data_file(path: Path) -> bool:
    try:
        _format(path)
    except LabelledDataError:
        return False
    return True


def read_labelled(path: Path, text_column: str = "text", label_column: str = "label") -> Iterator[LabelledRecord]:
    """Every record of one JSONL or Parquet file, in file order."""
    if _format(path) == "parquet":
        yield from _read_parquet(path, text_column, label_column)
    else:
        yield from _read_jsonl(path, text_column, label_column)


def _open_text(path: Path) -> IO[str]:
    """Open a JSONL file as text, decompressing gzip when the file starts with the gzip magic."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def json_records(path: Path, error: type[ValueError] = LabelledDataError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each non-blank line of a JSONL file (gzip or not); a line that is not a JSON
    object, or a file that cannot be read, raises ``error`` naming the file and the line."""
    line_no = 0
    try:
        with _open_text(path) as lines:
            for line_no, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{path}:{line_no}: not valid JSON ({exc.msg} at character {exc.pos + 1})") from exc
                if not isinstance(record, dict):
                    raise error(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
                yield line_no, record
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise error(f"{path}:{line_no + 1}: cannot read: {type(exc).__name__}: {exc}") from exc


def _read_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[LabelledRecord]:
    seen = {text_column: False, label_column: False}
    first_keys: list[str] | None = None
    for line_no, record in json_records(path):
        if first_keys is None:
            first_keys = list(record)
        for column in seen:
            seen[column] = seen[column] or column in record
        yield LabelledRecord(record.get(text_column), record.get(label_column), f"{path}:{line_no}")
    if first_keys is None:
        return  # an empty file has no records and no columns to check
    missing = [column for column, found in seen.items() if not found]
    if missing:
        raise LabelledDataError(
            f"{path}: no record has the column {' or '.join(repr(c) for c in missing)} "
            f"(keys of the first record: {', '.join(first_keys) or 'none'})")


def _read_parquet(path: Path, text_column: str, label_column: str) -> Iterator[LabelledRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise LabelledDataError(f"{path}: cannot read Parquet: {exc}") from exc
    names = parquet.schema_arrow.names
    missing = [c for c in (text_column, label_column) if c not in names]
    if missing:
        raise LabelledDataError(f"{path}: no column {' or '.join(repr(c) for c in missing)} "
                                f"(columns: {', '.join(names)})")
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_column, label_column]):
            texts = batch.column(text_column).to_pylist()
            labels = batch.column(label_column).to_pylist()
            for text, label in zip(texts, labels, strict=True):
                yield LabelledRecord(text, label, f"{path} row {row}")
                row += 1
    except (OSError, pa.ArrowException) as exc:
        raise LabelledDataError(f"{path}: cannot read Parquet after row {row}: {exc}") from exc
