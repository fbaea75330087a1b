"""Math page text the Nemotron-CC-Math way: lynx renders the page, with its TeX recovered first.

Each page goes through :class:`stages.tex_recovery.TexRecovery` (formulas found in scripts,
MathML, KaTeX, images and delimited text become placeholders), is rendered by the lynx text
browser (:mod:`stages.lynx_render`: batched, sandboxed, time-limited), and gets its formulas back
as ``$...$`` / ``$$...$$``. lynx keeps the page's layout (tables, lists, code indentation), and the
whole page is kept, boilerplate included: the LLM cleanup stage (``synth.math_cleanup``) removes it,
as the recipe does.

Columns added: ``text``; ``math_formulas`` (formulas put back as TeX); ``math_origins`` (JSON:
formulas by where they came from, e.g. ``{"script_tex": 2, "text_delimiters": 33}``);
``math_unrecovered`` (formulas left as lynx renders them: MathML our converter refused, and
placeholders lynx did not print); ``math_failures`` (JSON: those by reason). With
``recover_tex: false`` the page goes to lynx as it is (plain lynx, for comparisons).

Drop reasons: ``no_html``, ``html_too_large`` (over ``max_html_chars``), ``html_unparseable``,
``lynx_timeout`` / ``lynx_failed`` / ... (from the renderer), ``extract_empty`` (less text than
``min_chars``).
"""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from curator.stage import DROP_REASON, MapStage
from stages.lynx_render import LynxRenderer, LynxSettings
from stages.tex_recovery import RecoveredPage, TexRecovery, restore_tex

log = logging.getLogger("stages.math_extract")


class MathExtractor(MapStage):
    """Math pages to text with lynx, after recovering their TeX (Nemotron-CC-Math, improved)."""

    name = "math.extract"
    requires = ("html",)
    adds = ("text", "math_formulas", "math_origins", "math_unrecovered", "math_failures")

    recover_tex: bool = Field(True, description="Recover TeX before lynx (false: plain lynx, for comparisons).")
    width: int = Field(1000, ge=64, le=1024, description=(
        "lynx's line width: wide, so formulas and lines are not wrapped (lynx's most is 1024)."))
    timeout_s: float = Field(10.0, gt=0, description="Per-page time limit of lynx (reason lynx_timeout).")
    batch_pages: int = Field(32, ge=1, description="Pages rendered by one lynx process.")
    lynx_workers: int = Field(1, ge=0, description=(
        "lynx processes at once per task (Dask already runs one task per core; 0: one per CPU, for the stage API)."))
    max_html_chars: int = Field(5_000_000, ge=1, description="Larger pages are dropped (reason html_too_large).")
    min_chars: int = Field(1, ge=0, description="Drop documents with less text (reason extract_empty).")
    keep_html: bool = Field(False, description="Keep the html column.")
    lynx_binary: str = Field("lynx", description="The lynx executable (Debian: apt-get install lynx).")

    _renderer: LynxRenderer | None = PrivateAttr(default=None)
    unpicklable: ClassVar[tuple[str, ...]] = ("_renderer",)

    def output_columns(self, input_columns: list[str]) -> list[str]:
        cols = [c for c in input_columns if self.keep_html or c != "html"]
        return cols + [c for c in self.adds if c not in cols]

    def settings(self) -> LynxSettings:
        """The renderer's settings."""
        return LynxSettings(width=self.width, timeout_s=self.timeout_s, batch_pages=self.batch_pages,
                            binary=self.lynx_binary, workers=self.lynx_workers)

    def setup(self) -> None:
        if self._renderer is None:
            self._renderer = LynxRenderer(self.settings())

    def prepare(self, html: str | None) -> tuple[RecoveredPage | None, str | None]:
        """The page as lynx will see it, or a drop reason."""
        if not html or not html.strip():
            return None, "no_html"
        if len(html) > self.max_html_chars:
            return None, "html_too_large"
        if not self.recover_tex:
            return RecoveredPage(html=html), None
        try:
            return TexRecovery().recover(html), None
        except ValueError:
            return None, "html_unparseable"

    def process(self, batch: pa.Table) -> pa.Table:
        self.setup()
        assert self._renderer is not None
        prepared = [self.prepare(html) for html in batch.column("html").to_pylist()]
        to_render = [i for i, (page, _) in enumerate(prepared) if page is not None]
        rendered = self._renderer.render_many([prepared[i][0].html for i in to_render])  # type: ignore[union-attr]
        results = dict(zip(to_render, rendered))
        texts: list[str | None] = []
        formulas: list[int] = []
        origins: list[str | None] = []
        unrecovered: list[int] = []
        failures: list[str | None] = []
        reasons: list[str | None] = []
        for i, (page, reason) in enumerate(prepared):
            if page is None:
                texts.append(None)
                formulas.append(0)
                origins.append(None)
                unrecovered.append(0)
                failures.append(None)
                reasons.append(reason)
                continue
            result = results[i]
            text, missing = restore_tex(result.text or "", page.formulas)
            page_failures = dict(page.failures)
            if missing:
                page_failures["placeholder_missing"] = missing
            texts.append(text if result.text is not None else None)
            formulas.append(len(page.formulas) - missing)
            origins.append(json.dumps(dict(sorted(page.origins().items()))))
            unrecovered.append(sum(page_failures.values()))
            failures.append(json.dumps(dict(sorted(page_failures.items()))))
            if result.error:
                reasons.append(result.error)
            elif len(text.strip()) < max(self.min_chars, 1):
                reasons.append("extract_empty")
            else:
                reasons.append(None)
        out = batch if self.keep_html else batch.drop_columns(["html"])
        out = out.drop_columns([c for c in self.adds if c in out.column_names])
        out = out.append_column("text", pa.array(texts, pa.string()))
        out = out.append_column("math_formulas", pa.array(formulas, pa.int32()))
        out = out.append_column("math_origins", pa.array(origins, pa.string()))
        out = out.append_column("math_unrecovered", pa.array(unrecovered, pa.int32()))
        out = out.append_column("math_failures", pa.array(failures, pa.string()))
        return out.append_column(DROP_REASON, pa.array(reasons, pa.string()))
