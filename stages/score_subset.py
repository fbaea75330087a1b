"""Quality subsets by an integer score: FineMath's 3+ and 4+ sets, or any ``score >= k`` cut.

``filter.score_at_least`` keeps the rows whose ``column`` is at least ``min_score`` and drops the
others as ``<column>_below_<min_score>``, or ``<column>_missing`` when the score is null (a
document the classifier could not score is never counted as a low score). Chained, it gives
nested subsets, each its own output of the pipeline::

    - {id: math_3plus, uses: filter.score_at_least, from: finemath, with: {column: finemath_score, min_score: 3}}
    - {id: math_4plus, uses: filter.score_at_least, from: math_3plus, with: {column: finemath_score, min_score: 4}}

The score must be an integer column (a classifier's ``integer_range`` output); a float column is
refused with the name of the column and its type, since thresholding raw floats at 3 is rarely
what was meant (round them in the classifier instead).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curator.filter_stage import FilterStage


class ScoreAtLeast(FilterStage):
    """Keep rows whose integer score is at least a threshold (FineMath 3+ / 4+ subsets)."""

    name = "filter.score_at_least"
    requires = ()

    column: str = Field(description="The integer score column, e.g. finemath_score.")
    min_score: int = Field(description="Rows scoring below this are dropped.")

    def required_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.column, *super().required_columns()]))

    def reasons(self, batch: pa.Table) -> pa.Array:
        scores = batch.column(self.column)
        if not pa.types.is_integer(scores.type):
            raise TypeError(f"stage {self.name}: column {self.column!r} is {scores.type}, not an integer score "
                            "(give the classifier an integer_range, or round the score first)")
        values = pc.fill_null(scores.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        missing = pc.is_null(scores).to_numpy(zero_copy_only=False)
        out = np.full(batch.num_rows, None, dtype=object)
        out[values < self.min_score] = f"{self.column}_below_{self.min_score}"
        out[missing] = f"{self.column}_missing"
        return pa.array(out, pa.string())
