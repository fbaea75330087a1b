"""Training a hybrid LM scorer: the BPE tokenizer, the training loop, the checkpoint folder, ``train-scorer``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from classifiers.hybrid_model import HybridLM
from classifiers.scorer_builder import ScorerShape, train_scorer
from classifiers.scorer_cli import train_scorer_command
from classifiers.scorer_data import ScorerDataError, read_training_texts
from classifiers.scorer_tokenizer import (
    BOUNDARY_ID,
    TokenizerError,
    TokenizerSettings,
    load_tokenizer,
    save_tokenizer,
    train_bpe_tokenizer,
)
from classifiers.scorer_training import ScorerTrainingError, TrainingSettings, pack_windows

TINY_SHAPE = ScorerShape(hidden=32, layers="M*-M", vocab_size=320, head_dim=16, ssm_state_size=8, chunk_size=16)
TINY_CLI = ["--hidden", "32", "--layers", "M*-", "--head-dim", "16", "--state-size", "8", "--vocab-size", "300",
            "--seq-len", "32", "--batch-size", "4", "--steps", "3", "--eval-every", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def english_texts(shared_data: Path) -> list[str]:
    """HPLT v2 English excerpts that people labelled fine (real web text)."""
    path = shared_data / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r["text"] for r in rows if r["lang"] == "eng_Latn" and not r["porn"] and not r["unnatural"]
            and str(r["lang_correct"]) != "0"][:80]


@pytest.fixture(scope="module")
def trained_scorer(english_texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A tiny scorer trained for a few dozen steps (a couple of seconds on one core)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("scorer") / "tiny"
    settings = TrainingSettings(seq_len=48, batch_size=8, steps=40, learning_rate=1e-2, warmup_steps=5,
                                eval_every=20, eval_windows=16, seed=0)
    build = train_scorer(english_texts, out, TINY_SHAPE, settings, held_out_fraction=0.15)
    return out, build


def test_bpe_tokenizer_round_trip_and_determinism(english_texts: list[str], tmp_path: Path) -> None:
    tokenizer = train_bpe_tokenizer(english_texts, TokenizerSettings(vocab_size=400))
    assert tokenizer.get_vocab_size() == 400
    samples = [english_texts[0], "Grüße, 世界! \t tabs\n\nand  spaces 😀 x\u0301", ""]
    for text in samples:
        encoding = tokenizer.encode(text)
        assert encoding.ids[0] == BOUNDARY_ID  # the boundary token comes first, as in training
        assert tokenizer.decode(encoding.ids) == text
    # Merges were learned: English text takes far fewer tokens than bytes.
    assert len(tokenizer.encode(english_texts[1]).ids) < 0.6 * len(english_texts[1].encode())
    again = train_bpe_tokenizer(english_texts, TokenizerSettings(vocab_size=400))
    assert again.to_str() == tokenizer.to_str()
    loaded = load_tokenizer(save_tokenizer(tokenizer, tmp_path))
    assert loaded.encode(samples[1]).ids == tokenizer.encode(samples[1]).ids
    with pytest.raises(TokenizerError, match="too small"):
        train_bpe_tokenizer(english_texts, TokenizerSettings(vocab_size=100))
    bad = tmp_path / "broken" / "tokenizer.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match=str(bad)):
        load_tokenizer(bad.parent)


def test_pack_windows_overlap_by_one_token() -> None:
    windows = pack_windows([[0, 1, 2, 3], [0, 5, 6]], seq_len=3)
    assert windows.tolist() == [[0, 1, 2], [2, 3, 0], [0, 5, 6]]
    assert pack_windows([[0, 1]], seq_len=3).shape == (0, 3)


def test_training_lowers_held_out_loss(trained_scorer: tuple[Path, object]) -> None:
    _, build = trained_scorer
    report = build.report
    assert report.steps == 40 and report.stopped_by == "steps"
    assert report.tokens_seen == 40 * 8 * 47
    assert report.held_out_documents >= 1 and report.held_out_loss is not None
    assert report.held_out_loss < report.initial_held_out_loss - 0.5
    assert [p.step for p in report.history] == [0, 20, 40]
    assert 0 < report.parameters < 100_000


def test_saved_scorer_loads_in_ours_and_transformers(trained_scorer: tuple[Path, object]) -> None:
    import transformers  # a dev dependency
    out, _ = trained_scorer
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "training.json"}
    meta = json.loads((out / "training.json").read_text())
    assert meta["report"]["steps"] == 40 and meta["shape"]["layers"] == "M*-M"
    ours = HybridLM.from_pretrained(out)
    assert ours.config.tie_word_embeddings and ours.config.bos_token_id == BOUNDARY_ID
    theirs = transformers.NemotronHForCausalLM.from_pretrained(str(out), torch_dtype=torch.float32).eval()
    tokenizer = load_tokenizer(out)
    ids = torch.tensor([tokenizer.encode("The scorer reads web pages and ranks them by perplexity.").ids[:37],
                        tokenizer.encode("Another document, with other words in it, and more of them too.").ids[:37]])
    assert ids.shape[1] % ours.config.chunk_size != 0
    with torch.no_grad():
        ours_logits = ours(ids)
        theirs_logits = theirs(input_ids=ids).logits
    assert (ours_logits - theirs_logits).abs().max().item() <= 1e-4


def test_train_scorer_cli_end_to_end(tmp_path: Path, english_texts: list[str]) -> None:
    # A run's dataset folder: Parquet shards with a quality label; train on the High rows only.
    data = tmp_path / "run" / "classify"
    data.mkdir(parents=True)
    labels = ["high" if i % 3 else "low" for i in range(len(english_texts))]
    texts: list[str | None] = list(english_texts)
    texts[1] = None  # a row without text is counted, not lost
    pq.write_table(pa.table({"text": texts[:40], "quality_label": labels[:40]}), data / "part-00000.parquet")
    pq.write_table(pa.table({"text": texts[40:], "quality_label": labels[40:]}), data / "part-00001.parquet")
    (data / "_manifest.json").write_text("{}")  # beside the shards, not data
    out = tmp_path / "scorer"
    result = CliRunner().invoke(train_scorer_command, ["--data", str(data), "--where", "quality_label == 'high'",
                                                       "--out", str(out), *TINY_CLI])
    assert result.exit_code == 0, result.output
    assert "checkpoint:" in result.output and "3 steps" in result.output
    meta = json.loads((out / "training.json").read_text())
    high = sum(1 for label in labels if label == "high")
    assert meta["source"]["rows_read"] == len(english_texts)
    assert meta["source"]["not_matched"] == len(english_texts) - high
    assert meta["source"]["skipped"] == {"no_text": 1} and meta["source"]["rows_used"] == high - 1
    assert HybridLM.from_pretrained(out).config.pattern == "M*-"
    again = CliRunner().invoke(train_scorer_command, ["--data", str(data), "--out", str(out), *TINY_CLI])
    assert again.exit_code != 0 and "already holds a checkpoint" in again.output


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": oops}\n')
    runner = CliRunner()
    result = runner.invoke(train_scorer_command, ["--data", str(broken), "--out", str(tmp_path / "o"), *TINY_CLI])
    assert result.exit_code != 0 and f"{broken}:2: not valid JSON" in result.output
    wrong_column = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"content": ["a document"]}), wrong_column)
    result = runner.invoke(train_scorer_command, ["--data", str(wrong_column), "--out", str(tmp_path / "o"),
                                                  *TINY_CLI])
    assert result.exit_code != 0 and str(wrong_column) in result.output and "'text'" in result.output
    missing = tmp_path / "nowhere.jsonl"
    result = runner.invoke(train_scorer_command, ["--data", str(missing), "--out", str(tmp_path / "o"), *TINY_CLI])
    assert result.exit_code != 0 and str(missing) in result.output
    short = tmp_path / "short.jsonl"
    short.write_text('{"text": "tiny"}\n{"text": "   "}\n')
    result = runner.invoke(train_scorer_command, ["--data", str(short), "--out", str(tmp_path / "o"), *TINY_CLI])
    assert result.exit_code != 0 and "too little training text" in result.output
    result = runner.invoke(train_scorer_command, ["--data", str(short), "--where", "len(text) > 3",
                                                  "--out", str(tmp_path / "o"), *TINY_CLI])
    assert result.exit_code != 0 and "--where" in result.output
    result = runner.invoke(train_scorer_command, ["--data", str(short), "--layers", "MX", "--out",
                                                  str(tmp_path / "o"), *TINY_CLI[4:]])
    assert result.exit_code != 0 and "'MX'" in result.output
    with pytest.raises(ScorerDataError, match="quality_label"):
        read_training_texts([short], where="quality_label == 'high'")
    with pytest.raises(ScorerTrainingError, match="budget"):
        TrainingSettings(steps=None, max_seconds=None).check()
