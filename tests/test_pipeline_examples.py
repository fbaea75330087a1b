"""The shipped LLM pipeline files: the endpoint examples (vLLM server, NIM) run against an
OpenAI-compatible server on 127.0.0.1, and nemotron_cc.yaml's synthetic branch is wired as documented."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curator.llm import LLMClient
from curator.pipeline import load_pipeline
from stages.rephrase_prompts import TASK_NAMES
from tests.conftest import REPO, write_dataset
from tests.helpers.fake_llm_server import FakeLLMServer
from tests.test_rephrase import fake_answer

TEXT = "\n".join(f"The {word} harbour of Elmsport shipped {i} tons of salt in the year {1800 + i}."
                 for i, word in enumerate(["old", "new", "north", "south"]))


@pytest.mark.parametrize("name", ["vllm.yaml", "nim.yaml"])
def test_endpoint_example_runs_against_an_openai_compatible_server(
        name: str, tmp_path: Path, gguf_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"id": f"{label}1", "text": TEXT, "quality_label": label} for label in ("low", "high", "medium")]
    batch = pa.Table.from_pylist(rows)
    write_dataset(tmp_path / "in", [[{"id": r["id"], "text": r["text"]} for r in rows]])
    monkeypatch.setenv("NVIDIA_API_KEY", "nvapi-test-secret")
    with FakeLLMServer(answer=fake_answer) as server:
        pipeline = load_pipeline(str(REPO / "pipelines" / "endpoints" / name), run_dir=str(tmp_path / "run"),
                                 overrides=[f"inputs.documents.dataset={tmp_path / 'in'}",
                                            f"stages.synth.with.tokenizer_path={gguf_model}",
                                            f"stages.synth.with.llm.base_url={server.url}/v1"])
        stage = pipeline.stages[0].stage
        assert stage.llm.endpoint == "chat" and stage.temperature == 0.5 and stage.top_p == 0.9
        out = stage.rephrase(batch, LLMClient(stage.llm.build_backend(), concurrency=stage.llm.concurrency))
        payloads = server.payloads
        headers = server.authorization_headers
    # The recipe's routing: wikipedia for low, the four others for high, nothing for medium.
    tasks = {(r["source_id"], r["task"]) for r in out.to_pylist()}
    assert tasks == {("low1", "wikipedia")} | {("high1", t) for t in TASK_NAMES if t != "wikipedia"}
    assert out.column("drop_reason").null_count == out.num_rows  # every answer kept
    assert all(p["model"] == stage.llm.model and "messages" in p for p in payloads)
    expected = "Bearer nvapi-test-secret" if name == "nim.yaml" else None
    assert headers and all(h == expected for h in headers)


def test_nemotron_cc_synthetic_branch_follows_the_recipe(tmp_path: Path, lid_model: Path, gguf_model: Path,
                                                          quality_models: Path) -> None:
    pipeline = load_pipeline(str(REPO / "pipelines" / "nemotron_cc.yaml"), run_dir=str(tmp_path / "run"),
                             overrides=[f"stages.langid.with.model_path={lid_model}"])
    synth = next(s for s in pipeline.stages if s.id == "synth")
    stage = synth.stage
    assert synth.upstream == ["perplexity_filter"] and synth.keep_rejected
    assert stage.llm.backend == "llama_cpp" and stage.llm.model_path == str(gguf_model)
    assert (stage.temperature, stage.top_p) == (0.5, 0.9)
    assert {t: stage.budget(t) for t in TASK_NAMES} == {"wikipedia": 512, "diverse_qa": 1000, "distill": 2000,
                                                         "extract_knowledge": 1400, "knowledge_list": 1000}
    assert stage.tasks_for("low") == ["wikipedia"] and stage.tasks_for("medium") == []
    assert stage.tasks_for("high") == [t for t in TASK_NAMES if t != "wikipedia"]
    assert stage.tasks_for(None) == []
    assert [(o.name, o.source) for o in pipeline.outputs] == [("documents", "perplexity_filter"),
                                                              ("synthetic", "synth")]
