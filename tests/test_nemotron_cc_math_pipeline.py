"""pipelines/nemotron_cc_math.yaml end to end on the sample WARC, on a 2-worker cluster.

The cleanup LLM is a real HTTP server on 127.0.0.1 that answers with the page it was given
(boilerplate lines it recognises removed), so what reaches the classifier and the subsets is
known; the embedded 270M model's own cleanup is exercised in tests/test_math_cleanup.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from curator.pipeline import load_pipeline
from curator.progress import ProgressBoard
from curator.report import write_report
from curator.runner import PipelineRunner
from tests.conftest import REPO, read_dataset
from tests.helpers.fake_llm_server import FakeLLMServer

STAGES = ("warc", "decode", "math_detect", "extract", "langid", "dedup", "cleanup", "fuzzy_dedup", "decontaminate",
          "finemath", "math_3plus", "math_4plus")
MATH_URLS = {"https://mathnotes.example.org/algebra/deriving-the-quadratic-formula",
             "https://numbers.example.net/posts/geometric-series",
             "https://geometry-workshop.example.com/proofs/pythagoras-rearrangement"}


def _cleaned(prompt: str) -> str:
    """The page between the prompt's markers, without the site's navigation and footer lines."""
    page = prompt.split("--- PAGE START ---", 1)[1].split("--- PAGE END ---", 1)[0]
    return "\n".join(line for line in page.strip().splitlines()
                     if not any(word in line for word in ("Contact", "Exercises", "Puzzles", "Archive")))


def test_sample_warc_math_pages_through_the_math_pipeline(tmp_path: Path, dask_client, lid_model: Path,
                                                         gguf_model: Path, quality_models: Path) -> None:
    with FakeLLMServer(answer=_cleaned) as server:
        llm = json.dumps({"backend": "openai", "base_url": server.url, "model": "cleanup-model", "max_retries": 0})
        pipeline = load_pipeline(str(REPO / "pipelines" / "nemotron_cc_math.yaml"), run_dir=str(tmp_path / "run"),
                                 overrides=[f"stages.cleanup.with.llm={llm}",
                                            f"stages.cleanup.with.tokenizer_path={gguf_model}",
                                            "stages.cleanup.with.max_tokens=2048"])
        result = PipelineRunner(pipeline, dask_client, ProgressBoard(interactive=False)).run()
        assert result.ok, result.failures
    run = tmp_path / "run"
    totals = {s: json.loads((run / s / "_manifest.json").read_text())["totals"] for s in STAGES}
    for stage, t in totals.items():  # every document is out, or dropped under a reason
        assert t["docs_in"] == t["docs_out"] + sum(t["drops"].values()), stage
    for upstream, downstream in zip(STAGES, STAGES[1:]):
        assert totals[upstream]["docs_out"] == totals[downstream]["docs_in"]
    # The three math pages of the sample and nothing else.
    assert totals["math_detect"]["drops"] == {"not_math": 12}
    detected = read_dataset(run / "math_detect")
    assert set(detected.column("url").to_pylist()) == MATH_URLS
    documents = read_dataset(run / "outputs" / "documents").to_pylist()
    assert {d["url"] for d in documents} == MATH_URLS
    by_url = {d["url"].split("/")[2]: d for d in documents}
    quadratic = by_url["mathnotes.example.org"]
    # MathJax v2 scripts, \( \) and $$ $$ all come out as $ / $$ TeX, through lynx and the cleanup.
    assert json.loads(quadratic["math_origins"]) == {"script_tex": 2, "text_delimiters": 33}
    assert "$$\\left(x + \\frac{b}{2a}\\right)^2 = \\frac{b^2 - 4ac}{4a^2}.$$" in quadratic["text"]
    assert "\\(" not in quadratic["text"] and "Exercises" not in quadratic["text"]
    assert "Exercises" in quadratic["lynx_text"]
    assert json.loads(by_url["geometry-workshop.example.com"]["math_origins"]) == {"mathml_converted": 16}
    assert "$$a^2+b^2=c^2$$" in by_url["geometry-workshop.example.com"]["text"]
    # Scores 0-5 and nested subsets that agree with them.
    scores = {d["url"]: d["finemath_int"] for d in documents}
    assert all(0 <= s <= 5 for s in scores.values())
    three = {r["url"] for r in read_dataset(run / "outputs" / "math_3plus").to_pylist()}
    four = {r["url"] for r in read_dataset(run / "outputs" / "math_4plus").to_pylist()}
    assert three == {u for u, s in scores.items() if s >= 3} and four == {u for u, s in scores.items() if s >= 4}
    assert three, scores  # worked derivations: the stand-in classifier puts them in the 3+ set
    page = Path(write_report(str(run))).read_text()
    for stage in STAGES:
        assert f"<td>{stage}</td>" in page
