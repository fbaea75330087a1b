"""A stage that passes rows through unchanged (for tests and for measuring the framework)."""

from __future__ import annotations

import pyarrow as pa

from curator.stage import MapStage


class Identity(MapStage):
    """Pass every row through unchanged."""

    name = "util.identity"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch
