"""``filter.perplexity``: drop documents whose perplexity under a scorer LM is too high.

Nemotron-CC filtered its lower quality buckets with a perplexity filter (KenLM there; here any column such as
``classify.perplexity``'s). With ``condition`` the rule applies only to matching rows, e.g. the low labels::

    - id: ppl_filter
      uses: filter.perplexity
      from: perplexity
      with: {column: perplexity, max_perplexity: 1500, condition: "quality_label in ['low', 'medium_low']"}

Rows above the threshold are dropped as ``<column>_above_<max>``. A row without a perplexity (no text, no tokens)
is kept unless ``drop_missing`` (then dropped as ``<column>_missing``): a document the scorer could not read is
never counted as a bad one by default.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.filter_stage import FilterStage


class PerplexityFilter(FilterStage):
    """Drop rows whose perplexity column is above a threshold (optionally only rows matching a condition)."""

    name = "filter.perplexity"
    requires = ()

    column: str = Field("perplexity", description="The perplexity column (classify.perplexity's output).")
    max_perplexity: float = Field(..., gt=0, description="Rows with a perplexity above this are dropped.")
    drop_missing: bool = Field(False, description="Also drop rows with no perplexity (null).")

    def required_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.column, *super().required_columns()]))

    def reasons(self, batch: pa.Table) -> pa.Array:
        scores = batch.column(self.column)
        if not (pa.types.is_floating(scores.type) or pa.types.is_integer(scores.type)):
            raise TypeError(f"stage {self.name}: column {self.column!r} is {scores.type}, not a number")
        values = pc.fill_null(scores.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        missing = pc.is_null(scores).to_numpy(zero_copy_only=False) | np.isnan(values)
        out = np.full(batch.num_rows, None, dtype=object)
        out[(values > self.max_perplexity) & ~missing] = f"{self.column}_above_{self.max_perplexity:g}"
        if self.drop_missing:
            out[missing] = f"{self.column}_missing"
        return pa.array(out, pa.string())
