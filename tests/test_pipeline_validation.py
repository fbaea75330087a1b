"""Pipeline files: every mistake is one line naming file, line and key; exit code 2; nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from curator.pipeline import PipelineError, load_pipeline
from tests.conftest import cli_env, curator_cmd, write_dataset

GOOD = """\
name: v
run_dir: run
inputs:
  docs: {dataset: data}
stages:
  - id: copy
    uses: util.identity
    from: docs
  - id: dedup
    uses: dedup.exact
    from: copy
    with:
      normalize: whitespace
outputs:
  final: {from: dedup, path: out}
"""


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "data", [[{"id": "a", "text": "x"}]])
    return tmp_path


def _problems(workdir: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    path = workdir / "p.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError) as info:
        load_pipeline(str(path), overrides or [])
    return info.value.problems


def test_good_file_loads(workdir: Path) -> None:
    (workdir / "p.yaml").write_text(GOOD)
    pipeline = load_pipeline(str(workdir / "p.yaml"))
    assert [s.id for s in pipeline.stages] == ["copy", "dedup"]
    assert pipeline.outputs[0].path == str(workdir / "out")


# Each case: (what is wrong, the edited file, expected single problem line after the path).
CASES = [
    ("unknown stage", GOOD.replace("uses: util.identity", "uses: util.identiy"),
     ":7: stages.0.uses: unknown stage 'util.identiy' (did you mean util.identity?)"),
    ("unknown parameter", GOOD.replace("normalize: whitespace", "normalise: whitespace"),
     ":13: stages.1.with.normalise: unknown parameter for dedup.exact"),
    ("wrong type", GOOD.replace("normalize: whitespace", "buckets: many"),
     ":13: stages.1.with.buckets: Input should be a valid integer"),
    ("bad enum value", GOOD.replace("normalize: whitespace", "normalize: spaces"),
     ":13: stages.1.with.normalize: Input should be 'none', 'whitespace' or 'lower_whitespace'"),
    ("missing from", GOOD.replace("    from: copy\n", ""),
     ":9: stages.1: missing 'from'"),
    ("from names nothing", GOOD.replace("from: copy", "from: cpy"),
     ":11: stages.1.from: 'cpy' is neither an input nor a stage id"),
    ("cycle", GOOD.replace("from: docs", "from: dedup"),
     ":8: stages.0.from: cycle: copy -> dedup -> copy"),
    ("missing input path", GOOD.replace("dataset: data", "dataset: nowhere"),
     ":4: inputs.docs.dataset: input path not found: "),
    ("unwritable output", GOOD.replace("path: out", "path: data/part-00000.parquet/out"),
     ":15: outputs.final.path: cannot write output directory "),
    ("unknown top-level key", GOOD.replace("name: v", "nmae: v"),
     ":1: nmae: unknown key"),
    ("yaml syntax", GOOD.replace("stages:", "stages: [") ,
     ": (yaml): "),
]


@pytest.mark.parametrize("label,text,expected", CASES, ids=[c[0] for c in CASES])
def test_each_mistake_is_one_line_with_file_line_key(workdir: Path, label: str, text: str, expected: str) -> None:
    problems = _problems(workdir, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(workdir / "p.yaml")), problems[0]
    assert expected in problems[0], problems[0]
    assert "\n" not in problems[0]


def test_set_override_is_validated_and_named(workdir: Path) -> None:
    problems = _problems(workdir, GOOD, ["stages.dedup.with.buckets=-3"])
    assert problems == ["--set: stages.1.with.buckets: Input should be greater than or equal to 1 (got -3)"]
    problems = _problems(workdir, GOOD, ["stages.nosuch.with.x=1"])
    assert problems == ["--set stages.nosuch.with.x: no item 'nosuch' in stages"]


def test_set_override_applies(workdir: Path) -> None:
    (workdir / "p.yaml").write_text(GOOD)
    pipeline = load_pipeline(str(workdir / "p.yaml"), ["stages.dedup.with.normalize=none", "stages.1.batch_rows=7"])
    assert pipeline.stage("dedup").stage.normalize == "none"
    assert pipeline.stage("dedup").batch_rows == 7


def test_column_requirements_checked(workdir: Path) -> None:
    write_dataset(workdir / "data", [[{"id": "a", "text": "x"}]])
    text = GOOD.replace("uses: dedup.exact", "uses: text.html_plain").replace(
        "    with:\n      normalize: whitespace\n", "")
    problems = _problems(workdir, text)
    assert len(problems) == 1
    assert "text.html_plain needs column(s) ['body', 'content_type']" in problems[0]


@pytest.mark.parametrize("label,text,expected", [CASES[0], CASES[6], CASES[8]], ids=["unknown", "cycle", "unwritable"])
def test_cli_exits_2_and_writes_nothing(workdir: Path, label: str, text: str, expected: str) -> None:
    path = workdir / "p.yaml"
    path.write_text(text)
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    for command in ("validate", "run"):
        proc = subprocess.run([*curator_cmd(), command, str(path)], capture_output=True, text=True,
                              env=cli_env(), cwd=workdir, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], proc.stderr
    after = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert after == before
    assert not (workdir / "run").exists()


def test_path_parameters_resolve_against_the_pipeline_file(workdir: Path) -> None:
    (workdir / "sub").mkdir()
    text = GOOD.replace("dataset: data", "dataset: ../data").replace(
        "  - id: copy\n    uses: util.identity\n    from: docs\n",
        "  - id: copy\n    uses: text.langid\n    from: docs\n    with: {model_path: ../models/lid.ftz}\n")
    (workdir / "sub" / "p.yaml").write_text(text)
    pipeline = load_pipeline(str(workdir / "sub" / "p.yaml"))
    assert pipeline.stage("copy").stage.model_path == str(workdir / "models" / "lid.ftz")
