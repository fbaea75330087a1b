"""lynx rendering speed: one process per page against batched, and batched over a thread pool.

Pages: the aeb-dev article pages (../shared/data/extraction/aeb-dev/html) and the math pages
(../shared/data/math), cycled to ``--pages``. Every mode renders the same pages with the same
settings (width 1000) and the same preparation (lxml, body only; see stages/lynx_render.py).
The sequential modes run pinned to one CPU (lynx and Python together); the pooled mode uses all
the CPUs this process may use. Best of ``--repeats``. Also checks that every page's batched text
equals its one-process text.

    python benchmarks/lynx_throughput.py [--pages 200] [--batch-pages 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

from stages.lynx_render import LynxRenderer, LynxResult, LynxSettings, prepare_page, render_one_process_per_page

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_pages(count: int) -> list[str]:
    """``count`` pages: aeb-dev articles and math pages, cycled."""
    paths = sorted((SHARED / "extraction" / "aeb-dev" / "html").glob("*.html.gz"))
    paths += sorted((SHARED / "math").rglob("*.html"))
    pages = []
    for path in paths:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        pages.append(data.decode("utf-8", "replace"))
    return (pages * (count // len(pages) + 1))[:count]


def best_time(run: Callable[[], list[LynxResult]], repeats: int) -> tuple[float, list[LynxResult]]:
    """The shortest wall time of ``repeats`` runs, and the last run's results."""
    best, results = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        results = run()
        best = min(best, time.perf_counter() - start)
    return best, results


def report(label: str, pages: int, seconds: float, cores: int) -> None:
    rate = pages / seconds
    print(f"{label:44s} {rate:8.1f} pages/s  {rate / cores:8.1f} pages/s/core  "
          f"{1000 * seconds / pages:7.2f} ms/page  ({cores} core{'s' if cores > 1 else ''})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--batch-pages", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    pages = load_pages(args.pages)
    cpus = sorted(os.sched_getaffinity(0))
    mean_kb = sum(len(page.encode()) for page in pages) / len(pages) / 1024
    print(f"{len(pages)} pages (aeb-dev + math, cycled), mean {mean_kb:.0f} KB; {len(cpus)} CPUs; "
          f"batch_pages={args.batch_pages}; best of {args.repeats}")
    one_core = LynxSettings(batch_pages=args.batch_pages, workers=1)
    pooled = LynxSettings(batch_pages=args.batch_pages, workers=len(cpus))

    os.sched_setaffinity(0, {cpus[0]})  # lynx processes inherit it
    try:
        start = time.perf_counter()
        for page in pages:
            prepare_page(page, one_core.width)
        report("lxml preparation only (in every mode)", len(pages), time.perf_counter() - start, 1)
        seconds, baseline = best_time(lambda: [render_one_process_per_page(p, one_core) for p in pages],
                                      args.repeats)
        report("one process per page (own sandbox each)", len(pages), seconds, 1)
        baseline_rate = len(pages) / seconds
        with LynxRenderer(one_core) as renderer:
            seconds, _ = best_time(lambda: [renderer.render(page) for page in pages], args.repeats)
            report("one process per page (shared sandbox)", len(pages), seconds, 1)
            seconds, batched = best_time(lambda: renderer.render_many(pages), args.repeats)
            report("batched, sequential", len(pages), seconds, 1)
            batched_rate = len(pages) / seconds
    finally:
        os.sched_setaffinity(0, set(cpus))
    with LynxRenderer(pooled) as renderer:
        seconds, pooled_results = best_time(lambda: renderer.render_many(pages), args.repeats)
        report(f"batched + pool of {len(cpus)} threads", len(pages), seconds, len(cpus))
        pooled_rate = len(pages) / seconds / len(cpus)

    same = sum(a == b == c for a, b, c in zip(baseline, batched, pooled_results))
    errors = sum(result.error is not None for result in baseline)
    print(f"batched text == one-process text for {same}/{len(pages)} pages; {errors} pages failed")
    print(f"per core vs one process per page: batched x{batched_rate / baseline_rate:.1f}, "
          f"batched + pool x{pooled_rate / baseline_rate:.1f} (goal >= x2)")


if __name__ == "__main__":
    main()
