"""text.ftfy: mojibake and entities repaired, clean text untouched, changed rows marked."""

from __future__ import annotations

import pyarrow as pa

from stages.unicode_fix import UnicodeFixer


def test_repairs_and_marks() -> None:
    batch = pa.table({"text": [
        "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",   # UTF-8 read as cp1252, twice
        "caf&eacute; &amp; cr&egrave;me",
        "Already “clean” text — with curly quotes and ＡＢＣ.",
        None,
    ]})
    out = UnicodeFixer()(batch)
    assert out.column("text").to_pylist() == [
        "The Mona Lisa doesn’t have eyebrows.",
        "café & crème",
        "Already “clean” text — with curly quotes and ＡＢＣ.",
        None,
    ]
    assert out.column("ftfy_changed").to_pylist() == [True, True, False, False]
    straight = UnicodeFixer(uncurl_quotes=True, fix_character_width=True)(batch)
    assert straight.column("text")[2].as_py() == 'Already "clean" text — with curly quotes and ABC.'
