"""Row conditions and filter stages that apply only where a condition holds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from curator.expressions import ConditionError, RowCondition
from curator.filter_stage import FilterStage
from curator.pipeline import PipelineError, load_pipeline
from tests.conftest import write_dataset

TABLE = pa.table({
    "quality_label": ["low", "medium", "high", None, "medium_low"],
    "lang": ["en", "en", "de", "en", "en"],
    "score": [0.1, 0.5, 0.9, 0.4, None],
    "text": ["a", "bb", "ccc", "dddd", "eeeee"],
})


@pytest.mark.parametrize("text,expected", [
    ("quality_label in ['low', 'medium_low', 'medium']", [True, True, False, False, True]),
    ("quality_label not in ['low']", [False, True, True, False, True]),
    ("lang == 'en' and score >= 0.4", [False, True, False, True, False]),
    ("lang != 'en' or score < 0.2", [True, False, True, False, False]),
    ("not (score > 0.45)", [True, False, False, True, False]),
    ("0.2 < score <= 0.9", [False, True, True, True, False]),
])
def test_condition_masks(text: str, expected: list[bool]) -> None:
    assert RowCondition.parse(text).mask(TABLE).to_pylist() == expected


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "score.real > 1", "len(text) > 3", "score +",
                                  "lang in [lang]"])
def test_conditions_cannot_run_code_or_be_malformed(text: str) -> None:
    with pytest.raises(ConditionError):
        RowCondition.parse(text)


class ShortText(FilterStage):
    """Drop texts shorter than min_chars."""

    name = "test.short_text"
    requires = ("text",)
    min_chars: int = 3

    def reasons(self, batch: pa.Table) -> pa.Array:
        short = pc.less(pc.utf8_length(batch.column("text")), self.min_chars)
        return pc.if_else(short, "too_short", pa.scalar(None, pa.string()))


def test_filter_applies_only_where_condition_holds() -> None:
    everywhere = ShortText()
    assert everywhere(TABLE).column("text").to_pylist() == ["ccc", "dddd", "eeeee"]
    lower_only = ShortText(condition="quality_label in ['low', 'medium_low', 'medium']")
    result = lower_only.run_batch(TABLE)
    assert result.kept.column("text").to_pylist() == ["ccc", "dddd", "eeeee"]
    assert dict(result.stats.drops) == {"too_short": 2}
    high_only = ShortText(condition="quality_label == 'high'", min_chars=5)
    assert high_only(TABLE).column("text").to_pylist() == ["a", "bb", "dddd", "eeeee"]
    assert lower_only.required_columns() == ("text", "quality_label")


def test_bad_condition_is_a_parameter_error() -> None:
    with pytest.raises(ValidationError, match="is not allowed in a condition"):
        ShortText(condition="len(text) > 2")


def test_condition_columns_are_checked_at_load(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", [[{"id": "a", "text": "x"}]])
    stages_file = tmp_path / "filters_for_test.py"
    stages_file.write_text(
        "import pyarrow as pa, pyarrow.compute as pc\n"
        "from curator.filter_stage import FilterStage\n"
        "class ShortText(FilterStage):\n"
        "    name = 'test.short_text'\n"
        "    requires = ('text',)\n"
        "    def reasons(self, batch):\n"
        "        return pa.nulls(batch.num_rows, pa.string())\n")
    (tmp_path / "p.yaml").write_text(f"""name: c
imports: [{stages_file}]
inputs:
  docs: {{dataset: data}}
stages:
  - id: f
    uses: test.short_text
    from: docs
    with:
      condition: "quality_label == 'low'"
""")
    with pytest.raises(PipelineError) as info:
        load_pipeline(str(tmp_path / "p.yaml"))
    assert info.value.problems == [
        f"{tmp_path / 'p.yaml'}:8: stages.0.from: test.short_text needs column(s) ['quality_label'], "
        "which ['docs'] do not provide"]
    (tmp_path / "p.yaml").write_text((tmp_path / "p.yaml").read_text().replace("quality_label ==", "len(text) =="))
    with pytest.raises(PipelineError) as info:
        load_pipeline(str(tmp_path / "p.yaml"))
    assert len(info.value.problems) == 1
    assert ":10: stages.0.with.condition: Value error, 'len(text)' is not allowed in a condition" in info.value.problems[0]
