"""Live progress: one line per stage with shards done/total and documents per second.

On a terminal the lines are redrawn in place a few times a second; elsewhere (CI, log files) a
line is written when a stage finishes and at most every ``quiet_interval`` seconds otherwise.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


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
    docs_in_run: int = field(default=0)

    def line(self, now: float) -> str:
        """The stage's progress line."""
        elapsed = (self.finished or now) - self.started if self.started else 0.0
        rate = self.docs_in_run / elapsed if elapsed > 0 else 0.0
        state = "done" if self.finished else (self.phase or ("running" if self.started else "waiting"))
        extra = f", {self.skipped} already done" if self.skipped else ""
        failed = f", {self.failed} FAILED" if self.failed else ""
        return (f"{self.stage_id:<16} {self.done:>6}/{self.total:<6} shards  "
                f"{self.docs_in:>11,} docs in {self.docs_out:>11,} out  {rate:>10,.0f} docs/s  {state}{extra}{failed}")


class ProgressBoard:
    """Draws the progress lines of all stages of a run."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None,
                 quiet_interval: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.quiet_interval = quiet_interval
        self.stages: dict[str, StageProgress] = {}
        self._drawn_lines = 0
        self._last_draw = 0.0

    def add_stage(self, stage_id: str, uses: str, total: int) -> None:
        """Register a stage with its number of shards."""
        self.stages[stage_id] = StageProgress(stage_id, uses, total)

    def start(self, stage_id: str, phase: str = "") -> None:
        """Mark a stage as running (optionally in a named phase)."""
        progress = self.stages[stage_id]
        if progress.started is None:
            progress.started = time.monotonic()
        progress.phase = phase
        self.draw()

    def shard_done(self, stage_id: str, record: dict, skipped: bool) -> None:
        """Count a finished (or skipped, already done) shard."""
        progress = self.stages[stage_id]
        if progress.started is None:
            progress.started = time.monotonic()
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
        """Mark a stage finished."""
        progress = self.stages[stage_id]
        progress.finished = time.monotonic()
        if progress.started is None:
            progress.started = progress.finished
        if not self.interactive:
            self.stream.write(progress.line(time.monotonic()) + "\n")
            self.stream.flush()
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """Redraw (terminal) or write a periodic summary (non-terminal)."""
        now = time.monotonic()
        if self.interactive:
            if not force and now - self._last_draw < 0.2:
                return
            lines = [p.line(now) for p in self.stages.values()]
            if self._drawn_lines:
                self.stream.write(f"\x1b[{self._drawn_lines}F")
            for line in lines:
                self.stream.write("\x1b[2K" + line + "\n")
            self.stream.flush()
            self._drawn_lines = len(lines)
            self._last_draw = now
        elif now - self._last_draw >= self.quiet_interval:
            if self._last_draw:
                for p in self.stages.values():
                    if p.started and not p.finished:
                        self.stream.write(p.line(now) + "\n")
                self.stream.flush()
            self._last_draw = now
