"""MinHash signatures: equal to datasketch's (scheme="legacy", hashfunc=shingle_hash) on real text."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH

from stages.minhash import EMPTY, MinHashSignatures, band_keys, collision_probability, legacy_permutations, lsh_bands
from stages.shingles import batch_shingle_hashes, normalize_texts, shingle_hash, shingle_hash64, shingle_strings


def _real_texts(shared_data: Path, n: int = 120) -> list[str]:
    texts = []
    with gzip.open(shared_data / "contamination" / "math_test.jsonl.gz", "rt") as fh:
        for line, _ in zip(fh, range(n)):
            row = json.loads(line)
            texts.append(row["problem"] + "\n\n" + row["solution"])
    with gzip.open(shared_data / "dedup" / "gsm8k-vs-gsmhard" / "pairs.jsonl.gz", "rt") as fh:
        for line, _ in zip(fh, range(n // 4)):
            row = json.loads(line)
            texts += [row["gsmhard_input"], row["gsm8k_question"]]
    # Non-ASCII text: accents, CJK, emoji (multi-byte UTF-8 shingles).
    texts += ["Ça va très bien, merci — et vous? " * 4, "日本語のテキストと中文文本混在。" * 3, "emoji 🙂🚀 in text " * 5]
    return texts


def _datasketch_signature(shingles: list[str], num_perm: int = 260, seed: int = 1) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash, scheme="legacy")
    if shingles:
        m.update_batch(shingles)
    return m.hashvalues


@pytest.mark.parametrize("kind,ngram,normalize", [
    ("chars", 24, ("whitespace",)),                                   # the Nemotron-CC setting
    ("chars", 5, ()),
    ("words", 5, ("lowercase", "punctuation", "digits", "whitespace")),
    ("chars", 24, ("numbers", "whitespace")),
])
def test_signatures_equal_datasketch_legacy_scheme(shared_data: Path, kind: str, ngram: int,
                                                   normalize: tuple[str, ...]) -> None:
    texts = _real_texts(shared_data)
    hasher = MinHashSignatures(num_perm=260, seed=1, ngram=ngram, kind=kind, normalize=normalize)
    ours = hasher.compute(pa.array(texts))
    assert ours.shape == (len(texts), 260) and ours.dtype == np.uint32
    for i, text in enumerate(texts):
        expected = _datasketch_signature(hasher.shingles(text))
        assert np.array_equal(ours[i].astype(np.uint64), expected), f"text {i} differs from datasketch"


def test_permutations_are_datasketchs(shared_data: Path) -> None:
    a, b = legacy_permutations(64, seed=7)
    m = MinHash(num_perm=64, seed=7, scheme="legacy")
    assert np.array_equal(a, m.permutations[0]) and np.array_equal(b, m.permutations[1])
    text = _real_texts(shared_data, 4)[0]
    hasher = MinHashSignatures(num_perm=64, seed=7)
    assert np.array_equal(hasher.compute([text])[0].astype(np.uint64),
                          _datasketch_signature(hasher.shingles(text), 64, 7))


def test_batch_shingle_hashes_match_python_reference() -> None:
    texts = ["the quick brown fox jumps", "ab", "", "naïve café 日本語 text here"]
    hashes, offsets = batch_shingle_hashes(pa.array(texts), 3, "chars")
    for d, text in enumerate(texts):
        expected = [shingle_hash64(s) for s in shingle_strings(text, 3, "chars")]
        assert hashes[offsets[d]:offsets[d + 1]].tolist() == expected
    assert offsets[3] - offsets[2] == 0                     # empty text: no shingles
    assert shingle_strings("ab", 3, "chars") == ["ab"]      # shorter than a shingle: one shingle
    words, woffsets = batch_shingle_hashes(pa.array(["one two three four", "one two"]), 3, "words")
    assert words[woffsets[0]:woffsets[1]].tolist() == [shingle_hash64("one two three"), shingle_hash64("two three four")]
    assert words[woffsets[1]:woffsets[2]].tolist() == [shingle_hash64("one two")]
    assert shingle_hash("abc") == shingle_hash64("abc") >> 32 == shingle_hash(b"abc")


def test_empty_and_null_texts_have_empty_signatures() -> None:
    sig = MinHashSignatures(num_perm=16).compute(pa.array(["", None, "some text long enough to shingle"]))
    assert (sig[0] == EMPTY).all() and (sig[1] == EMPTY).all() and not (sig[2] == EMPTY).all()


def test_normalisation_options() -> None:
    texts = pa.array(["  Hello,\tWORLD!  It's 2024.  "])
    assert normalize_texts(texts, ["whitespace"])[0].as_py() == "Hello, WORLD! It's 2024."
    assert normalize_texts(texts, ["lowercase", "punctuation", "digits", "whitespace"])[0].as_py() == "hello world it s 0000"
    assert normalize_texts(pa.array(["costs $1,250.50 or 7 eggs"]), ["numbers"])[0].as_py() == "costs $0 or 0 eggs"
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_texts(texts, ["stemming"])
    # Word shingles always normalise whitespace: a word shingle is words joined by one space.
    assert MinHashSignatures(ngram=2, kind="words", normalize=()).shingles("a  b\nc") == ["a b", "b c"]


def test_band_keys_equal_exactly_when_band_values_equal() -> None:
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 260), dtype=np.uint64).astype(np.uint32)
    sig[1, 13:26] = sig[0, 13:26]      # docs 0 and 1 share band 1 only
    sig[2, :] = sig[0, :]
    sig[2, 259] ^= 1                   # in the last band of 20 x 13, outside 19 x 13
    keys = band_keys(sig, 20, 13)
    assert keys.shape == (3, 20) and keys.dtype == np.uint64
    assert [int(keys[0, i] == keys[1, i]) for i in range(20)] == [0, 1] + [0] * 18
    assert [int(keys[0, i] == keys[2, i]) for i in range(20)] == [1] * 19 + [0]
    assert (band_keys(sig, 19, 13)[0] == band_keys(sig, 19, 13)[2]).all()
    # The same values in different bands give different keys.
    same = np.zeros((1, 260), np.uint32)
    assert len(set(band_keys(same, 20, 13)[0].tolist())) == 20
    with pytest.raises(ValueError, match="exceeds|need"):
        band_keys(sig, 21, 13)


def test_bands_from_threshold_are_datasketchs_optimum() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=260)
        assert lsh_bands(threshold, 260) == (lsh.b, lsh.r)
    assert collision_probability(0.8, 20, 13) == pytest.approx(1 - (1 - 0.8**13) ** 20)


def test_signature_similarity_estimates_jaccard(shared_data: Path) -> None:
    """The fraction of equal slots estimates the shingle-set Jaccard (the point of MinHash)."""
    pairs = []
    with gzip.open(shared_data / "dedup" / "gsm8k-vs-gsmhard" / "pairs.jsonl.gz", "rt") as fh:
        for line, _ in zip(fh, range(200)):
            row = json.loads(line)
            pairs.append((row["gsmhard_input"], row["gsm8k_question"]))
    hasher = MinHashSignatures(num_perm=260)
    left = hasher.compute([a for a, _ in pairs])
    right = hasher.compute([b for _, b in pairs])
    errors = []
    for i, (a, b) in enumerate(pairs):
        sa, sb = set(hasher.shingles(a)), set(hasher.shingles(b))
        true = len(sa & sb) / len(sa | sb)
        errors.append(abs(float((left[i] == right[i]).mean()) - true))
    # Standard error of the estimate is at most 0.5 / sqrt(260) = 0.031.
    assert np.mean(errors) < 0.03 and np.max(errors) < 0.15
