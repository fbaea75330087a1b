"""dedup.decontaminate on the real benchmark test sets (../shared/data/contamination).

MATH-500 problems planted in real article prose are all found, by MATH-500 and by MATH (which
holds them verbatim), through a pipeline on a real LocalCluster; GSM-Hard (GSM8K questions with
their numbers changed) is mostly caught by GSM8K 13-grams; clean prose is never flagged.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from curator.pipeline import PipelineError, load_pipeline
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from stages.decontaminate import BenchmarkError, Decontaminate
from stages.ngram_index import normalize_words, word_hashes
from tests.conftest import SHARED_DATA, read_dataset, write_dataset

BENCH = SHARED_DATA / "contamination"
GSM_HARD_PAIRS = SHARED_DATA / "dedup" / "gsm8k-vs-gsmhard" / "pairs.jsonl.gz"
ARTICLES = SHARED_DATA / "extraction" / "aeb-dev" / "ground-truth.json"
HPLT = SHARED_DATA / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz"
ALL_BENCHMARKS = [("gsm8k", "gsm8k_test.jsonl.gz"), ("math", "math_test.jsonl.gz"),
                  ("math500", "math500_test.jsonl.gz"), ("mmlu_stem", "mmlu_stem_test.jsonl.gz"),
                  ("humaneval", "humaneval.jsonl.gz")]
GSM_HARD_MIN_CAUGHT = 0.97
"""Measured: 1,301 of 1,319 GSM-Hard questions (98.6 %) keep at least one GSM8K 13-gram."""


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _prose() -> list[str]:
    """Distinct paragraphs-of-prose documents (600-1,200 characters) from real articles."""
    out = []
    for item in json.loads(ARTICLES.read_text()).values():
        current = ""
        for para in item["articleBody"].split("\n"):
            current = f"{current}\n{para}" if current else para
            if len(current) >= 600:
                out.append(current[:1200])
                current = ""
    return sorted(set(out))


def _stage(names: list[tuple[str, str]] = ALL_BENCHMARKS, **kwargs) -> Decontaminate:
    return Decontaminate(benchmarks=[{"name": n, "path": str(BENCH / f)} for n, f in names], **kwargs)


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- normalisation


def test_compiled_word_hashes_follow_the_reference_normalisation() -> None:
    texts = ["Hello, World! x^2+3=y — “quoted” don't", None, "", "   \n\t ", "$$ -- !!",
             "Ελληνικά ΚΕΦΑΛΑΙΑ\u00a0nbsp soft\u00adhyphen zero\u200bwidth 😀 emoji CJK 漢字 tab\there",
             "İSTANBUL Straße ǅ", "  lead  trail  "]
    assert normalize_words(texts[0]) == ["hello", "world", "x23y", "quoted", "dont"]
    assert normalize_words(texts[5])[:5] == ["ελληνικά", "κεφαλαια", "nbsp", "softhyphen", "zerowidth"]
    hashes, offsets = word_hashes(pa.array(texts, pa.string()))
    assert len(offsets) == len(texts) + 1
    vocab: dict[str, int] = {}
    for i, text in enumerate(texts):
        words = normalize_words(text)
        got = hashes[offsets[i]:offsets[i + 1]].tolist()
        assert len(got) == len(words), text
        for word, h in zip(words, got):
            assert vocab.setdefault(word, h) == h  # one word, one hash
    assert len(set(vocab.values())) == len(vocab)  # distinct words, distinct hashes
    # Chunked, sliced and large_string input hash the same.
    chunked = pa.chunked_array([pa.array(texts[:3], pa.large_string()), pa.array(texts[3:], pa.large_string())])
    sliced = pa.array(["skipped words", *texts], pa.string()).slice(1)
    for same in (chunked, sliced):
        again, again_off = word_hashes(same)
        assert again.tolist() == hashes.tolist() and again_off.tolist() == offsets.tolist()


# ---------------------------------------------------------------- MATH-500 through a pipeline


def _planted_dataset(directory: Path) -> tuple[Path, list[str], list[str]]:
    """3 shards: each MATH-500 problem inside prose (ids p000..p499), and clean prose (c000..)."""
    problems = [r["problem"] for r in _jsonl(BENCH / "math500_test.jsonl.gz")]
    prose = _prose()
    rng = random.Random(7)
    rows = []
    for i, problem in enumerate(problems):
        before, after = rng.sample(prose, 2)
        rows.append({"id": f"p{i:03d}", "text": f"{before[:500]}\n\nExercise. {problem}\n\n{after[:400]}"})
    clean = [{"id": f"c{j:03d}", "text": text} for j, text in enumerate(prose)]
    rows += clean
    rng.shuffle(rows)
    shards = [rows[k::3] for k in range(3)]
    return write_dataset(directory, shards), problems, [r["id"] for r in clean]


def _pipeline(tmp_path: Path, dataset: Path, benchmarks_yaml: str, extra: str = "") -> Path:
    folder = tmp_path / "pipes"
    folder.mkdir(exist_ok=True)
    path = folder / "p.yaml"
    path.write_text(f"""
