"""The texts a hybrid LM scorer is trained on: read from JSONL / Parquet files or a curator dataset,
optionally only the rows matching a condition (``quality_label == 'high'``: a run's High bucket).

Inputs are files (``*.jsonl``, ``*.json``, ``*.ndjson``, optionally gzip-compressed, ``*.parquet``) and
folders. A folder holding Parquet files is read as a curator dataset (its Parquet shards; manifests and
other JSON beside them are not data); any other folder is expanded to its JSONL and Parquet files.
Rows are counted, never silently lost: every row read is used, not matched, or skipped for a missing
or empty text, and :class:`TextSelection` says how many of each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from classifiers.labelled_data import LabelledDataError, input_files, json_records
from curator.expressions import ConditionError, RowCondition

BATCH_ROWS = 10_000
PARQUET_SUFFIXES = (".parquet", ".pq")


class ScorerDataError(ValueError):
    """Training text that cannot be read or selected; the message names the file (and line or row)."""


@dataclass
class TextSelection:
    """The texts selected for training and what happened to every row read."""

    texts: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    not_matched: int = 0
    """Rows the ``where`` condition did not select (a null value counts as not matching)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Selected rows not used, by reason: ``no_text`` (missing or not a string), ``empty_text``."""

    def summary(self) -> str:
        """One line: rows read, used, not matched, skipped by reason."""
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())) or "none"
        return (f"{self.rows_read} rows read from {len(self.files)} files: {len(self.texts)} used, "
                f"{self.not_matched} not matching the condition, skipped: {skipped}")


def training_files(paths: Iterable[str | Path]) -> list[Path]:
    """The data files named by ``paths`` (see the module docstring for folders)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            shards = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES
                            and not p.name.startswith((".", "_")))
            if shards:
                files += shards
                continue
        try:
            files += input_files([path])
        except LabelledDataError as exc:
            raise ScorerDataError(str(exc)) from None
    return files


def read_training_texts(paths: Iterable[str | Path], text_column: str = "text",
                        where: str | None = None) -> TextSelection:
    """Read the texts of ``paths``, keeping the rows that match ``where`` (all rows when None)."""
    try:
        condition = RowCondition.parse(where) if where else None
    except ConditionError as exc:
        raise ScorerDataError(f"--where: {exc}") from None
    columns = list(dict.fromkeys([text_column, *(condition.columns if condition else ())]))
    selection = TextSelection()
    for path in training_files(paths):
        selection.files.append(str(path))
        for table, where_label in _tables(path, columns):
            selection.rows_read += table.num_rows
            if condition is not None:
                try:
                    mask = condition.mask(table)
                except (KeyError, pa.ArrowException) as exc:
                    raise ScorerDataError(f"{where_label}: cannot evaluate condition {where!r}: {exc}") from exc
                matched = table.filter(mask)
                selection.not_matched += table.num_rows - matched.num_rows
                table = matched
            for text in table.column(text_column).to_pylist():
                if not isinstance(text, str):
                    selection.skipped["no_text"] += 1
                elif not text.strip():
                    selection.skipped["empty_text"] += 1
                else:
                    selection.texts.append(text)
    return selection


def _tables(path: Path, columns: list[str]) -> Iterator[tuple[pa.Table, str]]:
    """The file's rows as tables of ``columns``, batch by batch, each with where it came from."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        yield from _parquet_tables(path, columns)
    else:
        yield from _jsonl_tables(path, columns)


def _parquet_tables(path: Path, columns: list[str]) -> Iterator[tuple[pa.Table, str]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ScorerDataError(f"{path}: cannot read Parquet: {exc}") from exc
    names = parquet.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ScorerDataError(f"{path}: no column {' or '.join(repr(c) for c in missing)} "
                              f"(columns: {', '.join(names)})")
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield pa.Table.from_batches([batch]), f"{path} rows {row}-{row + batch.num_rows - 1}"
            row += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise ScorerDataError(f"{path}: cannot read Parquet after row {row}: {exc}") from exc


def _jsonl_tables(path: Path, columns: list[str]) -> Iterator[tuple[pa.Table, str]]:
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    first_line = line_no = 0
    any_record = False
    for line_no, record in json_records(path, ScorerDataError):
        any_record = True
        seen.update(c for c in columns if c in record)
        if not rows:
            first_line = line_no
        row = {c: record.get(c) for c in columns}
        if not isinstance(row[columns[0]], str):  # the text column: a non-string is counted as no_text
            row[columns[0]] = None
        rows.append(row)
        if len(rows) >= BATCH_ROWS:
            yield _rows_table(rows, columns, path, first_line, line_no)
            rows = []
    if any_record and len(seen) < len(columns):
        missing = [c for c in columns if c not in seen]
        raise ScorerDataError(f"{path}: no record has the column {' or '.join(repr(c) for c in missing)}")
    if rows:
        yield _rows_table(rows, columns, path, first_line, line_no)


def _rows_table(rows: list[dict[str, Any]], columns: list[str], path: Path, first: int,
                last: int) -> tuple[pa.Table, str]:
    where = f"{path}:{first}-{last}"
    try:
        return pa.Table.from_pylist(rows, schema=None).select(columns), where
    except (pa.ArrowException, KeyError) as exc:
        raise ScorerDataError(f"{where}: values of one column have mixed types: {exc}") from exc
