"""tokens.count: counts equal the tokenizer's, stored with every row, merged per label, resumable."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from curator.pipeline import load_pipeline
from curator.plan import TOKEN_COUNTS
from curator.progress import ProgressBoard
from curator.runner import PipelineRunner
from stages.token_count import TokenCount, TokenTally
from tests.conftest import read_dataset

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex bright jugglers; "
         "pack my box with five dozen liquor jugs, 1234 times!").split()


def _text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words))


def _train(special: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([_text(300, k) for k in range(5)],
                            trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]", "<s>", "</s>"],
                                                show_progress=False))
    if special:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BPE tokenizer.json whose post-processor adds <s> and </s>, built offline."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    _train(special=True).save(str(path))
    return path


TEXTS = [_text(40), "", None, "   ", _text(7, 3) + "\n\n" + _text(90, 5), "unseen: ÿøü 漢字 🙂", _text(2000, 1)]


def test_counts_match_tokenizers(tokenizer_file: Path) -> None:
    reference = Tokenizer.from_file(str(tokenizer_file))
    plain = [len(reference.encode(t, add_special_tokens=False).ids) if t else 0 for t in TEXTS]
    assert plain[0] > 0 and plain[3] == 0 and plain[-1] > 1000

    stage = TokenCount(tokenizer_path=str(tokenizer_file.parent))  # the folder is enough
    batch = pa.table({"id": [str(i) for i in range(len(TEXTS))], "text": TEXTS,
                      "tokens": pa.array([99] * len(TEXTS), pa.int64())})  # an earlier count: replaced
    counted = stage.count(batch)
    assert counted.column_names == ["id", "text", "tokens"]
    assert counted.schema.field("tokens").type == pa.int32()
    assert counted.column("tokens").to_pylist() == plain
    assert counted.column("text").to_pylist() == TEXTS  # null and empty rows kept as they were

    # Special tokens of the post-processor (<s>, </s>) and the trainer's EOD, on documents with tokens only.
    with_special = [len(reference.encode(t, add_special_tokens=True).ids) if t else 0 for t in TEXTS]
    trainer = TokenCount(tokenizer_path=str(tokenizer_file), add_special_tokens=True, eod_tokens_per_document=1)
    expected = [n + 1 if n else 0 for n in with_special]
    expected[3] = 0  # whitespace only: no text token, so nothing else either
    assert trainer.count(batch).column("tokens").to_pylist() == expected

    # Long batches are counted in slices of about CHUNK_CHARS characters, with the same result.
    many = [_text(50 + i % 300, i) for i in range(2000)]
    assert sum(len(t) for t in many) > 1 << 20
    assert stage.token_counts(many) == [len(e.ids) for e in reference.encode_batch(many, add_special_tokens=False)]


def test_counts_match_the_gguf_vocabulary(gguf_model: Path) -> None:
    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf_model), vocab_only=True, verbose=False)
    texts = [t for t in TEXTS if t] + ["Two-phase pretraining upweights high-quality data."]
    stage = TokenCount(tokenizer_path=str(gguf_model), output="n_tokens", add_special_tokens=True)
    counted = stage.count(pa.table({"text": texts}))
    expected = [len(vocab.tokenize(t.encode(), add_bos=True, special=False)) for t in texts]
    assert counted.column("n_tokens").to_pylist() == expected
    assert all(n > len(vocab.tokenize(t.encode(), add_bos=False, special=False)) for n, t in zip(expected, texts))


def test_unusable_tokenizers_are_refused(tokenizer_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokenizer not found"):
        TokenCount(tokenizer_path=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="overwrite the text column"):
        TokenCount(tokenizer_path=str(tokenizer_file), output="text")
    # An encoder's tokenizer.json often pads and truncates: every count would be the same.
    padded = _train(special=False)
    padded.enable_padding(length=64)
    padded.enable_truncation(64)
    padded.save(str(tmp_path / "padded.json"))
    with pytest.raises(ValueError, match="pads or truncates"):
        TokenCount(tokenizer_path=str(tmp_path / "padded.json")).setup()
    with pytest.raises(KeyError, match="column 'body' not in the batch"):
        TokenCount(tokenizer_path=str(tokenizer_file), column="body").count(pa.table({"text": ["a"]}))


def test_tally_round_trips() -> None:
    tally = TokenTally()
    tally.add_batch([3, 0, 5], {"quality_label": ["high", None, "high"], "bucket": [19, 0, 19]})
    merged = TokenTally.from_json(json.loads(json.dumps(tally.to_json())))
    merged.add(tally)
    assert merged.to_json() == {
        "documents": 6, "tokens": 16, "empty_documents": 2, "missing_columns": {},
        "by": {"quality_label": {"high": {"documents": 4, "tokens": 16}, "null": {"documents": 2, "tokens": 0}},
               "bucket": {"0": {"documents": 2, "tokens": 0}, "19": {"documents": 4, "tokens": 16}}},
    }


# ---------------------------------------------------------------------- a pipeline on the Dask cluster

LABELS = ["high", "medium", "low", None]


def _write_input(directory: Path) -> None:
    directory.mkdir(parents=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("quality_label", pa.string())])
    for shard in range(3):
        rows = [{"id": f"{shard}-{i}", "text": None if i == 5 else ("" if i == 6 else _text(10 + 17 * i, shard + i)),
                 "quality_label": LABELS[(shard + i) % 4]} for i in range(9 + shard)]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / f"part-{shard:05d}.parquet")


def _pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: t
imports: [stages.token_count]
run_dir: run
inputs:
  docs: {{dataset: {tmp_path / 'in'}}}
stages:
  - id: count
    uses: tokens.count
    from: docs
    batch_rows: 4
    with: {{tokenizer_path: tok, group_by: [quality_label, task], eod_tokens_per_document: 1}}
""")
    return path


