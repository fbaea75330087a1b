"""Speed of the heuristic filters on ~2 KB English documents (real article text from aeb-dev).

The articleBody texts of ../shared/data/extraction/aeb-dev are cut into ~2 KB documents and
repeated to 6,000; each filter runs over them as one batch on one core; best of 3.

    python benchmarks/heuristic_filters.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from stages.c4_filters import C4Quality
from stages.fineweb_filters import FineWebQuality
from stages.gopher_filters import GopherQuality, GopherRepetition

TRUTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction" / "aeb-dev" / "ground-truth.json"


def article_chunks(min_chars: int = 2000) -> list[str]:
    """Real article text (aeb-dev) cut at paragraph ends into pieces of at least ``min_chars``."""
    pieces = []
    for item in json.loads(TRUTH.read_text()).values():
        current = ""
        for para in item["articleBody"].split("\n\n"):
            current = f"{current}\n\n{para}" if current else para
            if len(current) >= min_chars:
                pieces.append(current)
                current = ""
    return pieces


def documents(n: int = 6000) -> pa.Table:
    """``n`` documents of about 2 KB cut from the benchmark's article bodies."""
    docs = article_chunks()
    return pa.table({"text": (docs * (n // len(docs) + 1))[:n]})


def main() -> None:
    table = documents()
    mean = sum(len(t) for t in table.column("text").to_pylist()) / table.num_rows
    print(f"{table.num_rows} documents, mean {mean:,.0f} characters; one core, best of 3")
    for stage in (GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality()):
        stage.run_batch(table.slice(0, 200))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            result = stage.run_batch(table)
            best = min(best, time.perf_counter() - start)
        print(f"{stage.name:26s} {table.num_rows / best:9,.0f} docs/s   drops {dict(result.stats.drops)}")


if __name__ == "__main__":
    main()
