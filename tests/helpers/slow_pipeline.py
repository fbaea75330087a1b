"""The small three-stage pipeline the cluster, resume and remote-storage tests run: a slow copy (so a run can be
killed mid-stage), a filter with rejected rows, and exact dedup across shards."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TEST_STAGES


def shard_rows(shard: int, rows: int = 30) -> list[dict[str, str]]:
    """One input shard: distinct short documents, some too short for the filter, and one page shared by all."""
    out = [{"id": f"{shard:03d}-{r:03d}", "text": f"doc {shard} {r} " + "x" * (r % 9)} for r in range(rows)]
    out[0]["text"] = "the same page text in every shard"  # duplicates across shards
    return out


def write_slow_pipeline(path: Path, name: str, input_dataset: str, copy_seconds: float) -> Path:
    """Write the pipeline file to ``path``: input ``input_dataset`` (relative to the file, or a URL)."""
    path.write_text(f"""
name: {name}
imports: [{TEST_STAGES}]
inputs:
  docs: {{dataset: "{input_dataset}"}}
stages:
  - {{id: copy, uses: test.slow_copy, from: docs, with: {{seconds: {copy_seconds}}}}}
  - {{id: short, uses: test.drop_short, from: copy, with: {{min_chars: 12}}, keep_rejected: true}}
  - {{id: dedup, uses: dedup.exact, from: short}}
outputs:
  final: {{from: dedup}}
""")
    return path
