"""Stages for worker-loss tests (loaded through a pipeline file's ``imports:``)."""

from __future__ import annotations

import os
import signal

import pyarrow as pa

from curator.stage import MapStage


class KillWorkerOnText(MapStage):
    """SIGKILL the worker process on any batch holding ``marker``: a shard that takes its worker
    down every time (out of memory, a crashing native library)."""

    name = "test.kill_worker_on_text"
    marker: str = "POISON"

    def process(self, batch: pa.Table) -> pa.Table:
        if any(self.marker in (t or "") for t in batch.column("text").to_pylist()):
            os.kill(os.getpid(), signal.SIGKILL)
        return batch
