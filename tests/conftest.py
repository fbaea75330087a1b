"""Shared fixtures: the reference data folder, a real Dask LocalCluster, small datasets."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_STAGES = REPO / "tests" / "helpers" / "stages_for_tests.py"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's reference data (../shared/data beside the checkout); missing data is an error."""
    assert SHARED_DATA.is_dir(), f"reference data not found at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real LocalCluster with 2 single-threaded worker processes, shared by the session."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def write_dataset(directory: Path, shards: list[list[dict]]) -> Path:
    """Write rows as a Parquet dataset (one shard per inner list)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(shards):
        table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("text", pa.string())]))
        pq.write_table(table, directory / f"part-{i:05d}.parquet")
    return directory


def read_dataset(directory: Path) -> pa.Table:
    """All shards of a dataset, in shard order."""
    files = sorted(p for p in directory.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in files])


def curator_cmd() -> list[str]:
    """The curator CLI of this environment."""
    return [sys.executable, "-m", "curator.cli"]


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses (quiet Dask, unbuffered output)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
