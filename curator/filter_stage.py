"""The base of filter stages: rules that drop rows, optionally only on rows matching a condition.

The Nemotron-CC recipe applies its heuristic filters only to the lower quality buckets, so every
filter takes ``condition:`` (see :mod:`curator.expressions`); rows that do not match pass through
untouched and are not counted as checked.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from curator.expressions import RowCondition
from curator.stage import DROP_REASON, MapStage


class FilterStage(MapStage):
    """A map stage that gives each row a drop reason (or none) through :meth:`reasons`."""

    condition: str | None = Field(
        None, description="Filter only rows matching this expression, e.g. \"quality_label in ['low', 'medium_low']\".")

    @field_validator("condition")
    @classmethod
    def _parse_condition(cls, value: str | None) -> str | None:
        if value is not None:
            RowCondition.parse(value)  # raises with a message naming the problem
        return value

    def required_columns(self) -> tuple[str, ...]:
        columns = list(self.requires)
        if self.condition:
            columns += [c for c in RowCondition.parse(self.condition).columns if c not in columns]
        return tuple(columns)

    def reasons(self, batch: pa.Table) -> pa.Array:
        """A string array with one drop reason per row, null for rows to keep."""
        raise NotImplementedError

    def process(self, batch: pa.Table) -> pa.Table:
        if not self.condition:
            return batch.append_column(DROP_REASON, self.reasons(batch))
        mask = RowCondition.parse(self.condition).mask(batch)
        selected = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        out = np.full(batch.num_rows, None, dtype=object)
        if len(selected):
            out[selected] = np.array(self.reasons(batch.take(selected)).to_pylist(), dtype=object)
        return batch.append_column(DROP_REASON, pa.array(out, pa.string()))
