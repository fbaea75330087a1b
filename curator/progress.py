"""Live progress: one line per stage with shards done/total, documents per second and an ETA.

On a terminal the lines are redrawn in place (at most every ``redraw_interval`` seconds, and at
once when a stage finishes or a shard fails), each cut to the terminal's width so that the cursor
arithmetic holds. Elsewhere (CI, log files) the board is quiet: one line when a stage finishes,
and, only if ``quiet_interval`` is set, the running stages' lines at most that often.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

DEFAULT_WIDTH = 120
"""Line width when the terminal does not say its own."""


def format_duration(seconds: float) -> str:
    """A short duration: 42s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class StageProgress:
    """Counters of one stage as the run goes."""

    stage_id: str
    uses: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    docs_in: int = 0
    docs_out: int = 0
    started: float | None = None
    finished: float | None = None
    phase: str = ""
    docs_in_run: int = 0

    def elapsed(self, now: float) -> float:
        """Seconds since the stage started (until it finished)."""
        return max((self.finished or now) - self.started, 0.0) if self.started is not None else 0.0

    def rate(self, now: float) -> float:
        """Documents in per second, counting only shards processed in this run (not skipped ones)."""
        elapsed = self.elapsed(now)
        return self.docs_in_run / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds until the remaining shards are done at this run's pace so far; None before any shard
        was processed in this run (nothing to go by), 0 when none remains."""
        remaining = self.total - self.done - self.failed
        if remaining <= 0:
            return 0.0
        processed = self.done - self.skipped
        elapsed = self.elapsed(now)
        if processed <= 0 or elapsed <= 0:
            return None
        return elapsed / processed * remaining

    def line(self, now: float) -> str:
        """The stage's progress line."""
        if self.finished:
            state, timing = "done", f"in {format_duration(self.elapsed(now))}"
        else:
            state = self.phase or ("running" if self.started is not None else "waiting")
            eta = self.eta(now) if self.started is not None else None
            timing = f"ETA {format_duration(eta)}" if eta is not None else "ETA -"
        extra = f", {self.skipped} already done" if self.skipped else ""
        failed = f", {self.failed} FAILED" if self.failed else ""
        # What matters most first: a terminal narrower than the line cuts the document counts.
        return (f"{self.stage_id:<16} {self.done:>6}/{self.total:<6} shards {self.rate(now):>9,.0f} docs/s  "
                f"{timing:<11} {state}{extra}{failed}  [{self.docs_in:,} docs in, {self.docs_out:,} out]")


class ProgressBoard:
    """Draws the progress lines of all stages of a run (see the module docstring for when)."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None,
                 quiet_interval: float | None = None, redraw_interval: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.interactive = _is_terminal(self.stream) if interactive is None else interactive
        self.quiet_interval = quiet_interval
        self.redraw_interval = redraw_interval
        self.clock = clock
        self.stages: dict[str, StageProgress] = {}
        self._drawn_lines = 0
        self._last_draw: float | None = None

    def add_stage(self, stage_id: str, uses: str, total: int) -> None:
        """Register a stage with its number of shards."""
        self.stages[stage_id] = StageProgress(stage_id, uses, total)

    def start(self, stage_id: str, phase: str = "") -> None:
        """Mark a stage as running (optionally in a named phase)."""
        progress = self.stages[stage_id]
        if progress.started is None:
            progress.started = self.clock()
        progress.phase = phase
        self.draw()

    def shard_done(self, stage_id: str, record: dict[str, Any], skipped: bool) -> None:
        """Count a finished (or skipped, already done) shard."""
        progress = self.stages[stage_id]
        if progress.started is None:
            progress.started = self.clock()
        stats = record.get("stats", {})
        progress.done += 1
        progress.skipped += int(skipped)
        progress.docs_in += int(stats.get("docs_in", 0))
        progress.docs_out += int(stats.get("docs_out", 0))
        if not skipped:
            progress.docs_in_run += int(stats.get("docs_in", 0))
        self.draw()

    def shard_failed(self, stage_id: str) -> None:
        """Count a failed shard."""
        self.stages[stage_id].failed += 1
        self.draw(force=True)

    def finish(self, stage_id: str) -> None:
        """Mark a stage finished: redrawn on a terminal, one line elsewhere."""
        progress = self.stages[stage_id]
        progress.finished = self.clock()
        if progress.started is None:
            progress.started = progress.finished
        if not self.interactive:
            self.stream.write(progress.line(progress.finished) + "\n")
            self.stream.flush()
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """Redraw (terminal), or write the running stages' lines if ``quiet_interval`` has passed."""
        now = self.clock()
        if self.interactive:
            if not force and self._last_draw is not None and now - self._last_draw < self.redraw_interval:
                return
            width = _terminal_width(self.stream) - 1
            out = [f"\x1b[{self._drawn_lines}F"] if self._drawn_lines else []
            out += ["\x1b[2K" + p.line(now)[:width] + "\n" for p in self.stages.values()]
            self.stream.write("".join(out))
            self.stream.flush()
            self._drawn_lines = len(self.stages)
            self._last_draw = now
            return
        if self.quiet_interval is None:
            return
        if self._last_draw is None:
            self._last_draw = now
        elif now - self._last_draw >= self.quiet_interval:
            lines = [p.line(now) + "\n" for p in self.stages.values() if p.started is not None and not p.finished]
            self.stream.write("".join(lines))
            self.stream.flush()
            self._last_draw = now


def dashboard_line(client: Any) -> str:
    """The line ``curator run`` prints at start: the Dask dashboard's address, or that there is none.

    ``Client.dashboard_link`` raises ``KeyError`` on a scheduler started without a dashboard
    (``dask scheduler --no-dashboard``, or no bokeh); that must not stop a run.
    """
    try:
        link = client.dashboard_link
    except (KeyError, OSError, TimeoutError):
        link = None
    if link:
        return f"curator: Dask dashboard at {link}"
    return "curator: no Dask dashboard (the scheduler serves none: started without one, or bokeh is missing)"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, OSError, ValueError):
        return DEFAULT_WIDTH
