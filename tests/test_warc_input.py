"""The io.warc stage through the runner: real WARCs, broken ones, listings, and HTTP inputs."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest

from curator.pipeline import load_pipeline
from curator.plan import build_plan
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from tests.conftest import read_dataset


def _run(tmp_path: Path, inputs_yaml: str, client, input_limit: int | None = None):
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: w
run_dir: run
inputs:
{inputs_yaml}
stages:
  - {{id: warc, uses: io.warc, from: crawl, keep_rejected: true}}
""")
    pipeline = load_pipeline(str(path), input_limit=input_limit)
    result = PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()
    return result, pipeline


def test_every_shared_warc_is_read_or_reported(tmp_path: Path, shared_data: Path, dask_client) -> None:
    warc_dir = shared_data / "warc"
    files = sorted(str(p) for p in warc_dir.rglob("*") if p.is_file() and "LICENSE" not in p.name)
    listing = "\n".join(f"      - {f}" for f in files)
    result, pipeline = _run(tmp_path, f"  crawl:\n    files:\n{listing}", dask_client)
    assert result.ok, result.failures  # nothing crashes a worker or fails a shard
    shards = {pipeline.inputs["crawl"].files[t.index].path: t for t in build_plan(pipeline)["warc"].shards}
    stats = {path: json.loads(Path(task.stats_path).read_text()) for path, task in shards.items()}

    main = stats[str(warc_dir / "warcfile.warc.gz")]
    assert main["rows"] == 16 and main["stats"]["drops"] == {}
    clipped = stats[str(warc_dir / "clipped.warc.gz")]
    assert clipped["stats"]["drops"] == {"warc_truncated": 1}
    edge = warc_dir / "edge-cases"
    # Declared chunked but not chunked: read leniently as the raw body, like warcio does.
    assert stats[str(edge / "example-bad-non-chunked.warc.gz")]["rows"] == 1
    # Split across gzip members; WARC length and digest agree on the body, so it is kept as read.
    assert stats[str(edge / "example-wrong-chunks.warc.gz")]["rows"] == 1
    assert stats[str(edge / "example.arc.gz")]["stats"]["drops"] == {"warc_not_a_warc": 1}
    # Every dropped record is in the side dataset with its file and offset.
    rejected = read_dataset(tmp_path / "run" / "warc" / "_rejected")
    total_drops = sum(sum(s["stats"]["drops"].values()) for s in stats.values())
    assert rejected.num_rows == total_drops
    assert all("@" in s for s in rejected.column("source").to_pylist())
    out = read_dataset(tmp_path / "run" / "warc")
    assert len(set(out.column("id").to_pylist())) == out.num_rows
    assert pc.all(pc.greater(pc.binary_length(out.column("body")), 0)).as_py()


def test_listing_with_limit(tmp_path: Path, shared_data: Path, dask_client) -> None:
    warc_dir = shared_data / "warc"
    lines = ["warcfile.warc.gz", "whirlwind.warc.gz", "clipped.warc.gz"]
    (tmp_path / "warc.paths.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    result, pipeline = _run(
        tmp_path, f"  crawl: {{listing: warc.paths.gz, prefix: '{warc_dir}/'}}", dask_client, input_limit=2)
    assert result.ok, result.failures
    assert [Path(f.path).name for f in pipeline.inputs["crawl"].files] == lines[:2]
    out = read_dataset(tmp_path / "run" / "warc")
    assert out.num_rows == 17  # 16 + the whirlwind page


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server on 127.0.0.1 that honours Range requests, like an object store."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):  # noqa: ANN201 - http.server's own signature
        range_header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not range_header or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start_s, end_s = range_header.removeprefix("bytes=").split("-")
        start = int(start_s)
        end = min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
        body = data[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(body)


@pytest.fixture()
def http_server(shared_data: Path) -> Iterator[str]:
    handler = lambda *a, **kw: _RangeHandler(*a, directory=str(shared_data / "warc"), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_input_equals_local_read(tmp_path: Path, shared_data: Path, http_server: str, dask_client) -> None:
    (tmp_path / "http").mkdir()
    result, _ = _run(tmp_path / "http", f"  crawl: {{files: '{http_server}/warcfile.warc.gz'}}", dask_client)
    assert result.ok, result.failures
    remote = read_dataset(tmp_path / "http" / "run" / "warc")
    (tmp_path / "local").mkdir()
    result, _ = _run(tmp_path / "local", f"  crawl: {{files: '{shared_data / 'warc' / 'warcfile.warc.gz'}'}}",
                     dask_client)
    local = read_dataset(tmp_path / "local" / "run" / "warc")
    assert remote.num_rows == 16
    assert remote.drop_columns(["source"]).equals(local.drop_columns(["source"]))
    assert remote.column("source")[0].as_py().startswith(http_server)
