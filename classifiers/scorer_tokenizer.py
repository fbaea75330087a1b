"""A byte-level BPE tokenizer for the hybrid LM scorer, trained with Hugging Face ``tokenizers``.

Byte-level (GPT-2 style): every string is encodable, nothing maps to an unknown token, and
``decode(encode(text)) == text``. One special token, :data:`BOUNDARY_TOKEN` (id 0), is the
document boundary: the BOS, EOS and pad token of the model. The saved ``tokenizer.json`` prepends
it to every encoded text (``add_special_tokens=True``, the default of ``tokenizers`` and of
transformers), so a document is scored after a boundary exactly as it was seen in training, where
documents are packed as ``<|endoftext|> doc1 <|endoftext|> doc2 ...``.

Training is deterministic: the same texts in the same order give the same ``tokenizer.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOUNDARY_TOKEN = "<|endoftext|>"
BOUNDARY_ID = 0
TOKENIZER_FILE = "tokenizer.json"
MIN_VOCAB_SIZE = 257  # the 256 byte symbols and the boundary token


class TokenizerError(ValueError):
    """A tokenizer that cannot be trained or loaded as the scorer needs it; the message says why."""


@dataclass(frozen=True)
class TokenizerSettings:
    """How the BPE tokenizer is trained."""

    vocab_size: int = 8192
    """Size of the vocabulary, the boundary token and the 256 byte symbols included."""
    min_frequency: int = 2
    """A pair must be seen this often to be merged."""


def train_bpe_tokenizer(texts: Iterable[str], settings: TokenizerSettings = TokenizerSettings()) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts``; the result prepends :data:`BOUNDARY_TOKEN` when encoding."""
    if settings.vocab_size < MIN_VOCAB_SIZE:
        raise TokenizerError(f"vocab_size {settings.vocab_size} is too small: at least {MIN_VOCAB_SIZE} "
                             "(256 byte symbols and the boundary token)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size, min_frequency=settings.min_frequency, show_progress=False,
        special_tokens=[BOUNDARY_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.token_to_id(BOUNDARY_TOKEN) != BOUNDARY_ID:
        raise TokenizerError(f"trained tokenizer gave {BOUNDARY_TOKEN} the id {tokenizer.token_to_id(BOUNDARY_TOKEN)}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOUNDARY_TOKEN} $A", pair=f"{BOUNDARY_TOKEN} $A {BOUNDARY_TOKEN} $B",
        special_tokens=[(BOUNDARY_TOKEN, BOUNDARY_ID)])
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> Path:
    """Write ``directory/tokenizer.json`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKENIZER_FILE
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a scorer tokenizer from ``tokenizer.json`` or the folder holding it; errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed files
        raise TokenizerError(f"{path}: cannot load tokenizer: {exc}") from exc


def encode_documents(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, each starting with the boundary token (the post-processor adds it)."""
    return [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=True)]
