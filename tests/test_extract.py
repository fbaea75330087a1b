"""text.extract: three engines, the jusText stop list chosen per page, empty output dropped."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.extract import StopListGuesser, TextExtractor
from tests.conftest import REPO

PAGES = REPO / "sample_data" / "pages"


def _html(name: str, encoding: str = "utf-8") -> str:
    return (PAGES / name).read_bytes().decode(encoding)


@pytest.mark.parametrize("engine", ["justext", "trafilatura", "resiliparse", "best"])
def test_engines_keep_the_article_and_drop_the_footer(engine: str) -> None:
    stage = TextExtractor(engine=engine)
    stage.setup()
    text, _ = stage.extract(_html("article_lighthouses.html"))
    assert "The earliest coastal lights were nothing more than bonfires kept burning on hilltops" in text
    assert "Raising the fire onto a tower was the obvious next step." in text
    assert "All rights reserved" not in text
    assert "\n\n" not in text  # paragraphs are separated by single newlines


def test_nemotron_cc_justext_parameters_are_the_defaults() -> None:
    stage = TextExtractor()
    assert (stage.engine, stage.length_low, stage.length_high, stage.stopwords_low, stage.stopwords_high,
            stage.max_link_density) == ("justext", 70, 200, 0.30, 0.32, 0.2)


def test_stop_list_follows_the_page_language() -> None:
    guesser = StopListGuesser()
    assert guesser.guess(_html("article_sourdough.html")) == "English"
    assert guesser.guess(_html("non_english_de.html")) == "German"
    assert guesser.guess(_html("non_english_es.html")) == "Spanish"
    assert guesser.guess(_html("latin1_fr.html", "latin-1")) == "French"
    # With the German stop list jusText keeps the German article; with English it would not.
    german = TextExtractor()
    german.setup()
    text, stoplist = german.extract(_html("non_english_de.html"))
    assert stoplist == "German" and len(text) > 500
    english_only = TextExtractor(language="English")
    assert len(english_only.extract(_html("non_english_de.html"))[0]) < len(text) / 2


def test_batch_columns_and_empty_output() -> None:
    stage = TextExtractor(engine="resiliparse", min_chars=20)
    batch = pa.table({"id": ["a", "b", "c"], "html": [_html("article_hiking.html"), "<html><body></body></html>", None]})
    result = stage.run_batch(batch)
    assert result.kept.column("id").to_pylist() == ["a"]
    assert "html" not in result.kept.column_names and "text" in result.kept.column_names
    assert dict(result.stats.drops) == {"extract_empty": 2}


def test_best_engine_drops_comments_bylines_and_captions() -> None:
    article = " ".join(f"Sentence number {i} of the article carries real information for the reader." for i in range(8))
    html = f"""<html><body><nav><a href="/">Home</a> <a href="/news">News</a></nav>
<article><h1>A headline without a full stop</h1><p class="byline">By Jane Doe</p>
<figure><img src="a.jpg"><figcaption>Photo: Someone, Agency</figcaption></figure>
<p>{article}</p><p>{article}</p><p>Share this article</p></article>
<div id="comments"><h3>12 Comments</h3><p>First! This comment is long enough to look like a real sentence here.</p></div>
<footer>Copyright 2024 Example News. All rights reserved.</footer></body></html>"""
    stage = TextExtractor(engine="best")
    text, _ = stage.extract(html)
    assert text == f"{article}\n{article}"