name: decon
run_dir: ../run
inputs:
  docs: {{dataset: {dataset}}}
stages:
  - id: decon
    uses: dedup.decontaminate
    from: docs
    keep_rejected: true
    with:
      benchmark_dir: {os.path.relpath(BENCH, folder)}
      benchmarks:
{benchmarks_yaml}
{extra}
outputs:
  final: {{from: decon, path: ../out}}
""")
    return path


def _run(path: Path, client, overrides: list[str] | None = None):
    pipeline = load_pipeline(str(path), overrides or [])
    return PipelineRunner(pipeline, client, ProgressBoard(interactive=False)).run()


def test_math500_planted_all_found_by_math500_and_math(tmp_path: Path, dask_client) -> None:
    dataset, problems, clean_ids = _planted_dataset(tmp_path / "in")
    path = _pipeline(tmp_path, dataset, """
        - {name: math500, path: math500_test.jsonl.gz}
        - {name: math, path: math_test.jsonl.gz, fields: [problem]}""", "      min_item_words: 1")
    result = _run(path, dask_client)
    assert result.ok, result.failures
    out = read_dataset(tmp_path / "out")
    assert out.num_rows == 500 + len(clean_ids)  # flag mode keeps every row
    rows = {r["id"]: r for r in out.to_pylist()}

    # Every planted problem is flagged for its own MATH-500 item and its MATH twin.
    math_index = {r["problem"]: j for j, r in enumerate(_jsonl(BENCH / "math_test.jsonl.gz"))}
    twins = [math_index[p] for p in problems]  # MATH-500 is verbatim inside MATH
    extra_items = 0
    for i, j in enumerate(twins):
        labels = rows[f"p{i:03d}"]["contamination"]
        assert f"math500:{i}" in labels and f"math:{j}" in labels, (i, labels)
        assert rows[f"p{i:03d}"]["contamination_ngrams"] >= 1
        extra_items += len(labels) - 2
    print(f"\nMATH-500 planted: 500/500 found by math500 and by math; {extra_items} extra labels "
          "(templated problems sharing a 13-gram)")
    for cid in clean_ids:
        assert rows[cid]["contamination"] == [] and rows[cid]["contamination_ngrams"] == 0

    report = json.loads((tmp_path / "run" / "decon" / "_contamination.json").read_text())
    assert report["docs_scanned"] == 500 + len(clean_ids) and report["docs_contaminated"] == 500
    m500 = report["benchmarks"]["math500"]
    assert (m500["items"], m500["items_indexed"], m500["items_found"], m500["docs_contaminated"]) == (500, 500, 500, 500)
    assert [f["index"] for f in m500["found"]] == list(range(500))
    for found in m500["found"]:
        assert f"p{found['index']:03d}" in found["doc_ids"] and found["docs"] == len(found["doc_ids"])
        assert found["preview"][:40] == " ".join(problems[found["index"]].split())[:40]
    math = report["benchmarks"]["math"]
    assert (math["items"], math["items_skipped"], math["docs_contaminated"]) == (5000, 0, 500)
    by_index = {f["index"]: f for f in math["found"]}
    for i, j in enumerate(twins):
        assert f"p{i:03d}" in by_index[j]["doc_ids"] or by_index[j]["docs"] > 10

    # A rerun does nothing; the report is still there.
    stats = tmp_path / "run" / "decon" / "_stats" / "part-00000.json"
    before = json.loads(stats.read_text())["finished_at"]
    assert _run(path, dask_client).ok
    assert json.loads(stats.read_text())["finished_at"] == before
    # As if killed while writing shard 1: only it is redone; the scan is not; the report is rebuilt.
    report_file = tmp_path / "run" / "decon" / "_contamination.json"
    (tmp_path / "run" / "decon" / "_stats" / "part-00001.json").unlink()
    report_file.unlink()
    match_marker = tmp_path / "run" / "decon" / "_work" / "match" / "_done" / "item-00001.json"
    scanned_at = match_marker.stat().st_mtime_ns
    assert _run(path, dask_client).ok
    assert json.loads(stats.read_text())["finished_at"] == before
    assert match_marker.stat().st_mtime_ns == scanned_at
    assert json.loads(report_file.read_text()) == report
    assert read_dataset(tmp_path / "out").num_rows == 500 + len(clean_ids)

    # mode: remove drops the 500 (reason: the first listed benchmark they match) and keeps the rest.
    result = _run(path, dask_client, ["stages.decon.with.mode=remove"])
    assert result.ok, result.failures
    out = read_dataset(tmp_path / "out")
    assert sorted(out.column("id").to_pylist()) == sorted(clean_ids)
    manifest = json.loads((tmp_path / "run" / "decon" / "_manifest.json").read_text())
    assert manifest["totals"]["drops"] == {"contaminated:math500": 500}
    rejected = pq.read_table(tmp_path / "run" / "decon" / "_rejected")
    assert rejected.num_rows == 500
    assert all(labels[0].startswith("math500:") for labels in rejected.column("contamination").to_pylist())
    assert json.loads((tmp_path / "run" / "decon" / "_contamination.json").read_text())["mode"] == "remove"


def test_bad_benchmark_file_fails_the_run_naming_file_and_line(tmp_path: Path, dask_client) -> None:
    dataset = write_dataset(tmp_path / "in", [[{"id": "a", "text": "some text"}]])
    bad = _write_jsonl(tmp_path / "bad.jsonl", ['{"question": "fine"}', '{"question": "broken'])
    path = _pipeline(tmp_path, dataset, f"        - {{name: bad, path: {bad}}}")
    result = _run(path, dask_client)
    assert not result.ok
    assert any(f"{bad}:2: not valid JSON" in f for f in result.failures), result.failures


def test_missing_benchmark_file_is_a_validation_error(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "in", [[{"id": "a", "text": "some text"}]])
    path = _pipeline(tmp_path, dataset, "        - {name: gsm8k, path: no_such_file.jsonl.gz}")
    with pytest.raises(PipelineError) as err:
        load_pipeline(str(path))
    [problem] = err.value.problems
    assert problem.startswith(f"{path}:") and "stages.0.with" in problem
    assert f"file not found: {BENCH / 'no_such_file.jsonl.gz'}" in problem


# ---------------------------------------------------------------- GSM-Hard, clean text


def test_gsm_hard_questions_are_mostly_caught_by_gsm8k_13grams() -> None:
    pairs = _jsonl(GSM_HARD_PAIRS)
    prose = _prose()
    texts = [f"{prose[i % len(prose)][:600]}\n\n{p['gsmhard_input']}\n\n{prose[(i + 7) % len(prose)][:600]}"
             for i, p in enumerate(pairs)]
    stage = _stage([("gsm8k", "gsm8k_test.jsonl.gz")])
    labels = stage.process(pa.table({"text": texts})).column("contamination").to_pylist()
    caught = sum(f"gsm8k:{p['gsm8k_test_line']}" in found for p, found in zip(pairs, labels))
    wrong = sum(bool(found) and f"gsm8k:{p['gsm8k_test_line']}" not in found for p, found in zip(pairs, labels))
    print(f"\nGSM-Hard vs GSM8K, 13-grams: {caught}/{len(pairs)} caught ({caught / len(pairs):.1%})")
    assert caught / len(pairs) >= GSM_HARD_MIN_CAUGHT
    assert wrong == 0


def test_clean_web_text_is_not_flagged_by_any_benchmark() -> None:
    texts = [r["text"] for r in _jsonl(HPLT)] + _prose()  # 22 languages of web text, and articles
    stage = _stage()
    out = stage.process(pa.table({"text": texts}))
    assert not any(out.column("contamination").to_pylist())
    assert sum(out.column("contamination_ngrams").to_pylist()) == 0
    # Why min_item_words defaults to 8: with 1, MMLU's "−4 + ( −3 )=" ("4 3") matches web text.
    loose = _stage(min_item_words=1).process(pa.table({"text": texts})).column("contamination").to_pylist()
    assert {label for found in loose for label in found} == {"mmlu_stem:2462"}


# ---------------------------------------------------------------- rules


def _custom(tmp_path: Path, items: list[str], **kwargs) -> Decontaminate:
    path = _write_jsonl(tmp_path / "bench.jsonl", [json.dumps({"question": q}) for q in items])
    return Decontaminate(benchmarks=[{"name": "b", "path": str(path)}], **kwargs)


LONG = "the quick brown fox jumps over the lazy dog while seven wise owls count the falling autumn leaves"
NINE = "Name the only planet that rotates on its side."  # 9 words


def test_short_items_match_whole_and_contiguous_only(tmp_path: Path) -> None:
    stage = _custom(tmp_path, [LONG, NINE, "Which statement is true?"])
    assert stage.index.item_ngrams.tolist() == [6, 1, 0]  # 4 words < min_item_words: skipped
    assert stage.indexed_items(stage.read_items()).tolist() == [True, True, False]  # what the report counts
    texts = [
        "Quiz time! NAME the only planet that rotates on its side... Uranus.",  # whole, contiguous
        "Name the only planet that rotates on its own side.",  # interrupted
        "the only planet that rotates on its side",  # 8 of its 9 words
        "which statement is true? none of them",
    ]
    labels = stage.process(pa.table({"text": texts})).column("contamination").to_pylist()
    assert labels == [["b:1"], [], [], []]
    loose = _custom(tmp_path, [LONG, NINE, "Which statement is true?"], min_item_words=1)
    assert loose.process(pa.table({"text": texts})).column("contamination").to_pylist() == [["b:1"], [], [], ["b:2"]]


def test_min_matches_and_ngram_counts(tmp_path: Path) -> None:
    words = LONG.split()
    one = " ".join(words[:13])  # exactly one 13-gram of the item
    three = " ".join(words[:15])  # three
    texts = [f"Intro. {one}. Outro.", f"{three}!", LONG.upper(), "unrelated words " * 20]
    flags = _custom(tmp_path, [LONG]).process(pa.table({"text": texts}))
    assert flags.column("contamination").to_pylist() == [["b:0"], ["b:0"], ["b:0"], []]
    assert flags.column("contamination_ngrams").to_pylist() == [1, 3, 6, 0]
    strict = _custom(tmp_path, [LONG], min_matches=3).process(pa.table({"text": texts}))
    assert strict.column("contamination").to_pylist() == [[], ["b:0"], ["b:0"], []]
    assert strict.column("contamination_ngrams").to_pylist() == [1, 3, 6, 0]  # evidence kept
    # An item with fewer n-grams than min_matches is contaminating when all of them are found.
    short = _custom(tmp_path, [NINE], min_matches=3).process(pa.table({"text": [NINE]}))
    assert short.column("contamination").to_pylist() == [["b:0"]]


def test_flag_and_remove_modes_and_null_safety(tmp_path: Path) -> None:
    stage = _custom(tmp_path, [LONG, NINE])
    batch = pa.table({"id": ["a", "b", "c", "d", "e", "f"],
                      "text": pa.array([None, "", "  ", f"x {LONG} y {NINE}", "clean text", "?!"], pa.string())})
    flagged = stage.process(batch)
    assert flagged.column_names == ["id", "text", "contamination", "contamination_ngrams"]
    assert flagged.schema.field("contamination").type == pa.list_(pa.string())
    assert flagged.column("contamination").to_pylist() == [[], [], [], ["b:0", "b:1"], [], []]
    assert flagged.column("contamination_ngrams").to_pylist() == [0, 0, 0, 7, 0, 0]
    assert stage(batch).num_rows == 6
    remover = _custom(tmp_path, [LONG, NINE], mode="remove")
    processed = remover.process(batch)
    assert processed.column("drop_reason").to_pylist() == [None, None, None, "contaminated:b", None, None]
    assert remover(batch).column("id").to_pylist() == ["a", "b", "c", "e", "f"]
    nulls = stage.process(pa.table({"text": pa.nulls(3)}))
    assert nulls.column("contamination").to_pylist() == [[], [], []]
    assert stage.process(batch.slice(0, 0)).num_rows == 0


def test_fields_lists_and_default_field(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mc.jsonl", [json.dumps({
        "prompt": "short", "question": "Q?", "choices": [LONG, "no"]})])
    default = Decontaminate(benchmarks=[{"name": "mc", "path": str(path)}])
    assert default.read_items()[0].fields == ["question"]
    chosen = Decontaminate(benchmarks=[{"name": "mc", "path": str(path), "fields": ["question", "choices"]}])
    out = chosen.process(pa.table({"text": [f"The answer: {LONG}.", "Q? no"]}))
    assert out.column("contamination").to_pylist() == [["mc:0"], []]


def test_benchmark_file_errors_name_file_and_line(tmp_path: Path) -> None:
    def error(lines: list[str] | bytes, **bench) -> str:
        path = tmp_path / "b.jsonl"
        if isinstance(lines, bytes):
            path = tmp_path / "b.jsonl.gz"
            path.write_bytes(lines)
        else:
            _write_jsonl(path, lines)
        stage = Decontaminate(benchmarks=[{"name": "b", "path": str(path), **bench}])
        with pytest.raises(BenchmarkError) as err:
            stage.setup()
        return str(err.value)

    path = tmp_path / "b.jsonl"
    assert error(['{"question": "a"}', "", '{"question": "b"']) == f"{path}:3: not valid JSON: Expecting ',' delimiter (column 17)"
    assert error(['{"question": "a"}', '{"problem": "b"}']).startswith(f"{path}:2: no field 'question' in the record (it has problem)")
    assert error(['{"answer": "a"}']).startswith(f"{path}:1: none of the fields question, problem, prompt, input, text")
    assert error(['["a list"]']) == f"{path}:1: expected a JSON object, got list"
    assert error(['{"question": {"a": 1}}']) == f"{path}:1: field 'question' is a dict, not text or a list of texts"
    assert error(['{"q": "a"}'], fields=["q", "r"]).startswith(f"{path}:1: no field 'r'")
    assert "cannot read" in error(b"\x1f\x8b\x08\x00not really gzip")
    with pytest.raises(ValidationError, match="file not found: .*nope.jsonl"):
        Decontaminate(benchmarks=[{"name": "b", "path": str(tmp_path / "nope.jsonl")}])
    with pytest.raises(ValidationError, match="duplicate benchmark names: b"):
        Decontaminate(benchmarks=[{"name": "b", "path": str(path)}, {"name": "b", "path": str(path)}])
    with pytest.raises(ValidationError, match="without ':'"):
        Decontaminate(benchmarks=[{"name": "a:b", "path": str(path)}])


def test_relative_paths_from_python_use_benchmark_dir_or_cwd(tmp_path: Path, monkeypatch) -> None:
    stage = Decontaminate(benchmark_dir=str(BENCH), benchmarks=[{"name": "he", "path": "humaneval.jsonl.gz"}])
    assert stage.benchmarks[0].path == str(BENCH / "humaneval.jsonl.gz")
    monkeypatch.chdir(BENCH)
    stage = Decontaminate(benchmarks=[{"name": "he", "path": "humaneval.jsonl.gz"}])
    assert stage.benchmarks[0].path == str(BENCH / "humaneval.jsonl.gz")
    assert Decontaminate(**stage.model_dump()).benchmarks == stage.benchmarks  # stable when rebuilt
    he = _jsonl(BENCH / "humaneval.jsonl.gz")
    found = stage.process(pa.table({"text": [f"# solution\n{he[5]['prompt']}{he[5]['canonical_solution']}"]}))
    assert found.column("contamination").to_pylist() == [["he:5"]]
    assert np.all(stage.index.item_ngrams > 0)
