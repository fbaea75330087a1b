"""The HPLT v2 inspection set (../shared/data/quality/hplt-v2-inspection) as labelled rows.

A row is ``hq`` when none of the human labels porn, unnatural (SEO word lists, boilerplate) or wrong
language applies, else ``lq``. The sample's quality classifiers and its perplexity scorer are trained on it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

FILE_NAME = "annotated_round1.jsonl.gz"


def hplt_rows(data: Path) -> list[dict]:
    """The inspection set as ``{id, lang, text, label}`` rows, ``label`` ``hq`` or ``lq``."""
    path = data / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the HPLT inspection set of ../shared/data; pass --data)")
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            bad = bool(r.get("porn")) or bool(r.get("unnatural")) or str(r.get("lang_correct")) == "0"
            rows.append({"id": r["id"], "lang": r["lang"], "text": r["text"], "label": "lq" if bad else "hq"})
    return rows
