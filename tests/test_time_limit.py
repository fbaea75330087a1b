"""Time-limited child processes: a hang, a crash, an error or a memory blow-up costs one item only."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from curator.time_limit import ItemFailed, TimeLimitedCalls
from stages.extract import TextExtractor


def test_timeouts_crashes_and_errors_are_per_item() -> None:
    calls = TimeLimitedCalls("tests.helpers.child_funcs:make_worker", "ok-", limit_s=2.0, memory_limit_mb=1024)
    try:
        first = calls.call("a")
        assert first.startswith("ok-a:")
        assert calls.call("b").split(":")[1] == first.split(":")[1]  # the same child serves many items
        start = time.monotonic()
        with pytest.raises(ItemFailed) as info:
            calls.call("sleep")
        assert info.value.kind == "timeout" and time.monotonic() - start < 10
        after_timeout = calls.call("c")
        assert after_timeout.split(":")[1] != first.split(":")[1]  # a fresh child
        with pytest.raises(ItemFailed) as info:
            calls.call("crash")
        assert info.value.kind == "crash"
        with pytest.raises(ItemFailed) as info:
            calls.call("raise")
        assert info.value.kind == "error" and "ValueError: bad item" in str(info.value)
        with pytest.raises(ItemFailed) as info:
            calls.call("memory")
        assert info.value.kind == "error" and "MemoryError" in str(info.value)
        assert calls.call("d").startswith("ok-d:")
    finally:
        calls.close()


@pytest.mark.parametrize("engine", ["justext", "trafilatura", "resiliparse"])
def test_pathological_pages_do_not_stall_extraction(engine: str) -> None:
    deep = "<html><body>" + "<div>" * 10_000 + "deep text here" + "</div>" * 10_000 + "</body></html>"
    huge = "<html><body>" + "<p>" + "word " * 10_000_000 + "</p></body></html>"  # 50 MB of HTML
    good = "<html><body><p>" + "A normal paragraph of real words that the stage keeps as text. " * 5 + "</p></body></html>"
    stage = TextExtractor(engine=engine, time_limit_s=5.0)
    stage.setup()
    start = time.monotonic()
    result = stage.run_batch(pa.table({"id": ["deep", "huge", "good"], "html": [deep, huge, good]}))
    assert time.monotonic() - start < 60
    assert "good" in result.kept.column("id").to_pylist()
    # Every page is kept or dropped with an extraction reason; none fails the batch.
    rejected = {} if result.rejected is None else dict(
        zip(result.rejected.column("id").to_pylist(), result.rejected.column("drop_reason").to_pylist()))
    assert set(rejected.values()) <= {"extract_timeout", "extract_error", "extract_empty", "extract_crash"}
    assert len(rejected) + result.kept.num_rows == 3
