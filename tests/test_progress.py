"""The progress board: ETA and rate arithmetic, redraw in place on a terminal (a real pty), quiet elsewhere."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios

import pytest

from curator.progress import ProgressBoard, StageProgress, dashboard_line, format_duration


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(docs_in: int, docs_out: int) -> dict:
    return {"stats": {"docs_in": docs_in, "docs_out": docs_out}}


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 4.6, 59.4, 60, 185, 3599, 3600, 7620)] == \
        ["0s", "5s", "59s", "1m00s", "3m05s", "59m59s", "1h00m", "2h07m"]


def test_eta_goes_by_shards_processed_in_this_run_not_skipped_ones() -> None:
    p = StageProgress("extract", "text.extract", total=10, started=0.0)
    assert p.eta(5.0) is None                      # nothing processed yet: no pace to go by
    p.done, p.skipped = 2, 2                       # two shards already done by an earlier run
    assert p.eta(5.0) is None
    p.done, p.docs_in_run = 4, 2_000               # two processed in 10 s: 5 s a shard, 6 to go
    assert p.eta(10.0) == pytest.approx(30.0)
    assert p.rate(10.0) == pytest.approx(200.0)
    p.failed = 1                                   # a failed shard is not waited for
    assert p.eta(10.0) == pytest.approx(25.0)
    p.done = 9
    assert p.eta(10.0) == 0.0
    assert "ETA 0s" in p.line(10.0)


def test_line_shows_counts_rate_eta_and_then_the_time_taken() -> None:
    p = StageProgress("langid", "filter.langid", total=8, started=100.0, done=3, skipped=1,
                      docs_in=3_000, docs_out=2_500, docs_in_run=2_000)
    line = p.line(110.0)
    assert re.fullmatch(r"langid\s+3/8\s+shards\s+200 docs/s  ETA 25s\s+running, 1 already done  "
                        r"\[3,000 docs in, 2,500 out\]", line), line
    assert "ETA -       running, 1 already done  [" in p.line(100.0)
    p.finished = 190.0
    assert re.search(r"ETA|running", p.line(500.0)) is None and "in 1m30s" in p.line(500.0)
    assert p.line(500.0).endswith("done, 1 already done  [3,000 docs in, 2,500 out]")
    assert "ETA -       waiting  [0 docs in, 0 out]" in StageProgress("dedup", "dedup.fuzzy", total=4).line(0.0)


def _run_two_stages(board: ProgressBoard, clock: FakeClock) -> None:
    """Events as the runner sends them: two stages of 5 shards, the second with a named phase."""
    board.add_stage("extract", "text.extract", 5)
    board.add_stage("dedup", "dedup.fuzzy", 5)
    board.start("extract")
    for _ in range(5):
        clock.now += 1.0
        board.shard_done("extract", _record(100, 90), skipped=False)
    board.finish("extract")
    board.start("dedup", phase="minhash")
    clock.now += 1.0
    board.start("dedup", phase="buckets")
    for _ in range(5):
        clock.now += 0.05                          # faster than the redraw interval
        board.shard_done("dedup", _record(90, 80), skipped=False)
    board.finish("dedup")


def test_not_a_terminal_writes_one_line_per_finished_stage() -> None:
    stream, clock = io.StringIO(), FakeClock()
    board = ProgressBoard(stream, clock=clock)
    assert not board.interactive                   # StringIO is no TTY
    _run_two_stages(board, clock)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in stream.getvalue()
    assert re.fullmatch(r"extract\s+5/5\s+shards\s+100 docs/s  in 5s\s+done  \[500 docs in, 450 out\]",
                        lines[0]), lines[0]
    assert re.fullmatch(r"dedup\s+5/5 .*done  \[450 docs in, 400 out\]", lines[1]), lines[1]


def test_not_a_terminal_with_quiet_interval_adds_running_lines_at_most_that_often() -> None:
    stream, clock = io.StringIO(), FakeClock()
    board = ProgressBoard(stream, clock=clock, quiet_interval=2.0)
    _run_two_stages(board, clock)
    lines = stream.getvalue().splitlines()
    # extract's shards come a second apart: a running line at +2 s and +4 s, its finish line, dedup's
    # running line when its phase changes at +6 s, its finish line
    assert [line.split()[0] + " " + line.split("  [")[0].split()[-1] for line in lines] == \
        ["extract running", "extract running", "extract done", "dedup buckets", "dedup done"]
    assert "ETA 3s" in lines[0] and "ETA 1s" in lines[1]


def _read_all(fd: int) -> bytes:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_terminal_redraws_in_place_and_cuts_lines_to_its_width() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 90, 0, 0))  # 24 rows, 90 columns
    with os.fdopen(slave, "w", encoding="utf-8") as stream:
        clock = FakeClock()
        board = ProgressBoard(stream, clock=clock)
        assert board.interactive                   # detected from the stream itself
        _run_two_stages(board, clock)
        out = _read_all(master).decode()
    os.close(master)
    frames = out.split("\x1b[2F")                  # each redraw moves the cursor up over the two lines
    # the first draw, one per shard of extract (a second apart), the forced ones on finish and the
    # phase changes; dedup's shards, 50 ms apart, are drawn only every 0.2 s
    assert out.count("\x1b[2K") == 2 * len(frames)
    assert 9 <= len(frames) <= 11, len(frames)
    lines = [line for line in re.split(r"\r?\n", out) if line]
    assert all(len(line.replace("\x1b[2K", "").replace("\x1b[2F", "")) <= 89 for line in lines)
    last = [line.replace("\x1b[2K", "").replace("\x1b[2F", "") for line in frames[-1].splitlines() if line]
    assert re.match(r"extract\s+5/5 .* in 5s", last[0]) and re.match(r"dedup\s+5/5 .* in 1s", last[1])
    mid = next(f for f in frames if "buckets" in f)  # the phase shows while the global stage runs
    assert re.search(r"dedup\s+0/5 .*ETA -\s+buckets", mid)


def test_dashboard_line_names_the_address_or_says_there_is_none() -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        line = dashboard_line(client)
    assert re.fullmatch(r"curator: Dask dashboard at http://[\w.\-]+:\d+/status", line), line
    # Client.dashboard_link raises KeyError when the scheduler lists no dashboard service (older
    # distributed with --no-dashboard; today's still serves its HTTP routes under that name).

    class NoDashboard:
        @property
        def dashboard_link(self) -> str:
            raise KeyError("dashboard")

    assert dashboard_line(NoDashboard()).startswith("curator: no Dask dashboard")
