"""Per-shard side records (JSON beside a stage's work), written by each shard task and merged after the run.

LLM stages write their counts per shard task to ``<work dir>/<kind>/part-NNNNN.json`` with the
task's fingerprint; a merge reads only the records of the current shards, so files left by a run
with other settings are ignored.
"""

from __future__ import annotations

from typing import Any

from curator.plan import ShardTask
from curator.storage import join, read_json


def shard_record_path(directory: str, task: ShardTask) -> str:
    """Where a shard task's record lives."""
    return join(directory, f"{task.name}.json")


def current_shard_records(tasks: list[ShardTask], directory: str) -> list[dict[str, Any]]:
    """The records written for these tasks with their current fingerprints (stale or missing ones left out)."""
    records = []
    for task in tasks:
        record = read_json(shard_record_path(directory, task))
        if isinstance(record, dict) and record.get("fingerprint") == task.fingerprint:
            records.append(record)
    return records
