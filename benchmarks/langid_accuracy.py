"""Accuracy and speed of the ``text.langid`` stage on HPLT v2's human-inspected excerpts.

The data (``../shared/data/quality/hplt-v2-inspection/annotated_round1.jsonl.gz``) holds 4,770
excerpts of up to about 1,000 characters in 22 languages. Each row has the language HPLT put it
under (``lang``, an ISO 639-3 code and script such as ``rus_Cyrl``) and a human label
``lang_correct``: whether most of the text is in that language. We report

(a) on rows with ``lang_correct`` true: how often our top language equals the row's language,
    per language and overall (over rows, and the mean over languages), and how often the stage
    configured with ``allowed=[that language]`` and the default ``min_score`` would keep the row;
(b) on rows with ``lang_correct`` false: how often our top language differs from the row's
    language (we would flag the row), and how often that stage would drop it;
(c) the stage's speed on one core: ``run_batch`` on batches of 1,000 rows in this process, on the
    excerpts and on longer documents (5 excerpts of one language joined by newlines).

    python benchmarks/langid_accuracy.py [--model models/lid.176.ftz] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from stages.langid import LanguageId

REPO = Path(__file__).resolve().parents[1]
HPLT_FILE = REPO.parent / "shared" / "data" / "quality" / "hplt-v2-inspection" / "annotated_round1.jsonl.gz"

# HPLT's ISO 639-3 codes to lid.176's labels: the ISO 639-1 code where the language has one,
# else the 639-3 code (Asturian: ast). Two are macrolanguage members that lid.176 labels with the
# macrolanguage's code: Iranian Persian (pes) is fa, Norwegian Bokmal (nob) is no (lid.176 has
# no nb; Nynorsk has its own nn). Chinese in simplified script (zho_Hans) is zh.
HPLT_TO_FASTTEXT: dict[str, str] = {
    "ara_Arab": "ar", "ast_Latn": "ast", "ben_Beng": "bn", "cat_Latn": "ca", "ces_Latn": "cs",
    "deu_Latn": "de", "ell_Grek": "el", "eng_Latn": "en", "fin_Latn": "fi", "gla_Latn": "gd",
    "hin_Deva": "hi", "mar_Deva": "mr", "nld_Latn": "nl", "nno_Latn": "nn", "nob_Latn": "no",
    "pes_Arab": "fa", "pol_Latn": "pl", "rus_Cyrl": "ru", "slk_Latn": "sk", "spa_Latn": "es",
    "tur_Latn": "tr", "zho_Hans": "zh",
}
BATCH_ROWS = 1_000


@dataclass
class LangCounts:
    """Counts for one HPLT language."""

    rows: int = 0
    matches: int = 0
    kept: int = 0
    confusions: Counter[str] = field(default_factory=Counter)


@dataclass
class Accuracy:
    """Results of :func:`evaluate`: (a) per language on correct rows, (b) on mislabelled rows."""

    per_lang: dict[str, LangCounts]
    wrong_rows: int
    wrong_flagged: int
    wrong_dropped: int

    @property
    def overall(self) -> float:
        """Fraction of correctly labelled rows whose prediction equals the label (over rows)."""
        rows = sum(c.rows for c in self.per_lang.values())
        return sum(c.matches for c in self.per_lang.values()) / rows

    @property
    def macro(self) -> float:
        """The per-language match fraction, averaged over languages."""
        return statistics.fmean(c.matches / c.rows for c in self.per_lang.values())


def load_hplt(path: Path = HPLT_FILE) -> list[dict[str, Any]]:
    """The annotated rows (lang, batch, id, text, porn, unnatural, lang_correct)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    unknown = sorted({r["lang"] for r in rows} - HPLT_TO_FASTTEXT.keys())
    if unknown:
        raise ValueError(f"{path}: languages with no fastText mapping: {', '.join(unknown)}")
    return rows


def predict_all(stage: LanguageId, texts: list[str]) -> tuple[list[str], list[float]]:
    """Top language and score of each text, through the stage, in batches."""
    langs: list[str] = []
    scores: list[float] = []
    for start in range(0, len(texts), BATCH_ROWS):
        out = stage.process(pa.table({"text": pa.array(texts[start:start + BATCH_ROWS], pa.string())}))
        langs += out.column("lang").to_pylist()
        scores += out.column("lang_score").to_pylist()
    return langs, scores


