"""Remote storage: a run on a real S3 API server (moto, on 127.0.0.1), commit markers, resume, retries.

The S3 server runs in this process (moto's ThreadedMotoServer); runs find it through the standard
AWS environment variables: in-process runs on the session's LocalCluster (its workers are given the
variables), and `curator run` as a subprocess for the run that is killed with SIGKILL.
"""

from __future__ import annotations

import errno
import http.server
import io
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client
from fsspec.implementations.memory import MemoryFileSystem
from moto.server import ThreadedMotoServer  # the dev extra installs moto[server] and s3fs

from curator.object_store import RetryingFileSystem, RetryPolicy, is_transient, retry_call
from curator.pipeline import load_pipeline
from curator.plan import ShardTask, StageRef
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from curator.storage import (
    ShardWriter, _read_from, copy_file, expand_paths, file_fingerprint, filesystem, list_shards, read_batches,
    read_json, write_json_atomic,
)
from curator.tasks import run_map_shard
from tests.conftest import TEST_STAGES, cli_env, curator_cmd, read_dataset, write_dataset
from tests.helpers.slow_pipeline import shard_rows, write_slow_pipeline


N_SHARDS = 8
STAGES = ("copy", "short", "dedup")


# -- a real S3 API server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, for the whole module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_env(s3_endpoint: str) -> Iterator[dict[str, str]]:
    """AWS environment pointing at the server, set in this process (s3fs here) and for subprocesses."""
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield {**cli_env(), **values}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _new_bucket() -> str:
    name = f"curator-{uuid.uuid4().hex[:10]}"
    fsspec.filesystem("s3").mkdir(name)
    return name


@pytest.fixture(scope="module")
def local_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The input dataset on local disk."""
    return write_dataset(tmp_path_factory.mktemp("input") / "in", [shard_rows(s, rows=25) for s in range(N_SHARDS)])


def _pipeline(folder: Path, input_dataset: str, copy_seconds: float = 0.0) -> Path:
    return write_slow_pipeline(folder / f"p-{uuid.uuid4().hex[:6]}.yaml", "remote", input_dataset, copy_seconds)


def _command(pipeline: Path, run_dir: str) -> list[str]:
    return [*curator_cmd(), "run", str(pipeline), "--run-dir", run_dir, "--workers", "2", "--dashboard-address", ":0"]


def _run_in_process(pipeline: Path, run_dir: str, client: Client) -> None:
    result = PipelineRunner(load_pipeline(str(pipeline), [], run_dir=run_dir), client,
                            ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures


def _read_remote(dataset: str) -> pa.Table:
    """A dataset on the object store, read through the committed shards only."""
    tables = []
    for shard in list_shards(dataset):
        fs, path = filesystem(shard)
        with fs.open(path, "rb") as fh:
            tables.append(pq.read_table(fh))
    assert tables, dataset
    return pa.concat_tables(tables)


def _markers(stage_dir: str) -> dict[str, Any]:
    """A stage's commit markers on the object store, by name, with their contents."""
    fs, path = filesystem(f"{stage_dir}/_stats")
    if not fs.isdir(path):
        return {}
    return {p.rsplit("/", 1)[-1]: json.loads(fs.cat_file(p)) for p in fs.ls(path, detail=False)
            if p.endswith(".json")}


@pytest.fixture(scope="module")
def s3_client(dask_client: Client, s3_env: dict[str, str]) -> Client:
    """The session's LocalCluster, its workers given the AWS environment too."""
    values = {k: v for k, v in s3_env.items() if k.startswith("AWS_")}

    def set_environment() -> None:  # a closure: sent by value, run in each worker process
        os.environ.update(values)

    dask_client.run(set_environment)
    return dask_client


