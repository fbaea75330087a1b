"""Functions run in curator.time_limit child processes by the tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def make_worker(prefix: str) -> Callable[[str], str]:
    """Built once per child: misbehaves on purpose for some items."""

    def work(item: str) -> str:
        if item == "sleep":
            time.sleep(60)
        if item == "crash":
            os._exit(3)
        if item == "raise":
            raise ValueError("bad item")
        if item == "memory":
            blob = bytearray(8 << 30)  # far over the child's memory limit
            return str(len(blob))
        return f"{prefix}{item}:{os.getpid()}"

    return work
