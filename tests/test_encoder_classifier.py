"""The encoder classifier against transformers: tiny random BERT and DeBERTa-v2, and a real BERT.

Our forward pass runs twice: on the PyTorch operations (the CPU path) and on our Triton kernels
(under TRITON_INTERPRET=1 here, fp32; on a GPU machine the same tests run the compiled kernels).
Both must match transformers' own model within 1e-4 (max abs difference of the head outputs).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import transformers  # the reference (a dev dependency)
from safetensors.torch import save_file

from classifiers.encoder_batches import length_batches, padding_fraction
from classifiers.encoder_config import CheckpointError, EncoderConfig
from classifiers.encoder_head import HeadTrainingSettings, train_encoder_head
from classifiers.encoder_model import EncoderModel
from classifiers.encoder_ops import make_ops
from classifiers.encoder_stage import EncoderClassifier


REPO = Path(__file__).resolve().parents[1]
ON_GPU = torch.cuda.is_available() and not os.environ.get("TRITON_INTERPRET")
DEVICE = "cuda" if ON_GPU else "cpu"
TOL = 1e-4
# On a GPU the kernels run fp32 inputs through tf32 tensor cores: looser there.
KERNEL_TOL = 2e-2 if ON_GPU else TOL


def _padded(batch: int, length: int, lengths: list[int], vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    lens = torch.tensor(lengths, dtype=torch.int32)
    mask = torch.arange(length)[None, :] < lens[:, None].long()
    return ids * mask, lens


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def _compare(folder: Path, hf_model, ids: torch.Tensor, lens: torch.Tensor) -> dict[str, float]:
    mask = (torch.arange(ids.shape[1])[None, :] < lens[:, None].long()).long()
    with torch.no_grad():
        ref = hf_model(input_ids=ids, attention_mask=mask).logits.float()
    ours = EncoderModel.from_folder(folder)
    errors = {"torch": (ours.classify(ids, lens, make_ops("torch")) - ref).abs().max().item()}
    ours.to(DEVICE, torch.float32)
    out = ours.classify(ids.to(DEVICE), lens.to(DEVICE), make_ops("triton")).cpu()
    errors["triton"] = (out - ref).abs().max().item()
    return errors


def test_tiny_bert_regression_matches_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, max_position_embeddings=64, num_labels=1)
    hf = transformers.BertForSequenceClassification(cfg).eval()
    ids, lens = _padded(3, 37, [37, 9, 1], 120, seed=1)  # odd lengths, heavy padding, a one-token document
    errors = _compare(_save(hf, tmp_path / "bert"), hf, ids, lens)
    assert errors["torch"] <= TOL, errors
    assert errors["triton"] <= KERNEL_TOL, errors


@pytest.mark.parametrize("share_att_key", [True, False])
def test_tiny_deberta_v2_classes_match_transformers(tmp_path: Path, share_att_key: bool) -> None:
    torch.manual_seed(0)
    cfg = transformers.DebertaV2Config(
        vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
        share_att_key=share_att_key, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
        num_labels=3)
    hf = transformers.DebertaV2ForSequenceClassification(cfg).eval()
    # 40 tokens with 8 buckets: distances past 4 fall into the log buckets.
    ids, lens = _padded(3, 40, [40, 13, 2], 120, seed=2)
    errors = _compare(_save(hf, tmp_path / "deberta"), hf, ids, lens)
    assert errors["torch"] <= TOL, errors
    assert errors["triton"] <= KERNEL_TOL, errors


@pytest.fixture(scope="module")
def minilm(encoder_model: Path) -> Path:
    return encoder_model


def _with_random_head(folder: Path, out: Path, outputs: int = 1, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (out / name).symlink_to(folder / name)
    g = torch.Generator().manual_seed(seed)
    save_file({"weight": torch.randn(outputs, 384, generator=g) * 0.1, "bias": torch.randn(outputs, generator=g)},
              str(out / "head.safetensors"))
    problem = "regression" if outputs == 1 else "single_label_classification"
    labels = [] if outputs == 1 else [f"class{i}" for i in range(outputs)]
    (out / "head.json").write_text(json.dumps({"format": "curator.encoder_head", "version": 1, "kind": "first_token",
                                               "problem_type": problem, "labels": labels}))
    return out


def test_real_bert_checkpoint_with_random_head_matches_transformers(minilm: Path, tmp_path: Path) -> None:
    folder = _with_random_head(minilm, tmp_path / "minilm-head")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tok.no_padding()  # this tokenizer.json pads to 128; we pad ourselves
    texts = ["Photosynthesis turns light into chemical energy in the chloroplasts of plant cells.", "Buy now!"]
    enc = [e.ids for e in tok.encode_batch(texts)]
    length = max(len(e) for e in enc)
    ids = torch.zeros(len(enc), length, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
    lens = torch.tensor([len(e) for e in enc], dtype=torch.int32)
    hf = transformers.BertModel.from_pretrained(minilm, attn_implementation="eager").eval()
    mask = (torch.arange(length)[None, :] < lens[:, None].long()).long()
    from safetensors.torch import load_file

    h = load_file(str(folder / "head.safetensors"))
    with torch.no_grad():
        last = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    ref = last[:, 0] @ h["weight"].t() + h["bias"]
    ours = EncoderModel.from_folder(folder)
    assert (ours.classify(ids, lens, make_ops("torch")) - ref).abs().max().item() <= TOL
    # Mean pooling over the real tokens, as sentence-transformers pools this checkpoint.
    mean_ref = (last * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert (ours.pooled_features(ids, lens, make_ops("torch"), "mean") - mean_ref).abs().max().item() <= TOL
    ours.to(DEVICE, torch.float32)
    out = ours.classify(ids.to(DEVICE), lens.to(DEVICE), make_ops("triton")).cpu()
    assert (out - ref).abs().max().item() <= KERNEL_TOL


def test_length_batches_sort_budget_and_order() -> None:
    rng = np.random.default_rng(0)
    docs = [list(range(1, int(n) + 1)) for n in rng.integers(1, 300, size=200)] + [list(range(1, 1001))]
    seen = []
    for batch in length_batches(docs, max_tokens=2048, max_docs=64, pad_id=0):
        assert batch.ids.shape[1] % 16 == 0
        assert batch.ids.numel() <= 2048 or len(batch.rows) == 1  # a 1000-token document is a batch of its own
        for r, row in enumerate(batch.rows):
            n = len(docs[row])
            assert batch.lengths[r] == n
            assert batch.ids[r, :n].tolist() == docs[row] and not batch.ids[r, n:].any()
        seen += batch.rows.tolist()
    assert sorted(seen) == list(range(len(docs)))
    assert padding_fraction(docs, 2048, 64) < 0.15  # sorted batches: little padding (lengths 1-300, 16-token tiles)


def test_stage_scores_in_order_with_null_text_and_any_batching(minilm: Path, tmp_path: Path) -> None:
    folder = _with_random_head(minilm, tmp_path / "head")
    texts = ["A long explanation of how vaccines train the immune system. " * 20, None, "Short.",
             "Medium length text about the history of Rome and its emperors.", ""]
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})
    big = EncoderClassifier(model_path=str(folder), output="edu", integer_range=(0, 5), device="cpu")
    small = EncoderClassifier(model_path=str(folder), output="edu", integer_range=(0, 5), device="cpu",
                              batch_tokens=64)
    a, b = big(table), small(table)
    assert a.num_rows == 5 and a.column("id").to_pylist() == table.column("id").to_pylist()
    scores = a.column("edu").to_pylist()
    assert scores[1] is None and a.column("edu_int")[1].as_py() is None
    assert all(s is not None for i, s in enumerate(scores) if i != 1)
    np.testing.assert_allclose([s for s in scores if s is not None],
                               [s for s in b.column("edu").to_pylist() if s is not None], atol=1e-5)
    # Each document alone gives the score it got in the batch: batching and padding do not leak.
    alone = [small(table.slice(i, 1)).column("edu")[0].as_py() for i in (0, 2)]
    np.testing.assert_allclose(alone, [scores[0], scores[2]], atol=1e-5)
    ints = a.column("edu_int").to_pylist()
    assert all(i is None or 0 <= i <= 5 for i in ints)


def test_stage_classifier_head_labels_and_values(minilm: Path, tmp_path: Path) -> None:
    folder = _with_random_head(minilm, tmp_path / "cls", outputs=3)
    table = pa.table({"text": ["one document", "another, longer document about cells and biology"]})
    stage = EncoderClassifier(model_path=str(folder), output="q", device="cpu",
                              label_values={"class0": 0.0, "class1": 1.0, "class2": 2.0})
    out = stage(table)
    assert set(out.column("q_label").to_pylist()) <= {"class0", "class1", "class2"}
    assert all(0.0 <= s <= 2.0 for s in out.column("q").to_pylist())
    bad = EncoderClassifier(model_path=str(folder), output="q", device="cpu", label_values={"High": 1.0})
    with pytest.raises(ValueError, match="label_values must give every label"):
        bad.setup()


def test_checkpoint_errors_name_the_file(tmp_path: Path, minilm: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json: not found"):
        EncoderConfig.from_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="model_type 'roberta' is not supported"):
        EncoderConfig.from_folder(tmp_path)
    cfg = json.loads((minilm / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "deberta-v2", "conv_kernel_size": 3}))
    with pytest.raises(CheckpointError, match="conv_kernel_size"):
        EncoderConfig.from_folder(tmp_path)
    stage = EncoderClassifier(model_path=str(minilm), device="cpu")
    with pytest.raises(ValueError, match="no classification or regression head"):
        stage.setup()


def _topic_texts(shared_data: Path) -> tuple[list[str], list[str]]:
    truth = json.loads((shared_data / "extraction" / "aeb-dev" / "ground-truth.json").read_text())
    news = [p for item in truth.values() for p in item["articleBody"].split("\n") if len(p.split()) >= 15][:120]
    with gzip.open(shared_data / "contamination" / "gsm8k_test.jsonl.gz", "rt") as f:
        math = [json.loads(line)["question"] for line in f][:120]
    texts = news + math
    labels = ["news"] * len(news) + ["math"] * len(math)
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order]


def test_head_training_on_frozen_encoder_learns_a_real_distinction(minilm: Path, tmp_path: Path,
                                                                   shared_data: Path) -> None:
    texts, labels = _topic_texts(shared_data)
    out = tmp_path / "topic"
    report = train_encoder_head(minilm, texts, labels, out,
                                HeadTrainingSettings(problem_type="single_label_classification", epochs=100,
                                                     valid_fraction=0.25), max_length=128, device="cpu")
    assert report["valid"] == 60 and report["labels"] == ["math", "news"]
    assert report["valid_metrics"]["accuracy"] >= 0.95, report
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                               "head.safetensors", "head.json", "head_training.json"}
    stage = EncoderClassifier(model_path=str(out), output="topic", device="cpu", max_length=128)
    scored = stage(pa.table({"text": ["What is 15% of 80 if you then add 7?",
                                      "The minister said on Tuesday that the talks would resume next week."]}))
    assert scored.column("topic_label").to_pylist() == ["math", "news"]


def test_train_encoder_head_command(minilm: Path, tmp_path: Path, shared_data: Path) -> None:
    from click.testing import CliRunner

    from curator.cli import main

    texts, labels = _topic_texts(shared_data)
    data = tmp_path / "annotated.jsonl"
    rows = [{"text": t, "edu_score": 4 if lab == "math" else 1} for t, lab in zip(texts[:80], labels[:80])]
    rows += [{"text": "", "edu_score": 3}, {"text": "no score: the annotation was unparseable", "edu_score": None}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "edu-head"
    result = CliRunner().invoke(main, ["train", "encoder-head", str(data), "--encoder", str(minilm), "-o", str(out),
                                       "--label-column", "edu_score", "--max-length", "64", "--device", "cpu",
                                       "--valid-fraction", "0.25"])
    assert result.exit_code == 0, result.output
    assert "80 used (train 60, held out 20); skipped: no_label 1, no_text 1" in result.output
    report = json.loads((out / "head_training.json").read_text())
    assert report["valid_metrics"]["pearson"] > 0.6, report  # 0.78 measured: 60 documents, news vs maths
    bad = CliRunner().invoke(main, ["train", "encoder-head", str(tmp_path / "missing.jsonl"), "--encoder",
                                    str(minilm), "-o", str(out)])
    assert bad.exit_code != 0 and "missing.jsonl" in bad.output