@pytest.fixture(scope="module")
def reference_run(local_input: Path, tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> Path:
    """The same pipeline on local disk: what every remote run must reproduce row for row."""
    folder = tmp_path_factory.mktemp("reference")
    _run_in_process(_pipeline(folder, str(local_input)), str(folder / "run"), dask_client)
    return folder / "run"


def _upload_input(local_input: Path) -> str:
    bucket = _new_bucket()
    fs = fsspec.filesystem("s3")
    for part in sorted(local_input.glob("part-*.parquet")):
        fs.put_file(str(part), f"{bucket}/in/{part.name}")
    return f"s3://{bucket}"


def _assert_same_as_reference(run_dir: str, reference: Path) -> None:
    for stage in STAGES:
        assert _read_remote(f"{run_dir}/{stage}").equals(read_dataset(reference / stage)), stage
    assert _read_remote(f"{run_dir}/short/_rejected").equals(read_dataset(reference / "short" / "_rejected"))
    assert _read_remote(f"{run_dir}/outputs/final").equals(read_dataset(reference / "outputs" / "final"))


# -- runs on S3 ----------------------------------------------------------------------------------


def test_run_on_s3_equals_local_run_and_a_markerless_shard_is_redone(
        local_input: Path, reference_run: Path, s3_client: Client, tmp_path: Path) -> None:
    base = _upload_input(local_input)
    run_dir = f"{base}/run"
    pipeline = _pipeline(tmp_path, f"{base}/in")
    _run_in_process(pipeline, run_dir, s3_client)
    _assert_same_as_reference(run_dir, reference_run)
    fs, _ = filesystem(run_dir)
    assert not [p for p in fs.find(run_dir.split("://", 1)[1]) if p.rsplit("/", 1)[-1].startswith(".tmp-")]

    # A shard's data rewritten without its marker (a run killed between data and marker): the
    # dataset leaves it out, and the next run redoes that shard only.
    before = _markers(f"{run_dir}/copy")
    fs.rm_file(f"{run_dir.split('://', 1)[1]}/copy/_stats/part-00003.json")
    fs.pipe_file(f"{run_dir.split('://', 1)[1]}/copy/part-00003.parquet", _parquet_bytes(pa.table({"id": ["junk"]})))
    assert [p.rsplit("/", 1)[-1] for p in list_shards(f"{run_dir}/copy")] == [
        f"part-{i:05d}.parquet" for i in range(N_SHARDS) if i != 3]
    others = {stage: _markers(f"{run_dir}/{stage}") for stage in ("short", "dedup")}

    _run_in_process(pipeline, run_dir, s3_client)
    after = _markers(f"{run_dir}/copy")
    assert after.keys() == before.keys()
    redone = [name for name in before if after[name] != before[name]]
    assert redone == ["part-00003.json"]
    assert {stage: _markers(f"{run_dir}/{stage}") for stage in ("short", "dedup")} == others
    _assert_same_as_reference(run_dir, reference_run)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_run_killed_mid_stage_on_s3_resumes_and_redoes_only_unfinished_shards(
        local_input: Path, reference_run: Path, s3_env: dict[str, str], s3_client: Client, tmp_path: Path) -> None:
    base = _upload_input(local_input)
    run_dir = f"{base}/run"
    pipeline = _pipeline(tmp_path, f"{base}/in", copy_seconds=0.6)
    proc = subprocess.Popen(_command(pipeline, run_dir), cwd=tmp_path, env=s3_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_markers(f"{run_dir}/copy")) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never committed a shard"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = _markers(f"{run_dir}/copy")
    assert 2 <= len(done) < N_SHARDS

    _run_in_process(pipeline, run_dir, s3_client)
    after = _markers(f"{run_dir}/copy")
    assert len(after) == N_SHARDS
    assert all(after[name] == record for name, record in done.items())  # finished shards were not redone
    _assert_same_as_reference(run_dir, reference_run)


def test_uncommitted_objects_are_not_part_of_a_dataset(s3_env: dict[str, str]) -> None:
    base = f"s3://{_new_bucket()}/stage"
    for i in range(3):
        writer = ShardWriter(f"{base}/part-{i:05d}.parquet")
        writer.write(pa.table({"id": [str(i)]}))
        writer.commit()
    # No markers at all: a dataset from elsewhere, every shard counts.
    assert len(list_shards(base)) == 3
    write_json_atomic(f"{base}/_stats/part-00000.json", {"fingerprint": "a"})
    write_json_atomic(f"{base}/_stats/part-00002.json", {"fingerprint": "c"})
    assert [p.rsplit("/", 1)[-1] for p in list_shards(base)] == ["part-00000.parquet", "part-00002.parquet"]
    assert len(list_shards(base, committed_only=False)) == 3
    assert read_json(f"{base}/_stats/part-00002.json") == {"fingerprint": "c"}
    assert read_json(f"{base}/_stats/part-00001.json") is None


# -- transient errors ----------------------------------------------------------------------------


class FlakyFileSystem(MemoryFileSystem):
    """An in-memory object store whose every call fails once per path with a reset connection.

    Reading a file fails once too, in the middle of the file's data.
    """

    protocol = "flaky"
    store: dict[str, Any] = {}
    pseudo_dirs = [""]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed: set[tuple[str, str]] = set()

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        return super()._strip_protocol(str(path).removeprefix("flaky://"))

    def _fail_once(self, method: str, path: str) -> None:
        key = (method, self._strip_protocol(path))
        if key not in self.failed:
            self.failed.add(key)
            raise ConnectionResetError(errno.ECONNRESET, f"injected reset: {method} {path}")

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self._fail_once("info", path)
        return super().info(path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        self._fail_once("ls", path)
        return super().ls(path, detail=detail, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        self._fail_once("cat_file", path)
        return super().cat_file(path, start=start, end=end, **kwargs)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        self._fail_once("pipe_file", path)
        super().pipe_file(path, value, mode=mode, **kwargs)

    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        self._fail_once("put_file", rpath)
        super().put_file(lpath, rpath, *args, **kwargs)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode == "rb":
            self._fail_once("open-rb", path)
        handle = super()._open(path, mode=mode, **kwargs)
        if mode == "rb" and ("read", self._strip_protocol(path)) not in self.failed:
            self.failed.add(("read", self._strip_protocol(path)))
            return _BreaksOnceFile(handle.getvalue())
        return handle


class _BreaksOnceFile(io.BytesIO):
    """A file whose first read past the Parquet header (into the row data) fails."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0 and not getattr(self, "broke", False):
            self.broke = True
            raise ConnectionResetError(errno.ECONNRESET, "injected reset in the middle of a read")
        return super().read(size)


@pytest.fixture
def flaky() -> Iterator[FlakyFileSystem]:
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    fs = fsspec.filesystem("flaky")
    fs.store.clear()
    fs.failed.clear()
    yield fs
    fs.store.clear()


def test_a_shard_task_on_a_flaky_store_retries_and_writes_the_right_output(
        flaky: FlakyFileSystem, caplog: pytest.LogCaptureFixture) -> None:
    table = pa.table({"id": [f"r{i}" for i in range(200)], "text": [("word " * (i % 7)) for i in range(200)]})
    MemoryFileSystem.pipe_file(flaky, "/in/part-00000.parquet", _parquet_bytes(table))
    ref = StageRef("short", "test.drop_short", {"min_chars": 12}, "cfg", (str(TEST_STAGES),), ".")
    task = ShardTask("short", 0, ("flaky:///in/part-00000.parquet",), "fp-1", "flaky:///run/short/part-00000.parquet",
                     "flaky:///run/short/_stats/part-00000.json", "flaky:///run/short/_rejected/part-00000.parquet")
    with caplog.at_level(logging.WARNING, logger="curator.storage"):
        record = run_map_shard(ref, task, 64)

    kept = [t for t in table.to_pylist() if len(t["text"]) >= 12]
    out = pq.read_table(io.BytesIO(flaky.store["/run/short/part-00000.parquet"].getvalue()))
    rejected = pq.read_table(io.BytesIO(flaky.store["/run/short/_rejected/part-00000.parquet"].getvalue()))
    assert out.select(["id", "text"]).to_pylist() == kept
    assert rejected.num_rows == table.num_rows - len(kept)
    assert record["rows"] == len(kept)
    assert read_json(task.stats_path)["fingerprint"] == "fp-1"
    retried = {key[0] for key in flaky.failed}
    assert {"put_file", "pipe_file", "read", "open-rb"} <= retried
    warnings = [r.getMessage() for r in caplog.records if "transient error" in r.getMessage()]
    assert any("put_file" in w and "part-00000.parquet" in w for w in warnings)
    assert any(w.startswith("read flaky:///in/part-00000.parquet") for w in warnings)


def test_retries_are_bounded_and_permanent_errors_are_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    calls: list[int] = []

    def always_reset() -> None:
        calls.append(1)
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with caplog.at_level(logging.WARNING, logger="curator.storage"), pytest.raises(ConnectionResetError):
        retry_call(always_reset, what="s3 info bucket/x", policy=policy)
    assert len(calls) == 3
    assert [r.levelname for r in caplog.records if "s3 info bucket/x" in r.getMessage()] == [
        "WARNING", "WARNING", "ERROR"]

    calls.clear()

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("bucket/x")

    with pytest.raises(FileNotFoundError):
        retry_call(missing, what="s3 info bucket/x", policy=policy)
    assert len(calls) == 1


def test_transient_errors_are_told_from_permanent_ones() -> None:
    assert is_transient(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert is_transient(TimeoutError("read timed out"))
    assert is_transient(OSError(errno.EBUSY, "SlowDown"))  # how s3fs reports a 503
    wrapped = RuntimeError("while reading")
    wrapped.__cause__ = ConnectionAbortedError()
    assert is_transient(wrapped)
    assert not is_transient(FileNotFoundError("s3://bucket/nothing"))
    try:  # how fsspec's HTTP filesystem reports a 503 (and a 404)
        raise FileNotFoundError("http://host/x") from OSError(errno.ETIMEDOUT, "timed out")
    except FileNotFoundError as exc:
        assert is_transient(exc)
    try:
        raise FileNotFoundError("http://host/x") from ValueError("404")
    except FileNotFoundError as exc:
        assert not is_transient(exc)
    assert not is_transient(PermissionError(errno.EACCES, "AccessDenied"))
    assert not is_transient(ValueError("bad argument"))


def test_local_paths_keep_the_plain_filesystem(tmp_path: Path) -> None:
    fs, _ = filesystem(str(tmp_path))
    assert not isinstance(fs, RetryingFileSystem)
    assert isinstance(filesystem("memory://bucket/x")[0], RetryingFileSystem)


def test_a_read_resumes_at_the_first_row_not_yet_yielded(tmp_path: Path) -> None:
    table = pa.table({"n": list(range(1000))})
    path = tmp_path / "part-00000.parquet"
    pq.write_table(table, path, row_group_size=300)
    fs, fs_path = filesystem(str(path))
    for start in (0, 1, 299, 300, 301, 650, 999, 1000):
        rows = [n for t in _read_from(fs, fs_path, start, 128, None, 1 << 30) for n in t.column("n").to_pylist()]
        assert rows == list(range(start, 1000)), start
    assert pa.concat_tables(read_batches(str(path), 128)).equals(table)


def test_copy_file_between_stores_and_disk(s3_env: dict[str, str], tmp_path: Path) -> None:
    data = _parquet_bytes(pa.table({"id": ["a", "b"]}))
    (tmp_path / "src.parquet").write_bytes(data)
    bucket = f"s3://{_new_bucket()}"
    copy_file(str(tmp_path / "src.parquet"), f"{bucket}/a/part-00000.parquet")  # disk to store
    copy_file(f"{bucket}/a/part-00000.parquet", f"{bucket}/b/part-00000.parquet")  # within the store
    copy_file(f"{bucket}/b/part-00000.parquet", str(tmp_path / "out" / "part-00000.parquet"))  # store to disk
    assert (tmp_path / "out" / "part-00000.parquet").read_bytes() == data
    assert filesystem(bucket)[0].cat_file(f"{bucket[5:]}/b/part-00000.parquet") == data
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part-00000.parquet"]  # no temp file left


class _FlakyHttpHandler(http.server.BaseHTTPRequestHandler):
    """Serves one body at any path; answers 503 to the first two requests for each path."""

    body = b"hello from a flaky server\n" * 100
    seen: dict[str, int] = {}

    def _reply(self, with_body: bool) -> None:
        self.seen[self.path] = self.seen.get(self.path, 0) + 1
        if self.seen[self.path] <= 2:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._reply(with_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(with_body=True)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_input_is_retried_on_503(caplog: pytest.LogCaptureFixture) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHttpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/data.txt"
    try:
        with caplog.at_level(logging.WARNING, logger="curator.storage"):
            assert expand_paths([url], ".") == [url]
            assert file_fingerprint(url)
            fs, path = filesystem(url.replace("data.txt", "other.txt"))
            assert fs.cat_file(path) == _FlakyHttpHandler.body
    finally:
        server.shutdown()
        server.server_close()
    retried = [r.getMessage() for r in caplog.records if "transient error" in r.getMessage()]
    assert any("data.txt" in m for m in retried) and any("other.txt" in m for m in retried)
