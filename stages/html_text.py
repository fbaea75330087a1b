"""A plain HTML-to-text stage: decode the body (as text.decode does), keep all visible text."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field
from resiliparse.extract.html2text import extract_plain_text

from curator.stage import DROP_REASON, MapStage
from stages.html_decode import choose_charset, is_html


class HtmlToText(MapStage):
    """Plain HTML-to-text with resiliparse: every visible text block, one paragraph per line."""

    name = "text.html_plain"
    requires = ("body", "content_type")
    adds = ("text",)

    min_chars: int = Field(1, ge=0, description="Drop documents with fewer characters of text (reason empty_text).")
    keep_body: bool = Field(False, description="Keep the raw body column (large) after extraction.")

    def output_columns(self, input_columns: list[str]) -> list[str]:
        cols = [c for c in input_columns if self.keep_body or c != "body"]
        return cols + [c for c in self.adds if c not in cols]

    def process(self, batch: pa.Table) -> pa.Table:
        bodies = batch.column("body").to_pylist()
        types = batch.column("content_type").to_pylist()
        charsets = batch.column("http_charset").to_pylist() if "http_charset" in batch.column_names else [None] * len(bodies)
        texts: list[str | None] = []
        reasons: list[str | None] = []
        for body, ctype, charset in zip(bodies, types, charsets):
            body = body or b""
            if not is_html(body, ctype):
                texts.append(None)
                reasons.append("not_html")
                continue
            # A str, not an HTMLTree: resiliparse's trees are bound to the thread that made them,
            # and Dask's event-loop thread may be the one that garbage-collects them.
            html = body.decode(choose_charset(body, charset)[0], errors="replace")
            text = extract_plain_text(html, main_content=False, alt_texts=False, preserve_formatting=True)
            text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
            texts.append(text)
            reasons.append("empty_text" if len(text) < max(self.min_chars, 1) else None)
        out = batch if self.keep_body else batch.drop_columns(["body"])
        out = out.append_column("text", pa.array(texts, pa.string()))
        return out.append_column(DROP_REASON, pa.array(reasons, pa.string()))
