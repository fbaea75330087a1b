"""Speed of tokens.count on ~2 KB English documents (real article text from aeb-dev).

The articleBody texts of ../shared/data/extraction/aeb-dev are cut into ~2 KB documents and
repeated to 6,000 (1,000 for the GGUF vocabulary, which is slow). Each tokenizer counts them
through the stage-level API (``token_counts``: batched ``count_many``, slices of about 1 MB of
text) and, for comparison, one document per call; best of 3. Tokenizers: the all-MiniLM-L6-v2
tokenizer.json of models/ (WordPiece; a copy with its padding and truncation turned off, as the
stage refuses them) and the Gemma-3 GGUF vocabulary (llama.cpp, which counts one text at a time
either way). ``tokenizers`` uses every core for a batch.

    python benchmarks/token_count.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from curator.llm.config import TokenCounter
from stages.token_count import TokenCount

REPO = Path(__file__).resolve().parents[1]
MINILM = REPO / "models" / "all-minilm-l6-v2" / "tokenizer.json"
GGUF = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
TRUTH = REPO.parent / "shared" / "data" / "extraction" / "aeb-dev" / "ground-truth.json"


def documents(n: int = 6000, min_chars: int = 2000) -> list[str]:
    """``n`` documents of about 2 KB: article bodies (aeb-dev) cut at paragraph ends, repeated."""
    pieces = []
    for item in json.loads(TRUTH.read_text()).values():
        current = ""
        for para in item["articleBody"].split("\n\n"):
            current = f"{current}\n\n{para}" if current else para
            if len(current) >= min_chars:
                pieces.append(current)
                current = ""
    return (pieces * (n // len(pieces) + 1))[:n]


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def counting_copy(path: Path, out_dir: str) -> str:
    """A copy of a tokenizer.json with padding and truncation off (so it can count)."""
    data = json.loads(path.read_text())
    data["padding"] = data["truncation"] = None
    out = os.path.join(out_dir, "tokenizer.json")
    Path(out).write_text(json.dumps(data))
    return out


def main() -> None:
    texts = documents()
    mean = sum(len(t) for t in texts) / len(texts)
    print(f"documents of mean {mean:,.0f} characters; {os.cpu_count()} cores; best of 3")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, n in (("minilm tokenizer.json", counting_copy(MINILM, tmp), 6000),
                               ("gemma-3 gguf", str(GGUF), 1000)):
            texts = documents(n)
            if not os.path.exists(path):
                print(f"{label:<22} skipped: {path} not found")
                continue
            stage = TokenCount(tokenizer_path=path)
            stage.setup()
            counter = TokenCounter(path)
            tokens = sum(stage.token_counts(texts))
            batched = best_of(3, lambda: stage.token_counts(texts))
            single = best_of(3, lambda: [counter.count(t) for t in texts])
            print(f"{label:<22} {len(texts):5} docs {tokens / len(texts):4.0f} tokens/doc  "
                  f"batched {len(texts) / batched:9,.0f} docs/s "
                  f"({tokens / batched / 1e6:5.2f} M tokens/s)  one per call {len(texts) / single:9,.0f} docs/s")


if __name__ == "__main__":
    main()
