"""Hostile pages through pipelines/nemotron_cc.yaml: the run completes and every record is counted.

50 MB of HTML, nesting 10,000 levels deep, invalid bytes, an empty body, a gzip bomb declared as
text/html, plus every file of ../shared/data/warc (truncated and malformed ones included).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from stages.warc_writer import WarcWriter
from tests.conftest import REPO

STAGES = ("warc", "decode", "extract", "langid", "ftfy", "dedup", "gopher_quality",
                                 "gopher_repetition", "c4", "fineweb")


def _hostile_warc(path: Path) -> None:
    normal = ("<html><body><p>" + "This is an ordinary English paragraph with enough words to keep. " * 8
              + "</p></body></html>").encode()
    with WarcWriter(path) as warc:
        warc.write_response("https://bad.example.com/normal", normal)
        warc.write_response("https://bad.example.com/huge", b"<html><body><p>" + b"word " * 10_000_000 + b"</p></body></html>")
        warc.write_response("https://bad.example.com/deep", b"<html><body>" + b"<div>" * 10_000 + b"deep" + b"</div>" * 10_000)
        warc.write_response("https://bad.example.com/invalid", b"<html><body><p>caf\xe9 \xff\xfe\x00 " + b"mixed bytes " * 20 + b"</p></body></html>")
        warc.write_response("https://bad.example.com/empty", b"")
        warc.write_response("https://bad.example.com/bomb", gzip.compress(b"<html>" + b"\x00" * (200 << 20)),
                            extra_http_headers={"Content-Encoding": "gzip"})


def test_hostile_input_completes_and_counts_every_record(tmp_path: Path, shared_data: Path, dask_client,
                                                         lid_model: Path, gguf_model: Path, quality_models: Path) -> None:
    _hostile_warc(tmp_path / "hostile.warc.gz")
    inputs = [str(tmp_path / "hostile.warc.gz")] + sorted(
        str(p) for p in (shared_data / "warc").rglob("*") if p.is_file() and "LICENSE" not in p.name)
    pipeline = load_pipeline(str(REPO / "pipelines" / "nemotron_cc.yaml"), run_dir=str(tmp_path / "run"), overrides=[
        f"inputs.crawl.files={json.dumps(inputs)}",
        f"stages.langid.with.model_path={lid_model}",
        "stages.extract.with.time_limit_s=5",
    ])
    result = PipelineRunner(pipeline, dask_client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures
    totals = {s: json.loads((tmp_path / "run" / s / "_manifest.json").read_text())["totals"] for s in STAGES}
    for stage, t in totals.items():
        assert t["docs_in"] == t["docs_out"] + sum(t["drops"].values()), stage
    for upstream, downstream in zip(STAGES, STAGES[1:]):
        assert totals[upstream]["docs_out"] == totals[downstream]["docs_in"]
    assert totals["warc"]["drops"]["warc_body_too_large"] == 1      # the gzip bomb
    assert totals["decode"]["drops"]["empty_body"] >= 1
    # The 50 MB page and the deep page reached extraction and were kept or dropped with a reason.
    assert set(totals["extract"]["drops"]) <= {"extract_empty", "extract_timeout", "extract_error", "extract_crash"}
    hostile = json.loads((tmp_path / "run" / "warc" / "_stats" / "part-00000.json").read_text())
    assert hostile["stats"]["docs_in"] == 6