def _run(path: Path, client) -> None:
    result = PipelineRunner(load_pipeline(str(path), []), client, ProgressBoard(interactive=False)).run()
    assert result.ok, result.failures


def test_token_count_pipeline(tmp_path: Path, dask_client, tokenizer_file: Path,
                              caplog: pytest.LogCaptureFixture) -> None:
    _write_input(tmp_path / "in")
    (tmp_path / "tok").mkdir()
    shutil.copy(tokenizer_file, tmp_path / "tok" / "tokenizer.json")  # relative to the pipeline file
    with caplog.at_level(logging.INFO, logger="stages.token_count"):
        _run(_pipeline(tmp_path), dask_client)
    stage_dir = tmp_path / "run" / "count"

    # Every row is kept with its columns and its count: the tokenizer's plus one EOD, 0 without text.
    table = read_dataset(stage_dir)
    assert table.num_rows == 9 + 10 + 11 and len(list(stage_dir.glob("part-*.parquet"))) == 3
    assert table.column_names == ["id", "text", "quality_label", "tokens"]
    reference = Tokenizer.from_file(str(tokenizer_file))
    rows = table.to_pylist()
    for row in rows:
        n = len(reference.encode(row["text"], add_special_tokens=False).ids) if row["text"] else 0
        assert row["tokens"] == (n + 1 if n else 0), row["id"]
    assert sum(1 for r in rows if r["tokens"] == 0) == 6  # the null and empty texts of each shard

    # The summary: totals equal the column, the breakdown per label, the missing column noted.
    summary = json.loads((stage_dir / TOKEN_COUNTS).read_text())
    assert summary["tokenizer"] == {"path": str(tmp_path / "tok" / "tokenizer.json"),
                                    "sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()}
    assert summary["documents"] == 30 and summary["tokens"] == sum(r["tokens"] for r in rows)
    assert summary["empty_documents"] == 6 and summary["eod_tokens_per_document"] == 1
    assert (summary["shards"], summary["shards_total"]) == (3, 3)
    expected: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = expected.setdefault(row["quality_label"] or "null", {"documents": 0, "tokens": 0})
        entry["documents"] += 1
        entry["tokens"] += row["tokens"]
    assert summary["by"] == {"quality_label": expected} and set(expected) == {"high", "medium", "low", "null"}
    assert summary["missing_columns"] == {"task": 3}
    assert f"30 documents, {summary['tokens']:,} tokens (tokenizer.json; 3/3 shards)" in caplog.text

    # A rerun redoes nothing; with one shard's commit removed, only that shard, and the totals stay whole.
    stats_files = sorted((stage_dir / "_stats").glob("part-*.json"))
    finished = [json.loads(p.read_text())["finished_at"] for p in stats_files]
    _run(_pipeline(tmp_path), dask_client)
    assert [json.loads(p.read_text())["finished_at"] for p in stats_files] == finished
    stats_files[1].unlink()
    _run(_pipeline(tmp_path), dask_client)
    after = [json.loads(p.read_text())["finished_at"] for p in stats_files]
    assert after[0] == finished[0] and after[2] == finished[2] and after[1] > finished[1]
    assert json.loads((stage_dir / TOKEN_COUNTS).read_text()) == summary
    assert read_dataset(stage_dir).sort_by("id").equals(table.sort_by("id"))
