"""How much of a math page's TeX survives text extraction, before any LLM: ours against the usual tools.

For every page of ``../shared/data/math/`` (and the bundled sample's three math pages), the
formulas whose TeX is in the page are found here, independently of the pre-pass under test:
``application/x-tex`` annotations, ``<script type="math/tex">`` (and ``text/tex``) bodies, and
TeX between the delimiters MathJax reads by default plus ``$...$`` on pages that configure it,
and LaTeX environments. A formula is kept by an extractor when its TeX, with all whitespace
removed, appears in the extractor's output with all whitespace removed (Wikipedia's
``{\\displaystyle ...}`` wrapper is taken off first: it is rendering advice, not the formula).

Extractors, on the same pages in one run: ``math.extract`` (TeX recovery + lynx), plain lynx
(the same renderer without the pre-pass: what Nemotron-CC-Math's lynx step sees), trafilatura
(defaults) and resiliparse (``extract_plain_text``, main content). MathML without any TeX in the
page has no ground truth here; the table gives how many such formulas each page has and how many
our converter turned into TeX (the converter's accuracy is measured against Wikipedia's
annotations in tests/test_mathml_latex.py).

    python benchmarks/math_extraction.py [--data ../shared/data/math]
"""

from __future__ import annotations

import argparse
import html as html_lib
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "math"
SAMPLE_PAGES = REPO / "sample_data" / "pages"

_ANNOTATION = re.compile(r"<annotation[^>]*encoding=\"application/x-tex\"[^>]*>(.*?)</annotation>", re.S | re.I)
_SCRIPT = re.compile(r"<script[^>]*type=\"(?:math|text)/tex[^\"]*\"[^>]*>(.*?)</script>", re.S | re.I)
_MATH = re.compile(r"<math\b.*?</math>", re.S | re.I)
_STRIP = re.compile(r"<(script|style|pre|code|textarea)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[a-zA-Z/!][^>]*>")
_DISPLAYSTYLE = re.compile(r"^\{\\(?:displaystyle|textstyle)\s*(.*)\}$", re.S)
_ENV = re.compile(r"\\begin\{(equation\*?|align\*?|gather\*?|multline\*?|eqnarray\*?)\}.*?\\end\{\1\}", re.S)


def annotated_formulas(page: str) -> dict[str, list[str]]:
    """The page's formulas that carry their TeX, by kind: annotation, script, delimiters."""
    found: dict[str, list[str]] = {"annotation": [], "script": [], "delimiters": []}
    for m in _ANNOTATION.finditer(page):
        tex = html_lib.unescape(m.group(1)).strip()
        inner = _DISPLAYSTYLE.match(tex)
        found["annotation"].append(inner.group(1) if inner else tex)
    found["script"] = [m.group(1).strip() for m in _SCRIPT.finditer(page) if m.group(1).strip()]
    text = html_lib.unescape(_TAG.sub(" ", _MATH.sub(" ", _STRIP.sub(" ", page))))
    dollar = re.search(r"inlineMath[^;]*'\$'", page) is not None
    patterns = [r"\\\((.+?)\\\)", r"\\\[(.+?)\\\]", r"\$\$(.+?)\$\$"]
    for env in _ENV.finditer(text):
        found["delimiters"].append(env.group(0))
    text = _ENV.sub(" ", text)
    for pattern in patterns:
        for m in re.finditer(pattern, text, re.S):
            found["delimiters"].append(m.group(1).strip())
        text = re.sub(pattern, " ", text, flags=re.S)
    if dollar:
        found["delimiters"] += [m.group(1).strip() for m in re.finditer(r"(?<!\\)\$(.+?)(?<!\\)\$", text, re.S)]
    return found


def mathml_without_tex(page: str) -> int:
    """``<math>`` elements with neither a TeX annotation nor alttext."""
    import lxml.html

    root = lxml.html.document_fromstring(page)
    maths = [m for m in root.iter() if isinstance(m.tag, str) and m.tag.rsplit(":", 1)[-1].lower() == "math"]
    return sum(1 for m in maths if m.get("alttext") is None
               and not any("x-tex" in (a.get("encoding") or "") for a in m.iter() if isinstance(a.tag, str)))


def squeeze(text: str) -> str:
    """Text without any whitespace."""
    return re.sub(r"\s+", "", text)


def kept(formulas: list[str], output: str) -> int:
    """How many formulas appear in the output (whitespace ignored)."""
    out = squeeze(output)
    return sum(1 for f in formulas if squeeze(f) in out)


