"""The text.langid stage with the real lid.176.ftz (fetched by scripts/fetch_lid_model.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from distributed import Client

from stages.langid import LanguageId, prepare_text
from tests.conftest import REPO, load_script

@pytest.fixture(scope="session")
def stage(lid_model: Path) -> LanguageId:
    """A set-up stage that keeps every language (min_score 0.3)."""
    s = LanguageId(model_path=str(lid_model), allowed=[])
    s.setup()
    return s


@pytest.fixture(scope="session")
def hplt_rows(shared_data: Path) -> list[dict[str, Any]]:
    """HPLT v2's annotated excerpts."""
    return load_script("benchmarks/langid_accuracy.py").load_hplt(
        shared_data / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz")


def _table(texts: list[str | None]) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": pa.array(texts, pa.string())})


SENTENCES = {
    "en": "The committee will publish its final report on water quality next spring.",
    "de": "Der Ausschuss wird seinen Abschlussbericht zur Wasserqualität im nächsten Frühjahr veröffentlichen.",
    "fr": "Le comité publiera son rapport final sur la qualité de l'eau au printemps prochain.",
    "zh": "委员会将于明年春天发布关于水质的最终报告。",
    "ru": "Комитет опубликует свой окончательный доклад о качестве воды следующей весной.",
}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_identifies_language(stage: LanguageId, lang: str) -> None:
    # Two lines: fastText stops at a newline, so the second line only counts if it was replaced.
    text = SENTENCES[lang] + "\n" + SENTENCES[lang]
    out = stage.process(_table([text]))
    assert out.column("lang").to_pylist() == [lang]
    assert out.column("lang_score")[0].as_py() > 0.8
    assert out.column("drop_reason").to_pylist() == [None]


def _mixed_texts(rows: list[dict[str, Any]]) -> list[str | None]:
    """50 texts: 2 excerpts of each of HPLT's 22 languages (most multi-line) and 6 edge cases."""
    by_lang: dict[str, list[str]] = {}
    for row in rows:
        if row["text"].strip() and len(by_lang.setdefault(row["lang"], [])) < 2:
            by_lang[row["lang"]].append(row["text"])
    texts: list[str | None] = [t for lang in sorted(by_lang) for t in by_lang[lang]]
    texts += [None, "", " \n\t ", "12345 !!!", "Bonjour\nHallo\nHello\nHola\nCiao",
              "Dies ist ein langer Text. " * 1_000]  # longer than max_chars
    assert len(texts) == 50
    return texts


def test_batch_equals_one_at_a_time(stage: LanguageId, hplt_rows: list[dict[str, Any]]) -> None:
    texts = _mixed_texts(hplt_rows)
    batch = stage.process(_table(texts))
    langs = batch.column("lang").to_pylist()
    scores = batch.column("lang_score").to_numpy()
    assert len(set(langs)) > 20 and sum("\n" in (t or "") for t in texts) > 10
    model = stage._model
    for i, text in enumerate(texts):
        line = prepare_text(text, stage.max_chars)
        if line:
            # The single-string path of fastText's own Python API, one text at a time.
            labels, probs = model.predict(line, k=1)
            expected = (labels[0].removeprefix("__label__"), np.float32(min(probs[0], 1.0)))
        else:
            expected = ("", np.float32(0.0))
        assert (langs[i], scores[i]) == expected, f"text {i}: {text!r:.80}"
        single = stage.process(_table([text]))
        assert single.column("lang").to_pylist() == [langs[i]]
        assert single.column("lang_score").to_numpy()[0] == scores[i]


def test_drops_with_reasons(lid_model: Path) -> None:
    stage = LanguageId(model_path=str(lid_model), allowed=["en", "de"], min_score=0.5)
    texts = [SENTENCES["en"], SENTENCES["de"], SENTENCES["fr"], "12345 !!!", None, "  "]
    result = stage.run_batch(_table(texts))
    assert result.kept.column("id").to_pylist() == ["r0", "r1"]
    assert result.kept.column("lang").to_pylist() == ["en", "de"]
    assert result.kept.schema.field("lang").type == pa.string()
    assert result.kept.schema.field("lang_score").type == pa.float32()
    assert result.rejected is not None
    rejected = {r["id"]: r for r in result.rejected.to_pylist()}
    assert rejected["r2"]["drop_reason"] == "lang_not_allowed" and rejected["r2"]["lang"] == "fr"
    assert rejected["r3"]["drop_reason"] == "lang_low_score" and rejected["r3"]["lang_score"] < 0.5
    for empty in ("r4", "r5"):
        assert (rejected[empty]["lang"], rejected[empty]["lang_score"], rejected[empty]["drop_reason"]) == (
            "", 0.0, "lang_low_score")
    assert dict(result.stats.drops) == {"lang_not_allowed": 1, "lang_low_score": 3}


def test_empty_allowed_keeps_every_language_but_not_empty_text(lid_model: Path) -> None:
    stage = LanguageId(model_path=str(lid_model), allowed=[], min_score=0.0)
    result = stage.run_batch(_table([*SENTENCES.values(), ""]))
    assert result.kept.column("lang").to_pylist() == list(SENTENCES)
    assert result.rejected is not None and result.rejected.column("drop_reason").to_pylist() == ["lang_low_score"]


def test_other_column(lid_model: Path) -> None:
    stage = LanguageId(model_path=str(lid_model), column="body_text", allowed=["ru"])
    kept = stage(pa.table({"body_text": [SENTENCES["ru"], SENTENCES["en"]]}))
    assert kept.column("lang").to_pylist() == ["ru"]


def test_missing_model_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default relative path now points into tmp_path
    stage = LanguageId()
    with pytest.raises(FileNotFoundError) as info:
        stage.setup()
    message = str(info.value)
    assert str(tmp_path / "models" / "lid.176.ftz") in message
    assert "python scripts/fetch_lid_model.py" in message and "text.langid" in message


def test_pickles_without_model(stage: LanguageId) -> None:
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._model is None and stage._model is not None
    assert copy.model_dump() == stage.model_dump()
    texts = list(SENTENCES.values())
    assert copy.process(_table(texts)).column("lang").to_pylist() == list(SENTENCES)


def test_runs_on_a_dask_worker(stage: LanguageId, dask_client: Client) -> None:
    table = _table(list(SENTENCES.values()))
    kept = dask_client.submit(lambda s, t: s(t), stage, table).result()
    assert kept.column("lang").to_pylist() == list(SENTENCES)


def test_module_import_does_not_load_fasttext() -> None:
    code = "import sys, stages.langid; assert 'fasttext' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_fetch_is_idempotent(fetch_module: ModuleType, lid_model: Path) -> None:
    before = lid_model.stat().st_mtime_ns
    assert fetch_module.fetch_lid_model(lid_model) == lid_model
    assert lid_model.stat().st_mtime_ns == before


def test_fetch_hash_mismatch_fails(fetch_module: ModuleType, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fetch_module, "MODEL_SHA256", "0" * 64)
    out = tmp_path / "lid.176.ftz"
    assert fetch_module.main(["--out", str(out)]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_hplt_accuracy(stage: LanguageId, hplt_rows: list[dict[str, Any]]) -> None:
    """Conservative bounds under benchmarks/langid_accuracy.py's figures (96.4 %, 95.1 %, 73 %)."""
    bench = load_script("benchmarks/langid_accuracy.py")
    acc = bench.evaluate(stage, hplt_rows)
    assert acc.overall >= 0.93
    assert acc.macro >= 0.90
    for lang in ("eng_Latn", "deu_Latn", "rus_Cyrl", "zho_Hans", "spa_Latn", "ara_Arab", "hin_Deva"):
        counts = acc.per_lang[lang]
        assert counts.matches / counts.rows >= 0.97, lang
    assert acc.wrong_rows == 101 and acc.wrong_flagged / acc.wrong_rows >= 0.6
