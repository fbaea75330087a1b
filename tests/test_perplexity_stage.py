"""classify.perplexity and filter.perplexity through the stage-level API, on a tiny random checkpoint.

The checkpoint is a random hybrid LM with a BPE tokenizer trained here; the numbers it gives mean nothing, but
they must be exactly what the model says: each document's mean NLL equals the one computed by hand from the
model's logits, batched or alone, whole or in windows.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from classifiers.hybrid_config import HybridConfig
from classifiers.hybrid_model import HybridLM
from classifiers.hybrid_scorer import HybridScorer, plan_windows
from classifiers.perplexity_stage import PerplexityScore
from classifiers.scorer_tokenizer import TokenizerSettings, save_tokenizer, train_bpe_tokenizer
from curator.stage import DROP_REASON
from stages.perplexity_filter import PerplexityFilter

TEXTS = ["The lighthouse keeper climbed the stairs every evening to light the lamp.",
         "Sourdough needs a starter, flour, water and salt, and a long slow rise.",
         "A short one.",
         "Councillors voted to approve the new budget for the river bridge repairs after a long debate."]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scorer")
    tokenizer = train_bpe_tokenizer(TEXTS * 20, TokenizerSettings(vocab_size=300, min_frequency=1))
    save_tokenizer(tokenizer, folder)
    config = HybridConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=64, layer_kinds=("mamba", "attention",
                                                                                                "mlp", "mamba"),
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
                          mamba_num_heads=4, mamba_head_dim=32, ssm_state_size=16, n_groups=1, chunk_size=16,
                          tie_word_embeddings=True, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = HybridLM(config)
    model.init_weights(seed=3, std=0.2)  # large weights: perplexities far from uniform
    model.save_pretrained(folder)
    return folder


def nll_by_hand(model: HybridLM, ids: list[int]) -> float:
    """Mean NLL of ids[1:] given the prefix, from the model's logits on the one sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    return float(-logp.gather(-1, torch.tensor(ids[1:])[:, None]).mean())


def test_stage_scores_match_the_model_and_nulls_stay_null(checkpoint: Path) -> None:
    stage = PerplexityScore(model_path=str(checkpoint), device="cpu", max_tokens=None, batch_tokens=64)
    batch = pa.table({"id": ["a", "b", "c", "d", "e", "f"], "text": [TEXTS[0], None, TEXTS[1], "", TEXTS[2],
                                                                     TEXTS[3]]})
    out = stage.process(batch)
    assert out.column_names == ["id", "text", "perplexity", "perplexity_nll", "perplexity_tokens"]
    rows = out.to_pylist()
    model = HybridLM.from_pretrained(checkpoint)
    tokenizer = stage._scorer.tokenizer
    for row in rows:
        if not row["text"]:
            assert row["perplexity"] is None and row["perplexity_nll"] is None and row["perplexity_tokens"] == 0
            continue
        ids = [0] + tokenizer.encode(row["text"], add_special_tokens=False).ids
        assert row["perplexity_tokens"] == len(ids) - 1
        assert row["perplexity_nll"] == pytest.approx(nll_by_hand(model, ids), abs=1e-4)
        assert row["perplexity"] == pytest.approx(math.exp(row["perplexity_nll"]), rel=1e-5)


def test_windows_with_context_score_every_token_once(checkpoint: Path) -> None:
    whole = HybridScorer(checkpoint, device="cpu", max_tokens=None, window_tokens=2048)
    windowed = HybridScorer(checkpoint, device="cpu", max_tokens=None, window_tokens=16, context_tokens=6)
    fresh = HybridScorer(checkpoint, device="cpu", max_tokens=None, window_tokens=16)
    text = " ".join(TEXTS)
    n = len(whole.tokenize([text])[0])
    assert n > 40
    for scorer in (whole, windowed, fresh):
        assert scorer.score_texts([text])[0].tokens == n  # every token scored once, BOS-led or in context
    # Windows see less context, so their NLL differs from the whole document's, but stays finite.
    assert math.isfinite(windowed.score_texts([text])[0].mean_nll)
    first = HybridScorer(checkpoint, device="cpu", max_tokens=10)
    assert first.score_texts([text])[0].tokens == 10


def test_plan_windows_cuts_and_conditions() -> None:
    plan = plan_windows([list(range(1, 31)), [], [7]], bos_id=0, max_tokens=25, window_tokens=10,
                        context_tokens=4)
    assert plan.truncated == 1
    assert [(w.document, w.ids[:w.context], len(w.ids) - w.context) for w in plan.windows] == [
        (0, [0], 9), (0, [6, 7, 8, 9], 6), (0, [12, 13, 14, 15], 6), (0, [18, 19, 20, 21], 4), (2, [0], 1)]
    with pytest.raises(ValueError, match="context_tokens"):
        plan_windows([[1]], bos_id=0, max_tokens=None, window_tokens=8, context_tokens=8)


def test_stage_pickles_without_its_model_and_refuses_a_missing_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    stage = PerplexityScore(model_path=str(checkpoint), device="cpu")
    stage.setup()
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._scorer is None and stage._scorer is not None
    assert stage.task_resources().gpus == 0 and PerplexityScore(model_path=str(checkpoint)).task_resources().gpus == 1
    with pytest.raises(ValueError, match=r"classify.perplexity: .*config.json: not found"):
        PerplexityScore(model_path=str(tmp_path)).setup()


def test_filter_drops_only_matching_rows_above_the_threshold() -> None:
    batch = pa.table({"perplexity": pa.array([50.0, 900.0, None, 2000.0, 3000.0], pa.float32()),
                      "quality_label": ["low", "low", "low", "high", "medium_low"]})
    plain = PerplexityFilter(max_perplexity=1000).process(batch)
    assert plain.column(DROP_REASON).to_pylist() == [None, None, None, "perplexity_above_1000",
                                                     "perplexity_above_1000"]
    lower = PerplexityFilter(max_perplexity=1000, condition="quality_label in ['low', 'medium_low']",
                             drop_missing=True).process(batch)
    assert lower.column(DROP_REASON).to_pylist() == [None, None, "perplexity_missing", None,
                                                     "perplexity_above_1000"]
    with pytest.raises(TypeError, match="not a number"):
        PerplexityFilter(column="quality_label", max_perplexity=10).process(batch)
