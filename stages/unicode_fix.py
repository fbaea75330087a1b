"""Unicode repair with ftfy: mojibake, HTML entities left in text, control characters."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field

from curator.stage import MapStage


class UnicodeFixer(MapStage):
    """Repair text with ftfy (mojibake, stray entities, control characters); marks changed rows."""

    name = "text.ftfy"
    requires = ("text",)
    adds = ("ftfy_changed",)

    uncurl_quotes: bool = Field(False, description="Turn curly quotes into straight ones (ftfy's default is True).")
    fix_character_width: bool = Field(False, description="Turn full-width characters into half-width ones.")
    unescape_html: bool = Field(True, description="Decode HTML entities left in the text.")
    normalization: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normalisation form.")
    max_decode_length: int = Field(1_000_000, ge=1000, description="ftfy works on segments of at most this many characters.")

    def process(self, batch: pa.Table) -> pa.Table:
        import ftfy

        config = ftfy.TextFixerConfig(
            unescape_html=self.unescape_html, uncurl_quotes=self.uncurl_quotes,
            fix_character_width=self.fix_character_width,
            normalization=None if self.normalization == "none" else self.normalization,
            max_decode_length=self.max_decode_length, explain=False)
        texts = batch.column("text").to_pylist()
        fixed = [None if t is None else ftfy.fix_text(t, config) for t in texts]
        changed = [a != b for a, b in zip(texts, fixed)]
        index = batch.column_names.index("text")
        out = batch.set_column(index, "text", pa.array(fixed, pa.string()))
        return out.append_column("ftfy_changed", pa.array(changed, pa.bool_()))