def evaluate(stage: LanguageId, rows: list[dict[str, Any]]) -> Accuracy:
    """Compare the stage's predictions with HPLT's labels (see the module docstring)."""
    langs, scores = predict_all(stage, [r["text"] for r in rows])
    per_lang: dict[str, LangCounts] = defaultdict(LangCounts)
    wrong_rows = wrong_flagged = wrong_dropped = 0
    for row, lang, score in zip(rows, langs, scores, strict=True):
        expected = HPLT_TO_FASTTEXT[row["lang"]]
        # What the stage with allowed=[expected] would keep (float32 score, as the stage stores it).
        kept = lang == expected and score >= stage.min_score
        if row["lang_correct"]:
            counts = per_lang[row["lang"]]
            counts.rows += 1
            counts.matches += lang == expected
            counts.kept += kept
            if lang != expected:
                counts.confusions[lang] += 1
        else:
            wrong_rows += 1
            wrong_flagged += lang != expected
            wrong_dropped += not kept
    return Accuracy(dict(sorted(per_lang.items())), wrong_rows, wrong_flagged, wrong_dropped)


def docs_per_second(stage: LanguageId, texts: list[str], repeats: int) -> float:
    """Median documents per second of ``run_batch`` over ``texts`` on this (single) thread."""
    tables = [pa.table({"id": [str(i) for i in range(start, start + len(chunk))], "text": chunk})
              for start in range(0, len(texts), BATCH_ROWS)
              for chunk in [texts[start:start + BATCH_ROWS]]]
    stage.run_batch(tables[0])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for table in tables:
            stage.run_batch(table)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def long_documents(rows: list[dict[str, Any]], parts: int = 5) -> list[str]:
    """Longer documents: ``parts`` consecutive excerpts of one language joined by newlines."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_lang[row["lang"]].append(row["text"])
    return ["\n".join(texts[i:i + parts]) for texts in by_lang.values()
            for i in range(0, len(texts) - parts + 1, parts)]


def main() -> None:
    """Run the three measurements and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "lid.176.ftz"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    stage = LanguageId(model_path=args.model, allowed=[])
    stage.setup()
    rows = load_hplt()
    acc = evaluate(stage, rows)

    print(f"(a) rows with lang_correct true: top language == HPLT language "
          f"(kept: also score >= {stage.min_score})")
    print("| HPLT lang | fastText | rows | match | kept | most common other prediction |")
    print("|---|---|---|---|---|---|")
    for hplt, c in acc.per_lang.items():
        other = ", ".join(f"{lang or '(empty)'} {n}" for lang, n in c.confusions.most_common(2))
        print(f"| {hplt} | {HPLT_TO_FASTTEXT[hplt]} | {c.rows} | {c.matches / c.rows:.1%} | "
              f"{c.kept / c.rows:.1%} | {other} |")
    rows_ok = sum(c.rows for c in acc.per_lang.values())
    kept = sum(c.kept for c in acc.per_lang.values())
    print(f"| **all (over rows)** | | {rows_ok} | **{acc.overall:.1%}** | {kept / rows_ok:.1%} | |")
    print(f"| **mean over languages** | | {len(acc.per_lang)} langs | **{acc.macro:.1%}** | | |")
    print()
    print(f"(b) rows with lang_correct false: {acc.wrong_rows}; prediction differs from the label "
          f"(flagged): {acc.wrong_flagged} ({acc.wrong_flagged / acc.wrong_rows:.1%}); dropped by "
          f"allowed=[label], min_score={stage.min_score}: {acc.wrong_dropped} "
          f"({acc.wrong_dropped / acc.wrong_rows:.1%})")
    print()
    excerpts = [r["text"] for r in rows]
    longer = long_documents(rows)
    print(f"(c) speed of run_batch on one core (median of {args.repeats}, batches of {BATCH_ROWS})")
    print("| documents | count | mean chars | docs/s per core | MB/s per core |")
    print("|---|---|---|---|---|")
    for label, texts in (("HPLT excerpts", excerpts), ("5 excerpts joined", longer)):
        rate = docs_per_second(stage, texts, args.repeats)
        mean_chars = statistics.fmean(len(t) for t in texts)
        mb = statistics.fmean(len(t.encode()) for t in texts) * rate / 1e6
        print(f"| {label} | {len(texts)} | {mean_chars:,.0f} | {rate:,.0f} | {mb:.1f} |")


if __name__ == "__main__":
    main()
