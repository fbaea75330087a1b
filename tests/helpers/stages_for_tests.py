"""Stages used by tests through a pipeline file's ``imports:`` (loaded by file path)."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from curator.stage import DROP_REASON, MapStage


class SlowCopy(MapStage):
    """Copy rows after sleeping, so a test can kill a run part-way."""

    name = "test.slow_copy"
    seconds: float = 0.3

    def process(self, batch: pa.Table) -> pa.Table:
        time.sleep(self.seconds)
        return batch.append_column("copied", pa.array([True] * batch.num_rows, pa.bool_()))


class FailOnText(MapStage):
    """Raise on any batch holding a row whose text contains ``bad_record``."""

    name = "test.fail_on_text"
    bad_record: str = "POISON"

    def process(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        if any(self.bad_record in (t or "") for t in texts):
            raise ValueError("bad record")
        return batch


class DropShort(MapStage):
    """Drop rows whose text is shorter than ``min_chars`` (reason too_short)."""

    name = "test.drop_short"
    min_chars: int = 5

    def process(self, batch: pa.Table) -> pa.Table:
        short = pc.less(pc.utf8_length(batch.column("text")), self.min_chars)
        reasons = pc.if_else(short, "too_short", pa.scalar(None, pa.string()))
        return batch.append_column(DROP_REASON, reasons)