def delimited(formulas: list[str], output: str) -> int:
    """How many formulas appear as math a reader (or an LLM) can tell from prose: between TeX delimiters
    (``$``, ``$$``, ``\\(``, ``\\[``) or as a whole LaTeX environment (whitespace ignored)."""
    out = squeeze(output)
    count = 0
    for f in formulas:
        g = squeeze(f)
        forms = [f"${g}$", f"\\({g}\\)", f"\\[{g}\\]"] + ([g] if g.startswith("\\begin{") else [])
        count += any(form in out for form in forms)
    return count


def pages(data: Path) -> list[Path]:
    """Every benchmark page: the shared math pages and the sample's math pages."""
    found = sorted(p for p in data.rglob("*.html") if p.name != "expected.html")
    return found + sorted(SAMPLE_PAGES.glob("math_*.html"))


def main(argv: list[str] | None = None) -> int:
    """Print the per-page table and the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)

    import pyarrow as pa
    import trafilatura
    from resiliparse.extract.html2text import extract_plain_text

    from stages.math_extract import MathExtractor

    files = pages(args.data)
    htmls = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    batch = pa.table({"id": [str(i) for i in range(len(htmls))], "html": htmls})
    outputs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name, stage in (("ours", MathExtractor()), ("lynx", MathExtractor(recover_tex=False))):
        start = time.perf_counter()
        table = stage.process(batch)
        seconds[name] = time.perf_counter() - start
        outputs[name] = [t or "" for t in table.column("text").to_pylist()]
        if name == "ours":
            converted = table.column("math_origins").to_pylist()
    start = time.perf_counter()
    outputs["trafilatura"] = [trafilatura.extract(h) or "" for h in htmls]
    seconds["trafilatura"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs["resiliparse"] = [extract_plain_text(h, main_content=True) for h in htmls]
    seconds["resiliparse"] = time.perf_counter() - start

    import json

    engines = list(outputs)
    header = f"{'page':<48} {'kind':<10} {'TeX':>4} " + " ".join(f"{e:>11}" for e in engines)
    print(header)
    print("-" * len(header))
    strict = {e: 0 for e in engines}
    totals = {kind: {"n": 0, **{e: 0 for e in engines}} for kind in ("annotation", "script", "delimiters")}
    mathml_rows = []
    for i, (path, page) in enumerate(zip(files, htmls)):
        name = str(path.relative_to(args.data)) if path.is_relative_to(args.data) else f"sample/{path.name}"
        for kind, formulas in annotated_formulas(page).items():
            if not formulas:
                continue
            counts = {e: kept(formulas, outputs[e][i]) for e in engines}
            for e in engines:
                strict[e] += delimited(formulas, outputs[e][i])
            totals[kind]["n"] += len(formulas)
            for e in engines:
                totals[kind][e] += counts[e]
            print(f"{name[:48]:<48} {kind:<10} {len(formulas):>4} " + " ".join(f"{counts[e]:>11}" for e in engines))
        bare = mathml_without_tex(page)
        if bare:
            origins = json.loads(converted[i] or "{}")
            ours = sum(v for k, v in origins.items() if k.endswith("converted"))
            mathml_rows.append((name, bare, ours))
    print("-" * len(header))
    all_n = sum(t["n"] for t in totals.values())
    for kind, t in totals.items():
        print(f"{'total':<48} {kind:<10} {t['n']:>4} " + " ".join(f"{t[e]:>11}" for e in engines))
    print(f"{'total':<48} {'all':<10} {all_n:>4} "
          + " ".join(f"{sum(t[e] for t in totals.values()):>11}" for e in engines))
    print(f"{'kept %':<48} {'all':<10} {'':>4} "
          + " ".join(f"{100 * sum(t[e] for t in totals.values()) / max(all_n, 1):>10.1f}%" for e in engines))
    print(f"{'as delimited math %':<48} {'all':<10} {'':>4} "
          + " ".join(f"{100 * strict[e] / max(all_n, 1):>10.1f}%" for e in engines))
    print(f"{'seconds for all pages':<64} " + " ".join(f"{seconds[e]:>11.2f}" for e in engines))
    print()
    print("MathML without TeX in the page (no ground truth): formulas, and how many our converter wrote as TeX")
    for name, bare, ours in mathml_rows:
        print(f"  {name:<60} {bare:>4} {ours:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
