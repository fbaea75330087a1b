"""Column helpers stages share."""

from __future__ import annotations

import pyarrow as pa


def put_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with ``values`` as column ``name``: replacing a column of that name in place (a stage run a second
    time over its own output), else appended."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
